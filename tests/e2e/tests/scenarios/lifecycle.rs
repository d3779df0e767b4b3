//! A binding's life as a user lives it: create, `kubectl wait`, the printer columns,
//! changes in place, annotations taken back, delete and retain, the credentials Secret,
//! a role that is not ours, refusals, and the API server enforcing the CRD's schema.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use podidentity_aws::api::{Iam, NewRole};
use podidentity_e2e::Scenario;
use podidentity_e2e::scenario::condition;
use podidentity_e2e::wait::{check, until};
use serde_json::json;

fn reader_spec(account: &str) -> serde_json::Value {
    json!({
        "serviceAccountName": account,
        "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::shop-orders/*"]}]},
    })
}

pub async fn create_wait_update_delete(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("shop").await;
    s.create_service_account(&ns, "orders", json!({})).await;
    s.create_binding(&ns, "orders-s3", reader_spec("orders"))
        .await;
    let (ok, out, err) = s
        .cluster
        .kubectl(&[
            "wait",
            "--for=condition=Ready",
            "pib/orders-s3",
            "-n",
            &ns,
            "--timeout=60s",
        ])
        .await;
    assert!(ok, "kubectl wait: {out} {err}");
    let binding = s.wait_ready(&ns, "orders-s3").await;
    let arn = s.role_arn(&ns, "orders-s3");
    let status = binding.status.clone().unwrap_or_default();
    assert_eq!(status.role_arn.as_deref(), Some(arn.as_str()));
    let role_name = s.role_name(&ns, "orders-s3");
    let role = s
        .iam_role(&role_name)
        .await
        .expect("the role exists in IAM");
    assert_eq!(role.arn, arn);
    assert_eq!(status.role_id.as_deref(), Some(role.id.as_str()));
    assert_eq!(
        s.annotations(&ns, "orders")
            .await
            .get("eks.amazonaws.com/role-arn"),
        Some(&arn)
    );
    s.wait_event(&ns, "orders-s3", "Created").await;

    let (ok, out, err) = s.cluster.kubectl(&["get", "pib", "-n", &ns]).await;
    assert!(ok, "{err}");
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "SERVICE", "ACCOUNT", "ROLE", "ARN", "READY", "REASON", "AGE"
        ]
    );
    let row = out.lines().nth(1).unwrap_or_default();
    for cell in ["orders-s3", "orders", arn.as_str(), "True", "Synced"] {
        assert!(row.contains(cell), "printer row {row:?} lacks {cell}");
    }

    // In place: a managed policy and an audience; same role, same id.
    s.patch_spec(
        &ns,
        "orders-s3",
        json!({
            "audience": "orders.example.com",
            "permissions": {"managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess"]},
        }),
    )
    .await;
    s.wait_ready(&ns, "orders-s3").await;
    until(
        "the managed policy attached",
        Duration::from_secs(30),
        || async {
            let attached = s.attached(&role_name).await;
            check(
                attached == ["arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess"],
                || format!("{attached:?}"),
            )
        },
    )
    .await;
    let after = s.iam_role(&role_name).await.expect("role");
    assert_eq!(after.id, role.id, "changed in place, never re-created");
    assert!(after.trust_policy.contains("orders.example.com"));
    assert_eq!(
        s.annotations(&ns, "orders")
            .await
            .get("eks.amazonaws.com/audience")
            .map(String::as_str),
        Some("orders.example.com")
    );
    s.wait_event(&ns, "orders-s3", "Updated").await;

    // The audience dropped from the spec: its annotation goes too (server-side apply of
    // the whole set the operator owns).
    s.patch_spec(&ns, "orders-s3", json!({"audience": null}))
        .await;
    s.wait_ready(&ns, "orders-s3").await;
    until(
        "the audience annotation to go",
        Duration::from_secs(30),
        || async {
            let annotations = s.annotations(&ns, "orders").await;
            check(
                !annotations.contains_key("eks.amazonaws.com/audience")
                    && annotations.get("eks.amazonaws.com/role-arn") == Some(&arn),
                || format!("{annotations:?}"),
            )
        },
    )
    .await;

    s.delete_binding(&ns, "orders-s3").await;
    s.wait_gone(&ns, "orders-s3").await;
    assert!(
        s.iam_role(&role_name).await.is_none(),
        "Delete removes the role"
    );
    let annotations = s.annotations(&ns, "orders").await;
    assert!(
        !annotations
            .keys()
            .any(|k| k.starts_with("eks.amazonaws.com/")),
        "the annotations it wrote are taken back: {annotations:?}"
    );
}

pub async fn retain_keeps_the_role_untagged(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("keep").await;
    s.create_service_account(&ns, "app", json!({})).await;
    let mut spec = reader_spec("app");
    spec["deletionPolicy"] = json!("Retain");
    s.create_binding(&ns, "app", spec).await;
    s.wait_ready(&ns, "app").await;
    let role_name = s.role_name(&ns, "app");
    let before = s.iam_role(&role_name).await.expect("role");
    assert!(before.tags.contains_key("podidentity.io/cluster"));
    s.delete_binding(&ns, "app").await;
    s.wait_gone(&ns, "app").await;
    let after = s.iam_role(&role_name).await.expect("Retain keeps the role");
    assert_eq!(after.id, before.id);
    assert!(
        !after.tags.keys().any(|k| k.starts_with("podidentity.io/")),
        "only the ownership tags go: {:?}",
        after.tags
    );
}

pub async fn credentials_secret_in_ccoctl_format(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("ocp").await;
    s.create_service_account(&ns, "app", json!({})).await;
    let mut spec = reader_spec("app");
    spec["credentialsSecret"] = json!({"name": "app-aws"});
    s.create_binding(&ns, "app", spec).await;
    let binding = s.wait_ready(&ns, "app").await;
    let secrets: Api<Secret> = Api::namespaced(s.client(), &ns);
    let secret = secrets.get("app-aws").await.expect("the Secret");
    let text = secret
        .data
        .as_ref()
        .and_then(|d| d.get("credentials"))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default();
    assert!(text.starts_with("[default]\n"), "{text}");
    assert!(
        text.contains(&format!("role_arn = {}", s.role_arn(&ns, "app"))),
        "{text}"
    );
    assert!(text.contains("web_identity_token_file = "), "{text}");
    let owners = secret.metadata.owner_references.unwrap_or_default();
    assert_eq!(owners.len(), 1);
    assert_eq!(Some(&owners[0].uid), binding.metadata.uid.as_ref());

    s.delete_binding(&ns, "app").await;
    s.wait_gone(&ns, "app").await;
    until(
        "garbage collection of the Secret",
        Duration::from_secs(60),
        || async {
            let found = secrets
                .get_opt("app-aws")
                .await
                .map_err(|e| e.to_string())?;
            check(found.is_none(), || "still there".into())
        },
    )
    .await;
}

pub async fn a_role_that_is_not_ours_is_a_conflict(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("taken").await;
    let role_name = s.role_name(&ns, "app");
    let foreign_trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    Iam::new(&s.moto)
        .create_role(NewRole {
            name: role_name.clone(),
            path: format!("/podidentity/{}/", s.cluster_name),
            trust_policy: foreign_trust.into(),
            description: "made by hand".into(),
            max_session_duration_seconds: 3600,
            permissions_boundary_arn: None,
            tags: [("owner".to_string(), "someone-else".to_string())].into(),
        })
        .await
        .expect("a role made by hand");
    let before = s.iam_role(&role_name).await.expect("role");
    s.create_service_account(&ns, "app", json!({})).await;
    s.create_binding(&ns, "app", reader_spec("app")).await;
    let binding = s
        .wait_condition(&ns, "app", "Ready", "False", Some("RoleConflict"))
        .await;
    assert!(
        condition(&binding, "Ready").is_some_and(|c| c.message.contains(&role_name)),
        "the message names the role"
    );
    s.wait_event(&ns, "app", "RoleConflict").await;
    assert_eq!(
        s.iam_role(&role_name).await,
        Some(before.clone()),
        "untouched"
    );
    assert!(s.attached(&role_name).await.is_empty());
    assert!(
        !s.annotations(&ns, "app")
            .await
            .contains_key("eks.amazonaws.com/role-arn")
    );
    s.delete_binding(&ns, "app").await;
    s.wait_gone(&ns, "app").await;
    assert_eq!(
        s.iam_role(&role_name).await,
        Some(before),
        "deleting the binding leaves a role that is not its own"
    );
}

pub async fn guardrail_refusals_change_nothing_in_iam(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("greedy").await;
    s.create_service_account(&ns, "app", json!({})).await;
    let mark = s.iam.mark();
    s.create_binding(
        &ns,
        "iam-admin",
        json!({
            "serviceAccountName": "app",
            "permissions": {"statements": [{"actions": ["*"], "resources": ["*"]}]},
        }),
    )
    .await;
    s.create_service_account(&ns, "other", json!({})).await;
    s.create_binding(
        &ns,
        "admin",
        json!({
            "serviceAccountName": "other",
            "permissions": {"managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]},
        }),
    )
    .await;
    // Each way out of the namespace the default guardrails close.
    let escapes = [
        (
            "assume-any",
            json!([{"actions": ["sts:AssumeRole"], "resources": ["arn:aws:iam::*:role/*"]}]),
        ),
        (
            "cluster-admin",
            json!([{"actions": ["eks:CreateAccessEntry", "eks:AssociateAccessPolicy"], "resources": ["*"]}]),
        ),
        (
            "nodes",
            json!([{"actions": ["ssm:SendCommand"], "resources": ["*"]}]),
        ),
        (
            "every-secret",
            json!([{"actions": ["secretsmanager:GetSecretValue"], "resources": ["*"]}]),
        ),
    ];
    for (name, statements) in &escapes {
        s.create_service_account(&ns, name, json!({})).await;
        s.create_binding(
            &ns,
            name,
            json!({"serviceAccountName": name, "permissions": {"statements": statements}}),
        )
        .await;
    }
    // A managed policy the allow-list passes by its ARN (arn:aws:iam::aws:policy/*), refused
    // by what its default version grants: organizations:*.
    s.create_service_account(&ns, "org", json!({})).await;
    s.create_binding(
        &ns,
        "org",
        json!({
            "serviceAccountName": "org",
            "permissions": {"managedPolicyArns": ["arn:aws:iam::aws:policy/AWSOrganizationsFullAccess"]},
        }),
    )
    .await;
    let names = ["iam-admin", "admin", "org"]
        .into_iter()
        .chain(escapes.iter().map(|(name, _)| *name));
    for name in names {
        let binding = s
            .wait_condition(&ns, name, "Stalled", "True", Some("GuardrailViolation"))
            .await;
        let ready = condition(&binding, "Ready").expect("Ready");
        assert_eq!(ready.status, "False");
        assert!(
            ready.message.contains("spec.permissions"),
            "{}",
            ready.message
        );
        s.wait_event(&ns, name, "GuardrailViolation").await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let touched: Vec<_> = s
        .iam
        .calls_since(mark)
        .into_iter()
        .filter(|c| c.role.as_deref().is_some_and(|r| r.contains(&ns)))
        .collect();
    assert!(touched.is_empty(), "refusals make no IAM call: {touched:?}");
    let org = s
        .wait_condition(&ns, "org", "Ready", "False", Some("GuardrailViolation"))
        .await;
    let message = condition(&org, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("spec.permissions.managedPolicyArns[0]")
            && message.contains("AWSOrganizationsFullAccess")
            && message.contains("organizations:*"),
        "{message}"
    );
    let read = |action: &str| {
        s.iam
            .calls_since(mark)
            .into_iter()
            .filter(|c| c.action == action)
            .filter(|c| {
                c.params
                    .values()
                    .any(|v| v.ends_with("/AWSOrganizationsFullAccess"))
            })
            .count()
    };
    assert!(
        read("GetPolicy") >= 1 && read("GetPolicyVersion") >= 1,
        "judged by its content"
    );
}

pub async fn the_api_server_enforces_the_schema(s: Scenario) {
    let ns = s.namespace("schema").await;
    // Untyped: the objects are ones the Rust types could not even hold.
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("podidentity.io", "v1alpha1", "PodIdentityBinding"),
        "podidentitybindings",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(s.client(), &ns, &resource);
    let refused = |name: &str, spec: serde_json::Value| {
        let api = api.clone();
        let name = name.to_string();
        async move {
            let binding = serde_json::from_value(json!({
                "apiVersion": "podidentity.io/v1alpha1",
                "kind": "PodIdentityBinding",
                "metadata": {"name": name},
                "spec": spec,
            }))
            .expect("binding");
            match api.create(&PostParams::default(), &binding).await {
                Err(kube::Error::Api(status)) => {
                    assert_eq!(status.code, 422, "{status:?}");
                    assert!(
                        api.get_opt(&name).await.ok().flatten().is_none(),
                        "nothing stored"
                    );
                    status.message
                }
                other => panic!("{name} was accepted: {other:?}"),
            }
        }
    };
    let session = refused(
        "short-session",
        json!({"serviceAccountName": "app", "role": {"maxSessionDurationSeconds": 100}}),
    )
    .await;
    assert!(
        session.contains("spec.role.maxSessionDurationSeconds"),
        "{session}"
    );
    let effect = refused(
        "bad-effect",
        json!({"serviceAccountName": "app", "permissions": {"statements": [{"effect": "Maybe", "actions": ["s3:*"], "resources": ["*"]}]}}),
    )
    .await;
    assert!(effect.contains("Unsupported value"), "{effect}");
    // (Duplicate sids are the operator's check, not the API server's: the CEL rule for
    // them failed under load on 1.24.)
    let tags = refused(
        "reserved-tag",
        json!({"serviceAccountName": "app", "role": {"tags": {"podidentity.io/cluster": "x"}}}),
    )
    .await;
    assert!(tags.contains("are reserved"), "{tags}");
    // IAM tag keys are case-insensitive: so is the reservation.
    let upper = refused(
        "reserved-tag-in-capitals",
        json!({"serviceAccountName": "app", "role": {"tags": {"PodIdentity.IO/Cluster": "x"}}}),
    )
    .await;
    assert!(upper.contains("are reserved"), "{upper}");
    let missing = refused("no-account", json!({})).await;
    assert!(missing.contains("serviceAccountName"), "{missing}");
}
