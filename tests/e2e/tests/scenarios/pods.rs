//! What pods get: the webhook registered through the chart's MutatingWebhookConfiguration
//! and called by the API server's admission chain over HTTPS; and a token the API server
//! issues, checked against the role's trust policy and exchanged at moto's STS.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use podidentity_e2e::Scenario;
use podidentity_e2e::scenario::ACCOUNT;
use podidentity_e2e::sts::{assume_role_with_web_identity, claims};
use serde_json::{Value, json};

fn spec(account: &str) -> Value {
    json!({
        "serviceAccountName": account,
        "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["*"]}]},
    })
}

async fn create_pod(s: &Scenario, ns: &str, name: &str, account: &str) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": account,
            "containers": [
                {"name": "app", "image": "registry.example/app:1"},
                {"name": "sidecar", "image": "registry.example/proxy:1"},
            ],
        },
    }))
    .expect("pod");
    Api::<Pod>::namespaced(s.client(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("create pod {ns}/{name}: {e}"))
}

/// `AWS_ROLE_ARN` of each container, and whether the token volume is there.
fn injected(pod: &Pod) -> (Vec<Option<String>>, bool) {
    let spec = pod.spec.clone().unwrap_or_default();
    let arns = spec
        .containers
        .iter()
        .map(|c| {
            c.env
                .iter()
                .flatten()
                .find(|e| e.name == "AWS_ROLE_ARN")
                .and_then(|e| e.value.clone())
        })
        .collect();
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == "aws-iam-token");
    (arns, volume)
}

pub async fn the_api_server_calls_the_webhook(s: Scenario) {
    let (rendered, mut controller) = s.start_controller(json!({})).await;
    let _webhook = s.start_webhook(&rendered).await;
    let ns = s.namespace("pods").await;
    s.create_service_account(&ns, "app", json!({})).await;
    s.create_binding(&ns, "app", spec("app")).await;
    s.wait_ready(&ns, "app").await;
    let arn = s.role_arn(&ns, "app");
    let pod = create_pod(&s, &ns, "annotated", "app").await;
    let (arns, volume) = injected(&pod);
    assert_eq!(
        arns,
        [Some(arn.clone()), Some(arn.clone())],
        "every container"
    );
    assert!(volume, "the projected token volume");
    let env = &pod.spec.clone().unwrap_or_default().containers[0]
        .env
        .clone()
        .unwrap_or_default();
    assert!(env.iter().any(|e| e.name == "AWS_WEB_IDENTITY_TOKEN_FILE"
        && e.value.as_deref() == Some("/var/run/secrets/eks.amazonaws.com/serviceaccount/token")));

    // A pod created before its ServiceAccount carries the role: the binding predicts it.
    controller.process.kill();
    s.create_service_account(&ns, "late", json!({})).await;
    s.create_binding(&ns, "late", spec("late")).await;
    let pod = create_pod(&s, &ns, "early-pod", "late").await;
    assert!(
        !s.annotations(&ns, "late")
            .await
            .contains_key("eks.amazonaws.com/role-arn"),
        "the ServiceAccount is not annotated yet"
    );
    let late_arn = s.role_arn(&ns, "late");
    assert_eq!(
        injected(&pod),
        (vec![Some(late_arn.clone()), Some(late_arn)], true)
    );

    // A namespace that opted out is left alone.
    let opted_out = s
        .namespace_labelled("optout", json!({"podidentity.io/webhook": "disabled"}))
        .await;
    s.create_service_account(
        &opted_out,
        "app",
        json!({"eks.amazonaws.com/role-arn": arn}),
    )
    .await;
    let pod = create_pod(&s, &opted_out, "left-alone", "app").await;
    assert_eq!(injected(&pod), (vec![None, None], false));
}

pub async fn a_token_from_the_api_server_matches_the_trust_policy(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("token").await;
    s.create_service_account(&ns, "app", json!({})).await;
    s.create_binding(&ns, "app", spec("app")).await;
    s.wait_ready(&ns, "app").await;

    let token = s
        .cluster
        .token(&ns, "app", &["sts.amazonaws.com"], 3600)
        .await
        .expect("TokenRequest");
    let claims = claims(&token).expect("JWT claims");
    let issuer = claims["iss"].as_str().expect("iss").to_string();
    let host = issuer.trim_start_matches("https://");
    let subject = format!("system:serviceaccount:{ns}:app");
    assert_eq!(claims["sub"], json!(subject));
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));

    let role = s.iam_role(&s.role_name(&ns, "app")).await.expect("role");
    let trust: Value = serde_json::from_str(&role.trust_policy).expect("trust JSON");
    let statement = &trust["Statement"][0];
    assert_eq!(
        statement["Principal"]["Federated"],
        json!(format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{host}")),
        "the provider is the issuer the API server signs with"
    );
    assert_eq!(statement["Action"], json!("sts:AssumeRoleWithWebIdentity"));
    let equals = &statement["Condition"]["StringEquals"];
    assert_eq!(equals[format!("{host}:sub")], json!(subject));
    assert_eq!(equals[format!("{host}:aud")], json!("sts.amazonaws.com"));

    let (status, body) = assume_role_with_web_identity(&s.cluster.moto, &role.arn, &token)
        .await
        .expect("STS");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("assumed-role/{}/e2e", role.name)),
        "{body}"
    );
}
