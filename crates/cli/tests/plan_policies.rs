//! `plan` judges bindings as the cluster would with its PodIdentityPolicies: read from the
//! inputs with the Namespaces they select by, or labels given on the command line; quotas
//! counted per namespace; a policy that cannot be used reported against its own fields.

mod common;

use common::podidentity_with_stdin;

const CONFIG: &str = "examples/config/operator.yaml";

const POLICY: &str = r#"
apiVersion: podidentity.io/v1alpha1
kind: PodIdentityPolicy
metadata: {name: small-teams}
spec:
  namespaceSelector: {matchLabels: {size: small}}
  allowedResources: ["arn:aws:s3:::${namespace}.*"]
  maxBindingsPerNamespace: 2
"#;

fn binding(namespace: &str, name: &str, bucket: &str) -> String {
    format!(
        r#"
---
apiVersion: podidentity.io/v1alpha1
kind: PodIdentityBinding
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  serviceAccountName: {name}
  permissions:
    statements:
      - actions: ["s3:GetObject"]
        resources: ["arn:aws:s3:::{bucket}/*"]
"#
    )
}

fn plan(stdin: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["plan", "-f", "-", "--config", CONFIG, "-o", "json"];
    args.extend(extra);
    let run = podidentity_with_stdin(&args, Some(stdin));
    assert!(run.code <= 1, "{}{}", run.stdout, run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|err| panic!("{err}: {}", run.stdout))
}

fn verdicts(plan: &serde_json::Value) -> Vec<(String, bool)> {
    plan["bindings"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|b| {
                    (
                        format!(
                            "{}/{}",
                            b["namespace"].as_str().unwrap_or(""),
                            b["name"].as_str().unwrap_or("")
                        ),
                        b["valid"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn namespace_labels_decide_which_policies_apply() {
    let inputs = format!(
        "{POLICY}{}{}",
        binding("tiny", "a", "other-bucket"),
        binding("big", "a", "other-bucket")
    );
    // Without labels, no namespace is small: both pass, and plan says what it did not know.
    let unlabelled = plan(&inputs, &[]);
    assert_eq!(
        verdicts(&unlabelled),
        [("tiny/a".to_string(), true), ("big/a".to_string(), true)]
    );
    let warnings: Vec<&str> = unlabelled["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("namespace big")
            && warnings[0].contains("--namespace-labels big=KEY=VALUE"),
        "{warnings:?}"
    );
    // Labelled on the command line, as CI would from the cluster.
    assert_eq!(
        verdicts(&plan(
            &inputs,
            &["--namespace-labels", "tiny=size=small,tier=web"]
        )),
        [("tiny/a".to_string(), false), ("big/a".to_string(), true)]
    );
    // Or by a Namespace among the inputs.
    let with_namespace = format!(
        "{inputs}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: big, labels: {{size: small}}}}\n"
    );
    assert_eq!(
        verdicts(&plan(&with_namespace, &[])),
        [("tiny/a".to_string(), true), ("big/a".to_string(), false)]
    );
}

#[test]
fn the_quota_keeps_the_first_bindings_and_refuses_the_rest() {
    let inputs = format!(
        "{POLICY}{}{}{}",
        binding("tiny", "c", "tiny.x"),
        binding("tiny", "a", "tiny.x"),
        binding("tiny", "b", "tiny.x")
    );
    let plan = plan(&inputs, &["--namespace-labels", "tiny=size=small"]);
    assert_eq!(
        verdicts(&plan),
        [
            ("tiny/c".to_string(), false),
            ("tiny/a".to_string(), true),
            ("tiny/b".to_string(), true)
        ]
    );
    let message = plan["bindings"][0]["problems"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("may have 2 binding(s)")
            && message.contains("small-teams")
            && message.contains("number 3"),
        "{message}"
    );
}

#[test]
fn a_policy_that_cannot_be_used_is_refused_by_its_fields() {
    let bad = POLICY.replace("${namespace}", "${team}");
    let plan = plan(&format!("{bad}{}", binding("tiny", "a", "tiny.x")), &[]);
    let entry = &plan["bindings"][0];
    assert_eq!(entry["kind"], "PodIdentityPolicy");
    assert_eq!(entry["valid"], false);
    assert_eq!(entry["problems"][0]["field"], "spec.allowedResources[0]");
    let run = podidentity_with_stdin(&["plan", "-f", "-", "--config", CONFIG], Some(&bad));
    assert_eq!(run.code, 1, "a bad policy fails CI");
    assert!(
        run.stdout
            .contains("small-teams [PodIdentityPolicy]  REFUSED"),
        "{}",
        run.stdout
    );
}

#[test]
fn bad_namespace_labels_are_an_input_error() {
    let run = podidentity_with_stdin(
        &[
            "plan",
            "-f",
            "-",
            "--config",
            CONFIG,
            "--namespace-labels",
            "tiny=size",
        ],
        Some(POLICY),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("write KEY=VALUE"), "{}", run.stderr);
}

/// Finding 3 of the adversarial pass: under the teams policy as docs/policies.md wrote it
/// (`${namespace}-*`), namespace `team` used `team-a`'s buckets. That template is refused
/// now, naming the field and what to write; under the documented one (`${namespace}.*`)
/// `team` keeps to its own.
#[test]
fn the_documented_teams_policy_keeps_team_out_of_team_a() {
    let namespaces = "
---
apiVersion: v1
kind: Namespace
metadata: {name: team, labels: {team: team}}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {team: team-a}}
";
    let open = POLICY
        .replace("${namespace}.*", "${namespace}-*")
        .replace("{matchLabels: {size: small}}", "{}");
    let plan_open = plan(
        &format!(
            "{open}{namespaces}{}",
            binding("team", "reader", "team-a-orders")
        ),
        &[],
    );
    let policy = &plan_open["bindings"][0];
    assert_eq!(policy["kind"], "PodIdentityPolicy");
    assert_eq!(policy["problems"][0]["field"], "spec.allowedResources[0]");
    let message = policy["problems"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("followed by '-'") && message.contains("'.', '_', '/' or ':'"),
        "{message}"
    );
    assert_eq!(plan_open["bindings"][1]["valid"], false);

    let teams = std::fs::read_to_string(common::repo_root().join("examples/policies/teams.yaml"))
        .unwrap_or_else(|err| panic!("{err}"));
    let plan_closed = plan(
        &format!(
            "{teams}{namespaces}{}{}",
            binding("team", "reader", "team-a.orders"),
            binding("team-a", "reader", "team-a.orders")
        ),
        &[],
    );
    let verdicts: Vec<(String, bool)> = verdicts(&plan_closed)
        .into_iter()
        .filter(|(name, _)| name.starts_with("team"))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("team/reader".to_string(), false),
            ("team-a/reader".to_string(), true)
        ]
    );
}
