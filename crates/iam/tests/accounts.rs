//! A namespace placed in another account by its PodIdentityPolicy: its roles are built
//! there (ARN, trust in that account's OIDC provider, `${account}` in the policy's
//! templates), and a placement the operator cannot honour refuses with the policy named.

use std::collections::BTreeMap;

use podidentity_api::config::{AccountConfig, AwsConfig, OperatorConfig};
use podidentity_api::{PodIdentityBindingSpec, PodIdentityPolicy, PodIdentityPolicySpec};
use podidentity_iam::namespace_policy::NamespacePolicy;
use podidentity_iam::{BindingRef, Error, Guardrails, desired_state};
use serde_json::json;

const OWN: &str = "111122223333";
const TEAM: &str = "444455556666";
const ISSUER: &str = "oidc.example.com/prod";

fn config() -> OperatorConfig {
    OperatorConfig {
        cluster_name: "prod".into(),
        aws: AwsConfig {
            account_id: Some(OWN.into()),
            region: Some("eu-west-1".into()),
            ..AwsConfig::default()
        },
        accounts: vec![AccountConfig {
            id: TEAM.into(),
            role_arn: format!("arn:aws:iam::{TEAM}:role/podidentity-operator"),
            max_requests_per_second: None,
        }],
        oidc: podidentity_api::config::OidcConfig {
            issuer_url: Some(format!("https://{ISSUER}")),
            ..Default::default()
        },
        ..OperatorConfig::default()
    }
}

fn policy(name: &str, spec: serde_json::Value) -> NamespacePolicy {
    let spec: PodIdentityPolicySpec =
        serde_json::from_value(spec).unwrap_or_else(|err| panic!("{err}"));
    NamespacePolicy::from_resource(&PodIdentityPolicy::new(name, spec))
        .unwrap_or_else(|problems| panic!("{problems:?}"))
}

/// `team-*` namespaces (labelled `tenant: team`) placed in `account`, with SQS queues of
/// their own named by `${account}`.
fn placing(account: &str) -> NamespacePolicy {
    policy(
        "tenants",
        json!({
            "namespaceSelector": {"matchLabels": {"tenant": "team"}},
            "account": account,
            "allowedResources": ["arn:aws:sqs:eu-west-1:${account}:${namespace}_*"],
        }),
    )
}

fn labels() -> BTreeMap<String, BTreeMap<String, String>> {
    BTreeMap::from([(
        "shop".to_string(),
        BTreeMap::from([("tenant".to_string(), "team".to_string())]),
    )])
}

fn binding(queue_account: &str) -> PodIdentityBindingSpec {
    serde_json::from_value(json!({
        "serviceAccountName": "orders",
        "permissions": {"statements": [{
            "effect": "Allow",
            "actions": ["sqs:SendMessage"],
            "resources": [format!("arn:aws:sqs:eu-west-1:{queue_account}:shop_orders")],
        }]},
    }))
    .unwrap_or_else(|err| panic!("{err}"))
}

fn judge(
    namespace: &str,
    spec: &PodIdentityBindingSpec,
    policies: Vec<NamespacePolicy>,
) -> Result<podidentity_iam::DesiredState, Error> {
    let config = config();
    let guardrails = Guardrails::from_config(&config).with_policies(policies, labels());
    desired_state(
        BindingRef {
            namespace,
            name: "orders",
            recorded_role_name: None,
            owner_tag: None,
        },
        spec,
        &config,
        &guardrails,
    )
}

fn refusal(result: Result<podidentity_iam::DesiredState, Error>) -> Vec<(String, String)> {
    match result {
        Err(Error::Refused(violations)) => violations
            .into_iter()
            .map(|v| (v.field, v.message))
            .collect(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_placed_namespaces_role_lives_in_its_account_and_trusts_that_accounts_provider() {
    let desired =
        judge("shop", &binding(TEAM), vec![placing(TEAM)]).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(desired.account.as_deref(), Some(TEAM));
    assert!(
        desired
            .role
            .arn
            .starts_with(&format!("arn:aws:iam::{TEAM}:role/")),
        "{}",
        desired.role.arn
    );
    let trust = serde_json::to_string(&desired.role.trust_policy).unwrap_or_default();
    assert!(
        trust.contains(&format!("arn:aws:iam::{TEAM}:oidc-provider/{ISSUER}")),
        "{trust}"
    );
    assert!(!trust.contains(OWN), "{trust}");
    // The annotation the ServiceAccount gets names the role in that account.
    assert_eq!(
        desired
            .service_account
            .annotations
            .get("eks.amazonaws.com/role-arn"),
        Some(&desired.role.arn)
    );
}

#[test]
fn the_account_template_is_the_namespaces_account() {
    // A queue of the operator's own account is outside `${account}` once placed.
    let refused = refusal(judge("shop", &binding(OWN), vec![placing(TEAM)]));
    assert!(
        refused
            .iter()
            .any(|(field, _)| field == "spec.permissions.statements[0].resources[0]"),
        "{refused:?}"
    );
}

#[test]
fn a_namespace_no_policy_places_stays_in_the_operators_account() {
    let desired =
        judge("blog", &binding(OWN), vec![placing(TEAM)]).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(desired.account, None);
    assert!(
        desired
            .role
            .arn
            .starts_with(&format!("arn:aws:iam::{OWN}:role/"))
    );
}

#[test]
fn an_account_the_operator_does_not_act_in_refuses_naming_the_policy() {
    let refused = refusal(judge(
        "shop",
        &binding("777788889999"),
        vec![placing("777788889999")],
    ));
    assert!(
        refused.iter().any(
            |(field, message)| field == "PodIdentityPolicy tenants (spec.account)"
                && message.contains("not among the operator's accounts")
        ),
        "{refused:?}"
    );
}

#[test]
fn two_policies_placing_one_namespace_in_two_accounts_refuse_it() {
    let other = policy(
        "shop-only",
        json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}},
            "account": OWN,
        }),
    );
    let refused = refusal(judge("shop", &binding(TEAM), vec![placing(TEAM), other]));
    assert!(
        refused
            .iter()
            .any(|(_, message)| message.contains("can live in one account only")),
        "{refused:?}"
    );
}

#[test]
fn pod_identity_in_another_account_is_refused_naming_the_mechanism() {
    let mut spec = binding(TEAM);
    spec.identity.mechanism = Some(podidentity_api::Mechanism::PodIdentity);
    let refused = refusal(judge("shop", &spec, vec![placing(TEAM)]));
    assert!(
        refused
            .iter()
            .any(|(field, message)| field == "spec.identity.mechanism"
                && message.contains(&format!("account {TEAM}"))),
        "{refused:?}"
    );
}
