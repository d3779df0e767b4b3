//! The judgement over hand-made facts: a healthy chain, then each link broken alone and
//! found first, with its reason.

use std::collections::BTreeMap;

use podidentity_api::config::OperatorConfig;
use podidentity_aws::{AwsError, ErrorKind, OidcProvider, RoleState};
use podidentity_iam::assume::{Claims, TokenFacts};
use podidentity_iam::trust::trust_policy;
use serde_json::json;

use super::chain::{Health, judge};
use super::gather::{Discovery, Facts};

const ISSUER: &str = "https://oidc.example.com/id/ABC";
const PROVIDER: &str = "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/ABC";
const ARN: &str = "arn:aws:iam::111122223333:role/podidentity/prod/prod-shop.orders";

fn config() -> OperatorConfig {
    let mut config = OperatorConfig {
        cluster_name: "prod".into(),
        ..OperatorConfig::default()
    };
    config.oidc.issuer_url = Some(ISSUER.into());
    config.aws.account_id = Some("111122223333".into());
    config
}

fn from<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
}

fn service_account(annotated: bool) -> k8s_openapi::api::core::v1::ServiceAccount {
    let annotations = if annotated {
        json!({"eks.amazonaws.com/role-arn": ARN})
    } else {
        json!({})
    };
    from(
        json!({"metadata": {"name": "orders", "namespace": "shop", "annotations": annotations,
        "managedFields": [{"manager": "podidentity-operator", "operation": "Apply",
            "apiVersion": "v1", "time": "2026-11-23T10:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:annotations": {"f:eks.amazonaws.com/role-arn": {}}}}}]}}),
    )
}

fn binding(name: &str, created: &str, ready: bool) -> podidentity_api::PodIdentityBinding {
    from(
        json!({"apiVersion": "podidentity.io/v1alpha1", "kind": "PodIdentityBinding",
        "metadata": {"name": name, "namespace": "shop", "uid": name, "creationTimestamp": created},
        "spec": {"serviceAccountName": "orders"},
        "status": {"roleArn": ARN, "conditions": [{"type": "Ready",
            "status": if ready { "True" } else { "False" },
            "reason": if ready { "Synced" } else { "GuardrailViolation" }, "message": "",
            "lastTransitionTime": "2026-11-23T10:00:00Z"}]}}),
    )
}

fn role(trust: &str) -> RoleState {
    RoleState {
        name: "prod-shop.orders".into(),
        arn: ARN.into(),
        path: "/podidentity/prod/".into(),
        trust_policy: trust.into(),
        tags: BTreeMap::from([
            ("podidentity.io/cluster".into(), "prod".into()),
            ("podidentity.io/namespace".into(), "shop".into()),
            ("podidentity.io/binding".into(), "orders".into()),
        ]),
        ..RoleState::default()
    }
}

fn ours(namespace: &str) -> String {
    trust_policy(&[PROVIDER.into()], namespace, "orders", "sts.amazonaws.com").minified()
}

fn token(subject: &str, audience: &str, issuer: &str) -> (String, TokenFacts) {
    (
        "jwt".into(),
        TokenFacts {
            claims: Claims {
                issuer: issuer.into(),
                subject: subject.into(),
                audiences: vec![audience.into()],
            },
            key_id: Some("k1".into()),
            expires_at: None,
        },
    )
}

fn pod(created: &str, mutated: bool) -> k8s_openapi::api::core::v1::Pod {
    let container = if mutated {
        json!({"name": "app", "image": "x",
            "env": [{"name": "AWS_ROLE_ARN", "value": ARN},
                    {"name": "AWS_WEB_IDENTITY_TOKEN_FILE",
                     "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}],
            "volumeMounts": [{"name": "aws-iam-token",
                "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount"}]})
    } else {
        json!({"name": "app", "image": "x"})
    };
    from(
        json!({"metadata": {"name": "orders-1", "namespace": "shop", "creationTimestamp": created},
        "spec": {"serviceAccountName": "orders", "containers": [container],
            "volumes": [{"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken":
                {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}}]}}),
    )
}

fn healthy() -> Facts {
    let account = service_account(true);
    Facts {
        pod_identity: None,
        config: config(),
        namespace: "shop".into(),
        service_account_name: "orders".into(),
        pod: Some(Ok(Some(pod("2026-11-23T11:00:00Z", true)))),
        annotated_at: Some(
            "2026-11-23T10:00:00Z"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
        ),
        service_account: Ok(Some(account)),
        bindings: Ok(vec![binding("orders", "2026-11-23T09:00:00Z", true)]),
        role: Some(Ok(role(&ours("shop")))),
        audience: "sts.amazonaws.com".into(),
        token: Ok(token(
            "system:serviceaccount:shop:orders",
            "sts.amazonaws.com",
            ISSUER,
        )),
        provider_arn: PROVIDER.into(),
        provider: Ok(OidcProvider {
            url: "oidc.example.com/id/ABC".into(),
            client_ids: vec!["sts.amazonaws.com".into()],
            ..OidcProvider::default()
        }),
        discovery: Some(Ok(Discovery {
            issuer: ISSUER.into(),
            jwks_uri: format!("{ISSUER}/keys"),
            key_ids: vec!["k1".into()],
        })),
        assumed: None,
    }
}

/// The first broken link and its reason.
fn first_broken(facts: &Facts) -> Option<(&'static str, &'static str)> {
    judge(facts)
        .into_iter()
        .find(|l| l.health == Health::Broken)
        .map(|l| (l.link, l.reason))
}

#[test]
fn a_healthy_chain_has_no_broken_link() {
    let links = judge(&healthy());
    assert!(
        links
            .iter()
            .all(|l| matches!(l.health, Health::Ok | Health::Skipped)),
        "{links:#?}"
    );
    assert_eq!(links.len(), 10);
}

/// One way to break the healthy chain.
type Breaks = Box<dyn Fn(&mut Facts)>;

#[test]
fn each_broken_link_is_found_first_with_its_reason() {
    let cases: Vec<(&str, Breaks, (&str, &str))> = vec![
        (
            "no annotation",
            Box::new(|f| {
                f.service_account = Ok(Some(service_account(false)));
                f.role = None;
            }),
            ("serviceAccount", "NotAnnotated"),
        ),
        (
            "binding refused",
            Box::new(|f| f.bindings = Ok(vec![binding("orders", "2026-11-23T09:00:00Z", false)])),
            ("binding", "NotReady"),
        ),
        (
            "role gone",
            Box::new(|f| {
                f.role = Some(Err(AwsError::new(ErrorKind::NotFound, "GetRole", "gone")));
            }),
            ("role", "NotFound"),
        ),
        (
            "wrong issuer configured",
            Box::new(|f| f.config.oidc.issuer_url = Some("https://oidc.wrong.example.com".into())),
            ("issuer", "IssuerMismatch"),
        ),
        (
            "trust for another namespace",
            Box::new(|f| f.role = Some(Ok(role(&ours("blog"))))),
            ("trustPolicy", "NotAllowed"),
        ),
        (
            "wrong audience",
            Box::new(|f| {
                f.audience = "vault".into();
                f.token = Ok(token("system:serviceaccount:shop:orders", "vault", ISSUER));
            }),
            ("trustPolicy", "NotAllowed"),
        ),
        (
            "missing provider",
            Box::new(|f| {
                f.provider = Err(AwsError::new(
                    ErrorKind::NotFound,
                    "GetOpenIDConnectProvider",
                    "none",
                ));
            }),
            ("oidcProvider", "NotFound"),
        ),
        (
            "unpublished key",
            Box::new(|f| {
                if let Some(Ok(d)) = &mut f.discovery {
                    d.key_ids = vec!["old".into()];
                }
            }),
            ("discovery", "KeyMissing"),
        ),
        (
            "issuer refuses anonymous readers",
            Box::new(|f| {
                f.discovery = Some(Err(format!(
                    "GET {ISSUER}/.well-known/openid-configuration answered 403 Forbidden"
                )));
            }),
            ("discovery", "Forbidden"),
        ),
        (
            "issuer unreachable",
            Box::new(|f| {
                f.discovery = Some(Err(format!(
                    "cannot connect to oidc.example.com:443 for {ISSUER}: refused"
                )));
            }),
            ("discovery", "Unreachable"),
        ),
        (
            "pod before the annotation",
            Box::new(|f| f.pod = Some(Ok(Some(pod("2026-11-23T09:30:00Z", false))))),
            ("pod", "StartedBeforeAnnotation"),
        ),
        (
            "pod after the annotation, unmutated",
            Box::new(|f| f.pod = Some(Ok(Some(pod("2026-11-23T11:00:00Z", false))))),
            ("pod", "NotMutated"),
        ),
        (
            "STS refuses",
            Box::new(|f| {
                f.assumed = Some(Err(AwsError::new(
                    ErrorKind::AccessDenied,
                    "AssumeRoleWithWebIdentity",
                    "denied",
                )));
            }),
            ("assume", "Refused"),
        ),
    ];
    for (why, breaks, expected) in cases {
        let mut facts = healthy();
        breaks(&mut facts);
        assert_eq!(first_broken(&facts), Some(expected), "{why}");
    }
}

#[test]
fn a_service_account_claimed_twice_is_a_warning_naming_the_waiting_binding() {
    let mut facts = healthy();
    facts.bindings = Ok(vec![
        binding("orders", "2026-11-23T09:00:00Z", true),
        binding("orders-copy", "2026-11-23T09:05:00Z", false),
    ]);
    let links = judge(&facts);
    let claimed = links
        .iter()
        .find(|l| l.link == "binding")
        .unwrap_or_else(|| panic!("no binding link"));
    assert_eq!(
        (claimed.health, claimed.reason),
        (Health::Warning, "ClaimedTwice")
    );
    assert!(claimed.detail.contains("orders-copy"), "{}", claimed.detail);
    assert_eq!(first_broken(&facts), None);
}
