//! Bad input, tried as a new user would: each gets a clear message naming what to change,
//! and the right exit code (2 for input that cannot be read or bad flags).

mod common;

use common::{Run, podidentity, podidentity_with_stdin};

const CONFIG: &str = "examples/config/operator.yaml";

/// `podidentity plan -f - --config CONFIG <flags>` with `input` on stdin.
fn plan_stdin(flags: &[&str], input: &str) -> Run {
    let mut args = vec!["plan", "-f", "-", "--config", CONFIG];
    args.extend_from_slice(flags);
    podidentity_with_stdin(&args, Some(input))
}

#[test]
fn malformed_yaml_names_the_file_and_exits_2() {
    let run = plan_stdin(
        &[],
        "apiVersion: podidentity.io/v1alpha1\nkind: PodIdentityBinding\nmetadata: {name: x\nspec: [\n",
    );
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("<stdin>: not valid YAML"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.is_empty(),
        "nothing is planned from unreadable input"
    );
}

#[test]
fn every_unreadable_input_is_reported_in_one_run() {
    let run = podidentity(&[
        "plan",
        "-f",
        "no-such-file.yaml",
        "-f",
        "nor-this-dir",
        "--config",
        CONFIG,
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("no-such-file.yaml: cannot read"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("nor-this-dir: cannot read"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("2 input(s) could not be read"),
        "{}",
        run.stderr
    );
}

#[test]
fn all_problems_of_all_bindings_come_in_one_run() {
    let input = "\
apiVersion: podidentity.io/v1alpha1
kind: PodIdentityBinding
metadata: {name: one, namespace: a}
spec:
  serviceAccountName: one
  permissions:
    statements: [{actions: ['iam:CreateUser'], resources: ['*']}]
  role: {maxSessionDurationSeconds: 10}
---
apiVersion: podidentity.io/v1alpha1
kind: PodIdentityBinding
metadata: {name: two, namespace: a}
spec: {serviceAccountName: Two_Bad}
";
    let run = plan_stdin(&[], input);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("GuardrailViolation   spec.permissions.statements[0].actions[0]"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "InvalidSpec          spec.role.maxSessionDurationSeconds: 10 is out of range"
        )
    );
    assert!(run.stdout.contains("a/two  REFUSED  <stdin>, document 2"));
    assert!(
        run.stdout
            .contains("spec.serviceAccountName: \"Two_Bad\" is not a ServiceAccount name")
    );
}

#[test]
fn a_missing_name_and_a_wrong_api_version_are_named() {
    let input = "\
apiVersion: podidentity.io/v1alpha1
kind: PodIdentityBinding
metadata: {namespace: a}
spec: {serviceAccountName: x}
---
apiVersion: podidentity.io/v1
kind: PodIdentityBinding
metadata: {name: other}
spec: {serviceAccountName: other}
";
    let run = plan_stdin(&[], input);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("metadata.name: is required"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(
        "apiVersion: \"podidentity.io/v1\" is not served: use apiVersion: podidentity.io/v1alpha1"
    ));
    assert!(
        run.stdout.contains("a/(no name)  REFUSED"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("default/other  REFUSED"),
        "objects without a namespace land in --namespace"
    );
}

#[test]
fn object_names_from_files_are_checked_like_the_api_server_would() {
    let input = "apiVersion: podidentity.io/v1alpha1\nkind: PodIdentityBinding\nmetadata: {name: Orders_S3, namespace: Shop}\nspec: {serviceAccountName: app}\n";
    let run = plan_stdin(&[], input);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("metadata.namespace: \"Shop\" is not a namespace name"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("metadata.name: \"Orders_S3\" is not an object name"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_name_that_cannot_fit_is_refused_but_a_derived_one_always_fits() {
    let long = "a".repeat(63);
    let input = format!(
        "apiVersion: podidentity.io/v1alpha1\nkind: PodIdentityBinding\nmetadata: {{name: {long}, namespace: {long}}}\nspec: {{serviceAccountName: app}}\n"
    );
    let run = plan_stdin(&["-o", "json"], &input);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let plan: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|err| panic!("{err}"));
    let name = plan["bindings"][0]["desired"]["role"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(name.len(), 64, "{name}");

    let input = "apiVersion: podidentity.io/v1alpha1\nkind: PodIdentityBinding\nmetadata: {name: x, namespace: a}\nspec:\n  serviceAccountName: app\n  role: {name: this-explicit-role-name-is-far-too-long-for-iam-which-allows-64-characters}\n";
    let run = plan_stdin(&["--roles-allow-name-override", "true"], input);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("spec.role.name: \"this-explicit-role-name-is-far-too-long-for-iam-which-allows-64-characters\" is not an IAM role name: use at most 64"), "{}", run.stdout);
}

#[test]
fn an_oversize_trust_policy_reports_its_bytes() {
    let input = "apiVersion: podidentity.io/v1alpha1\nkind: PodIdentityBinding\nmetadata: {name: x, namespace: a}\nspec: {serviceAccountName: app}\n";
    let run = plan_stdin(&["--trust-policy-max-bytes", "400"], input);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("TrustPolicyTooLarge  spec: the trust policy is 466 bytes, over the account's quota of 400"), "{}", run.stdout);
}

#[test]
fn bad_flags_and_bad_configuration_exit_2_naming_the_setting() {
    let run = podidentity(&["plan", "-f", "examples", "--config", CONFIG, "-o", "yaml"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("invalid value 'yaml' for '--output <OUTPUT>'"),
        "{}",
        run.stderr
    );

    let run = podidentity(&["plan", "-f", "examples"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(
            "clusterName: is required: set clusterName in the config file, or pass --cluster-name"
        ),
        "{}",
        run.stderr
    );

    let run = podidentity(&[
        "plan",
        "-f",
        "examples",
        "--cluster-name",
        "prod",
        "--trust-policy-max-bytes",
        "8192",
        "--roles-path",
        "podidentity",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("trustPolicy.maxBytes: 8192 is out of range"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("roles.path: \"podidentity\" must start and end with /"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn configuration_comes_from_the_environment_too() {
    let run = {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_podidentity"));
        command
            .args(["plan", "-f", "examples/s3-reader.yaml", "-o", "json"])
            .current_dir(common::repo_root())
            .env("PODIDENTITY_CLUSTER_NAME", "staging")
            .env("PODIDENTITY_AWS_ACCOUNT_ID", "444455556666");
        command.output().unwrap_or_else(|err| panic!("{err}"))
    };
    assert_eq!(run.status.code(), Some(0));
    let plan: serde_json::Value =
        serde_json::from_slice(&run.stdout).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        plan["bindings"][0]["desired"]["role"]["arn"],
        "arn:aws:iam::444455556666:role/podidentity/staging/staging-shop.orders-s3"
    );
}

#[test]
fn without_account_or_issuer_plan_shows_visible_placeholders() {
    let run = podidentity(&[
        "plan",
        "-f",
        "examples/s3-reader.yaml",
        "--cluster-name",
        "dev",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("arn:aws:iam::<account-id>:role/podidentity/dev/dev-shop.orders-s3"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("\"Federated\": \"arn:aws:iam::<account-id>:oidc-provider/<oidc-issuer>\"")
    );
}

/// Finding 5 of the adversarial pass: kubectl expands a `kind: List` inside a `kind: List`,
/// and `plan` ignored the inner one, so a refused binding there passed the CI gate.
#[test]
fn bindings_in_lists_within_lists_are_planned() {
    let input = "\
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: List
    items:
      - apiVersion: v1
        kind: List
        items:
          - apiVersion: podidentity.io/v1alpha1
            kind: PodIdentityBinding
            metadata: {name: deep, namespace: shop}
            spec:
              serviceAccountName: deep
              permissions:
                statements: [{actions: ['iam:PassRole'], resources: ['*']}]
  - apiVersion: podidentity.io/v1alpha1
    kind: PodIdentityBinding
    metadata: {name: shallow, namespace: shop}
    spec: {serviceAccountName: shallow}
";
    let run = plan_stdin(&["-o", "json"], input);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let plan: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(plan["summary"]["valid"], 1);
    assert_eq!(plan["summary"]["refused"], 1);
    let deep = plan["bindings"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["name"] == "deep"))
        .unwrap_or_else(|| panic!("the binding two Lists deep is missing: {plan}"));
    assert_eq!(
        deep["problems"][0]["field"],
        "spec.permissions.statements[0].actions[0]"
    );
}

/// Finding 6: a GitOps bundle of more than 1,024 documents was refused as a budget breach;
/// the parser's budget now grows with the file (a storm of empty documents still breaks it).
#[test]
fn a_bundle_of_thousands_of_documents_is_read_whole() {
    let mut input = String::new();
    for i in 0..3_000 {
        input.push_str(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}, namespace: shop}}\ndata: {{k: v}}\n---\n"
        ));
    }
    input.push_str(
        "apiVersion: podidentity.io/v1alpha1\nkind: PodIdentityBinding\nmetadata: {name: last, namespace: shop}\nspec: {serviceAccountName: last}\n",
    );
    let run = plan_stdin(&[], &input);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .ends_with("1 binding(s): 1 valid, 0 refused; 3000 other document(s) ignored\n"),
        "{}",
        run.stdout
    );
    let storm = "---\n".repeat(100_000);
    let run = plan_stdin(&[], &storm);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("<stdin>: not valid YAML"),
        "{}",
        run.stderr
    );
}

/// Finding 6: an empty directory planned nothing and exited 0 without a word: a CI gate
/// pointed at the wrong folder passed. It is an input problem now, with what to do.
#[test]
fn a_directory_without_manifests_is_an_input_problem() {
    let dir = std::env::temp_dir().join(format!("podidentity-empty-{}", std::process::id()));
    let nested = dir.join("apps");
    std::fs::create_dir_all(&nested).unwrap_or_else(|err| panic!("{err}"));
    std::fs::write(nested.join("readme.txt"), "not a manifest")
        .unwrap_or_else(|err| panic!("{err}"));
    let shown = dir.display().to_string();
    let run = podidentity(&["plan", "-f", &shown, "--config", CONFIG]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr
            .contains(&format!("{shown}: no manifest (.yaml, .yml, .json) in this directory; it has subdirectories: add -R to read them")),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
    let run = podidentity(&["plan", "-R", "-f", &shown, "--config", CONFIG]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("in this directory or below it"),
        "{}",
        run.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}
