//! Admission of bindings by the webhook, called over HTTPS by the real API server, for a
//! user who is not the admin: a binding the operator would refuse fails at create with its
//! status's words, and a credentials Secret is taken only from someone who may create
//! Secrets in the namespace.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, PostParams};
use kube::core::ObjectMeta;
use podidentity_api::PodIdentityBinding;
use podidentity_e2e::Scenario;
use serde_json::{Value, json};

fn binding(ns: &str, name: &str, spec: Value) -> PodIdentityBinding {
    serde_json::from_value(json!({
        "apiVersion": "podidentity.io/v1alpha1", "kind": "PodIdentityBinding",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .expect("binding")
}

/// `user` may do `verbs` on `resources` of `group` in `ns`, and nothing else there.
async fn grant(
    s: &Scenario,
    ns: &str,
    user: &str,
    name: &str,
    group: &str,
    resources: &[&str],
    verbs: &[&str],
) {
    let strings = |items: &[&str]| items.iter().map(ToString::to_string).collect::<Vec<_>>();
    let meta = ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(ns.to_string()),
        ..ObjectMeta::default()
    };
    let role = Role {
        metadata: meta.clone(),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![group.to_string()]),
            resources: Some(strings(resources)),
            verbs: strings(verbs),
            ..PolicyRule::default()
        }]),
    };
    Api::<Role>::namespaced(s.client(), ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("Role");
    let binding = RoleBinding {
        metadata: meta,
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: name.to_string(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: user.to_string(),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(s.client(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("RoleBinding");
}

fn refusal(result: Result<PodIdentityBinding, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            status.message
        }
        other => panic!("expected a refusal by the webhook, got {other:?}"),
    }
}

pub async fn bindings_are_judged_at_admission_for_their_author(s: Scenario) {
    let (rendered, _controller) = s.start_controller(json!({})).await;
    let webhook = s.start_webhook(&rendered).await;
    let ns = s.namespace("admit").await;
    s.register_binding_admission(&rendered, &webhook, &ns).await;
    grant(
        &s,
        &ns,
        "alice",
        "binding-author",
        "podidentity.io",
        &["podidentitybindings"],
        &["create", "get", "update", "patch"],
    )
    .await;
    let alice: Api<PodIdentityBinding> = Api::namespaced(s.client_as("alice").await, &ns);
    let mark = s.iam.mark();

    // A binding the operator would refuse. The API server takes a moment to see a new
    // webhook configuration: until then the create would pass, so wait for the first
    // refusal on a name that is never used again.
    let greedy = json!({
        "serviceAccountName": "app",
        "permissions": {"statements": [{"actions": ["sts:AssumeRole"], "resources": ["*"]}]},
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    let message = loop {
        attempt += 1;
        let probe = format!("probe-{attempt}");
        match alice
            .create(
                &PostParams::default(),
                &binding(&ns, &probe, greedy.clone()),
            )
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 403 => break status.message,
            Ok(_) => {
                let _ = s.bindings(&ns).delete(&probe, &Default::default()).await;
            }
            Err(err) => panic!("{err}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the webhook never judged a binding"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        message.contains("spec.permissions.statements[0].actions[0]")
            && message.contains("guardrails.deniedActions"),
        "{message}"
    );

    // A credentials Secret, from alice who may not create Secrets here.
    let with_secret =
        json!({"serviceAccountName": "app", "credentialsSecret": {"name": "app-aws"}});
    let message = refusal(
        alice
            .create(
                &PostParams::default(),
                &binding(&ns, "app", with_secret.clone()),
            )
            .await,
    );
    assert!(
        message.contains("spec.credentialsSecret.name")
            && message.contains("alice may not create Secrets")
            && message.contains(&ns),
        "{message}"
    );
    // Without the Secret: admitted, and Ready.
    s.create_service_account(&ns, "app", json!({})).await;
    alice
        .create(
            &PostParams::default(),
            &binding(&ns, "app", json!({"serviceAccountName": "app"})),
        )
        .await
        .expect("a binding without a Secret");
    s.wait_ready(&ns, "app").await;
    // Adding the Secret later is judged too.
    let mut current = alice.get("app").await.expect("binding");
    current.spec = serde_json::from_value(with_secret.clone()).expect("spec");
    let message = refusal(alice.replace("app", &PostParams::default(), &current).await);
    assert!(
        message.contains("alice may not create Secrets"),
        "{message}"
    );

    // Once alice may create Secrets, the same change passes and the operator writes it.
    grant(
        &s,
        &ns,
        "alice",
        "secret-writer",
        "",
        &["secrets"],
        &["create"],
    )
    .await;
    let mut current = alice.get("app").await.expect("binding");
    current.spec = serde_json::from_value(with_secret).expect("spec");
    alice
        .replace("app", &PostParams::default(), &current)
        .await
        .expect("admitted once alice may create Secrets");
    let secrets: Api<Secret> = Api::namespaced(s.client(), &ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while secrets.get_opt("app-aws").await.ok().flatten().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Secret was never written"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Refused bindings never existed: no IAM call for them.
    let refused: Vec<_> = s
        .iam
        .calls_since(mark)
        .into_iter()
        .filter(|c| c.role.as_deref().is_some_and(|r| r.contains("probe")))
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
}
