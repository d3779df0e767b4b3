//! `plan` places namespaces in accounts as the controller does: a PodIdentityPolicy's
//! `spec.account` puts its namespaces' roles (ARN, annotation, trusted provider) in one of
//! the configured `accounts`; an account not configured refuses, naming the policy.

mod common;

use common::podidentity_with_stdin;
use serde_json::Value;

const TEAM: &str = "444455556666";

const CONFIG: &str = r#"
clusterName: prod
oidc:
  issuerUrl: https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE
aws:
  region: eu-west-1
  accountId: "111122223333"
accounts:
  - id: "444455556666"
    roleArn: arn:aws:iam::444455556666:role/podidentity-operator
"#;

fn inputs(account: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: payments, labels: {{team: payments}}}}
---
apiVersion: podidentity.io/v1alpha1
kind: PodIdentityPolicy
metadata: {{name: payments-team}}
spec:
  namespaceSelector: {{matchLabels: {{team: payments}}}}
  account: "{account}"
  allowedResources: ["arn:aws:sqs:eu-west-1:${{account}}:${{namespace}}_*"]
---
apiVersion: podidentity.io/v1alpha1
kind: PodIdentityBinding
metadata: {{name: ledger, namespace: payments}}
spec:
  serviceAccountName: ledger
  permissions:
    statements:
      - actions: ["sqs:SendMessage"]
        resources: ["arn:aws:sqs:eu-west-1:{account}:payments_ledger"]
---
apiVersion: podidentity.io/v1alpha1
kind: PodIdentityBinding
metadata: {{name: site, namespace: web}}
spec:
  serviceAccountName: site
  permissions:
    statements:
      - actions: ["s3:GetObject"]
        resources: ["arn:aws:s3:::web-assets/*"]
"#
    )
}

fn plan(stdin: &str) -> (i32, Value) {
    let dir = std::env::temp_dir().join(format!("plan-accounts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("{err}"));
    let config = dir.join("operator.yaml");
    std::fs::write(&config, CONFIG).unwrap_or_else(|err| panic!("{err}"));
    let config = config.to_string_lossy().to_string();
    let run = podidentity_with_stdin(
        &["plan", "-f", "-", "--config", &config, "-o", "json"],
        Some(stdin),
    );
    let plan = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}\n{}", run.stdout, run.stderr));
    (run.code, plan)
}

fn entry<'a>(plan: &'a Value, namespace: &str) -> &'a Value {
    plan["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["namespace"] == namespace)
        .unwrap_or_else(|| panic!("no binding in {namespace}: {plan:#}"))
}

#[test]
fn a_placed_namespaces_role_is_planned_in_its_account() {
    let (code, plan) = plan(&inputs(TEAM));
    assert_eq!(code, 0, "{plan:#}");
    let placed = entry(&plan, "payments").to_string();
    assert!(
        placed.contains(&format!("arn:aws:iam::{TEAM}:role/podidentity/prod/")),
        "{placed}"
    );
    assert!(
        placed.contains(&format!(
            "arn:aws:iam::{TEAM}:oidc-provider/oidc.eks.eu-west-1"
        )),
        "{placed}"
    );
    assert!(!placed.contains("111122223333"), "{placed}");
    // A namespace no policy places stays in the operator's own account.
    let own = entry(&plan, "web").to_string();
    assert!(own.contains("arn:aws:iam::111122223333:role/"), "{own}");
}

#[test]
fn an_account_not_configured_is_refused_naming_the_policy() {
    let (code, plan) = plan(&inputs("777788889999"));
    assert_eq!(code, 1, "{plan:#}");
    let refused = entry(&plan, "payments");
    assert_eq!(refused["valid"], false, "{refused:#}");
    let text = refused.to_string();
    assert!(
        text.contains("PodIdentityPolicy payments-team (spec.account)")
            && text.contains("not among the operator's accounts"),
        "{text}"
    );
    assert_eq!(entry(&plan, "web")["valid"], true);
}
