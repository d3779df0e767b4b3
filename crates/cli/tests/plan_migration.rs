//! `plan --migrate-to`: which bindings of the examples would move, with the trust at every
//! step of the operator's migration; a target the rules refuse is shown refused (exit 1);
//! a mechanism that does not exist is a usage error naming the two that do (exit 2).

mod common;

use common::podidentity;
use serde_json::Value;

const CONFIG: &str = "examples/config/operator.yaml";

fn migration(to: &str) -> (i32, Value) {
    let run = podidentity(&[
        "plan",
        "-f",
        "examples",
        "--config",
        CONFIG,
        "--migrate-to",
        to,
        "-o",
        "json",
    ]);
    let plan = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}\n{}", run.stdout, run.stderr));
    (run.code, plan)
}

fn find<'a>(plan: &'a Value, namespace: &str, name: &str) -> &'a Value {
    plan["moves"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["namespace"] == namespace && m["name"] == name)
        .unwrap_or_else(|| panic!("{namespace}/{name} does not move: {plan:#}"))
}

/// The principals a step's trust policy admits.
fn principals(trust: &Value) -> Vec<String> {
    trust["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            s["Principal"]["Service"]
                .as_str()
                .map(|s| format!("service:{s}"))
                .or_else(|| s["Principal"]["Federated"].as_str().map(|_| "oidc".into()))
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn to_pod_identity_every_irsa_binding_moves_through_both_trusts() {
    let (code, plan) = migration("PodIdentity");
    // The ccoctl-format credentials Secret is IRSA's: that binding is refused there.
    assert_eq!(code, 1, "{plan:#}");
    let moving = find(&plan, "analytics", "report-writer");
    assert_eq!(moving["from"], "IRSA");
    assert_eq!(moving["to"], "PodIdentity");
    assert_eq!(moving["valid"], true);
    let steps = moving["steps"].as_array().cloned().unwrap_or_default();
    assert_eq!(steps.len(), 5, "{steps:#?}");
    let mut first = principals(&steps[0]["trustPolicy"]);
    first.sort();
    assert_eq!(first, ["oidc", "service:pods.eks.amazonaws.com"]);
    assert_eq!(
        principals(&steps[4]["trustPolicy"]),
        ["service:pods.eks.amazonaws.com"]
    );
    let changes = |i: usize| steps[i]["changes"].to_string();
    assert!(
        changes(1).contains("association made: cluster prod, analytics/reports"),
        "{}",
        changes(1)
    );
    assert!(
        changes(2).contains("eks.amazonaws.com/role-arn"),
        "{}",
        changes(2)
    );
    let refused = find(&plan, "platform-backup", "backup");
    assert_eq!(refused["valid"], false);
    assert!(
        refused["problems"]
            .to_string()
            .contains("credentialsSecret"),
        "{refused:#}"
    );
    assert!(refused["steps"].as_array().is_some_and(Vec::is_empty));
    // Already on Pod Identity: it stays.
    assert!(
        plan["moves"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|m| m["name"] != "report-reader")
    );
    assert!(plan["staying"].as_u64().is_some_and(|n| n >= 1), "{plan:#}");
}

#[test]
fn to_irsa_the_association_goes_last() {
    let (code, plan) = migration("IRSA");
    assert_eq!(code, 0, "{plan:#}");
    let moves = plan["moves"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        moves.len(),
        1,
        "only the Pod Identity example moves: {plan:#}"
    );
    let moving = find(&plan, "analytics", "report-reader");
    let steps = moving["steps"].as_array().cloned().unwrap_or_default();
    assert!(
        steps[1]["changes"]
            .to_string()
            .contains("annotation added (eks.amazonaws.com/role-arn"),
        "{steps:#?}"
    );
    assert!(
        steps[2]["changes"]
            .to_string()
            .contains("association stays"),
        "{steps:#?}"
    );
    assert!(
        steps[4]["changes"]
            .to_string()
            .contains("association of analytics/report-reader deleted"),
        "{steps:#?}"
    );
    assert_eq!(principals(&steps[4]["trustPolicy"]), ["oidc"]);
}

#[test]
fn an_unknown_mechanism_is_refused_with_the_two_that_exist() {
    let run = podidentity(&[
        "plan",
        "-f",
        "examples",
        "--config",
        CONFIG,
        "--migrate-to",
        "pod-identity",
    ]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("--migrate-to") && run.stderr.contains("IRSA or PodIdentity"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}
