//! Admission of PodIdentityBindings, request by request: refusals the controller would
//! make, the credentials Secret right (asked of a scripted authorizer here; of the real API
//! server in the end-to-end tests), and what is never judged.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use podidentity_api::config::{AwsConfig, OperatorConfig};
use podidentity_webhook::policies::NamespaceRules;
use podidentity_webhook::validation::{BindingAdmission, SecretRights, UserInfo};
use serde_json::{Value, json};

/// Answers from a list of users who may create Secrets, and records who was asked about.
#[derive(Default)]
struct Rights {
    allowed: Vec<String>,
    asked: Mutex<Vec<(String, String)>>,
}

impl SecretRights for Rights {
    fn may_create_secrets<'a>(
        &'a self,
        user: &'a UserInfo,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<bool, String>> {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push((
                user.username.clone().unwrap_or_default(),
                namespace.to_string(),
            ));
        }
        let username = user.username.clone().unwrap_or_default();
        Box::pin(async move { Ok(self.allowed.contains(&username)) })
    }
}

fn admission(allowed: &[&str]) -> (BindingAdmission, Arc<Rights>) {
    let config = OperatorConfig {
        cluster_name: "prod".into(),
        aws: AwsConfig {
            account_id: Some("111122223333".into()),
            ..AwsConfig::default()
        },
        ..OperatorConfig::default()
    };
    let rights = Arc::new(Rights {
        allowed: allowed.iter().map(ToString::to_string).collect(),
        ..Rights::default()
    });
    let rules = NamespaceRules::from_config(&config);
    (
        BindingAdmission {
            operator: Some((config, rules)),
            rights: rights.clone(),
            controller_user: Some("system:serviceaccount:x:op".into()),
        },
        rights,
    )
}

fn binding(spec: Value) -> Value {
    json!({
        "apiVersion": "podidentity.io/v1alpha1", "kind": "PodIdentityBinding",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": spec,
    })
}

fn with_secret() -> Value {
    json!({"serviceAccountName": "orders", "credentialsSecret": {"name": "orders-aws"}})
}

async fn answer(
    admission: &BindingAdmission,
    operation: &str,
    user: &str,
    object: Value,
    old: Option<Value>,
) -> (bool, String) {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u1", "operation": operation, "namespace": "shop",
            "kind": {"group": "podidentity.io", "version": "v1alpha1", "kind": "PodIdentityBinding"},
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": object, "oldObject": old,
        },
    });
    let body = serde_json::to_vec(&review).unwrap_or_default();
    let reviewed = admission
        .review(&body)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let json = serde_json::to_value(&reviewed).unwrap_or_default();
    assert_eq!(json["response"]["uid"], "u1");
    (
        json["response"]["allowed"].as_bool().unwrap_or(false),
        json["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test]
async fn a_credentials_secret_needs_the_right_to_create_secrets() {
    let (admission, rights) = admission(&["admin"]);
    let (allowed, message) =
        answer(&admission, "CREATE", "alice", binding(with_secret()), None).await;
    assert!(!allowed);
    assert!(
        message.contains("spec.credentialsSecret.name")
            && message.contains("alice may not create Secrets in namespace shop")
            && message.contains("orders-aws"),
        "{message}"
    );
    let (allowed, _) = answer(&admission, "CREATE", "admin", binding(with_secret()), None).await;
    assert!(allowed);
    assert_eq!(
        rights.asked.lock().map(|a| a.clone()).unwrap_or_default(),
        [
            ("alice".to_string(), "shop".to_string()),
            ("admin".into(), "shop".into())
        ]
    );
}

#[tokio::test]
async fn only_a_new_or_renamed_secret_is_asked_about() {
    let (admission, rights) = admission(&[]);
    let before = binding(with_secret());
    // The same spec (the operator's finalizer patch, a re-apply): no question.
    let (allowed, _) = answer(
        &admission,
        "UPDATE",
        "alice",
        before.clone(),
        Some(before.clone()),
    )
    .await;
    assert!(allowed);
    // Another field changed, the Secret kept: no question either.
    let mut audience = before.clone();
    audience["spec"]["audience"] = json!("example.com");
    let (allowed, _) = answer(
        &admission,
        "UPDATE",
        "alice",
        audience,
        Some(before.clone()),
    )
    .await;
    assert!(allowed);
    assert!(rights.asked.lock().map(|a| a.is_empty()).unwrap_or(false));
    // Another Secret name: asked, refused.
    let mut renamed = before.clone();
    renamed["spec"]["credentialsSecret"]["name"] = json!("elsewhere");
    let (allowed, message) = answer(&admission, "UPDATE", "alice", renamed, Some(before)).await;
    assert!(!allowed, "{message}");
}

#[tokio::test]
async fn a_binding_the_operator_would_refuse_is_refused_with_the_same_words() {
    let (admission, _) = admission(&[]);
    let spec = json!({
        "serviceAccountName": "orders",
        "permissions": {"statements": [{"actions": ["sts:AssumeRole"], "resources": ["*"]}]},
    });
    let (allowed, message) =
        answer(&admission, "CREATE", "alice", binding(spec.clone()), None).await;
    assert!(!allowed);
    let typed = serde_json::from_value(spec).unwrap_or_default();
    let config = admission
        .operator
        .as_ref()
        .map(|(c, g)| (c.clone(), g.clone()));
    let Some((config, rules)) = config else {
        panic!("configured")
    };
    let expected = podidentity_iam::desired_state(
        podidentity_iam::BindingRef::new("shop", "orders"),
        &typed,
        &config,
        &rules.guardrails_for("shop"),
    )
    .err()
    .map(|e| e.to_string());
    assert_eq!(
        Some(message),
        expected,
        "the status's message, word for word"
    );
}

#[tokio::test]
async fn deletions_the_short_form_and_unreadable_objects_pass() {
    let (admission, _) = admission(&[]);
    let greedy = json!({
        "serviceAccountName": "orders",
        "permissions": {"statements": [{"actions": ["*"], "resources": ["*"]}]},
    });
    // Being deleted: the operator's finalizer removal must pass.
    let mut deleting = binding(greedy.clone());
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert!(
        answer(
            &admission,
            "UPDATE",
            "system:serviceaccount:x:op",
            deleting,
            Some(binding(json!({"serviceAccountName": "orders"})))
        )
        .await
        .0
    );
    assert!(
        answer(
            &admission,
            "DELETE",
            "alice",
            Value::Null,
            Some(binding(greedy.clone()))
        )
        .await
        .0
    );
    // Made from an annotated ServiceAccount: refused in its status, not at creation.
    let mut from_annotations = binding(greedy);
    from_annotations["metadata"]["labels"] =
        json!({"podidentity.io/from-service-account": "orders"});
    assert!(
        answer(
            &admission,
            "CREATE",
            "system:serviceaccount:x:op",
            from_annotations.clone(),
            None
        )
        .await
        .0
    );
    // The label set by anyone else exempts nothing (the second adversarial pass stored
    // refused bindings past admission that way).
    assert!(
        !answer(&admission, "CREATE", "alice", from_annotations, None)
            .await
            .0
    );
    // A newer schema this webhook cannot read: the API server's schema judged it.
    let newer = binding(json!({"serviceAccountName": "orders", "aFieldFromTheFuture": true}));
    assert!(answer(&admission, "CREATE", "alice", newer, None).await.0);
}
