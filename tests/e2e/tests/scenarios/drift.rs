//! Readiness with bindings already in the cluster, and the drift sweep putting back what
//! was changed in IAM by hand (the controller used to stay 503 and never sweep).

use std::time::Duration;

use podidentity_aws::api::IamRequest;
use podidentity_e2e::Scenario;
use podidentity_e2e::operator::Replica;
use podidentity_e2e::wait::{check, until};
use serde_json::json;

const BINDINGS: usize = 27;

pub async fn ready_with_bindings_present_and_drift_put_back(s: Scenario) {
    let ns = s.namespace("ready").await;
    for i in 0..BINDINGS {
        s.create_service_account(&ns, &format!("app{i}"), json!({}))
            .await;
        s.create_binding(
            &ns,
            &format!("b{i}"),
            json!({
                "serviceAccountName": format!("app{i}"),
                "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": [format!("arn:aws:s3:::bucket-{i}/*")]}]},
            }),
        )
        .await;
    }
    let rendered = s.install(json!({"driftInterval": "10s"})).await;
    let mut controller = s
        .controller(&rendered, &Replica::named(&format!("{}-controller", s.tag)))
        .await;
    // The chart's readiness probe: it must pass while the bindings are still being worked on.
    let took = controller.wait_ready(Duration::from_secs(30)).await;
    eprintln!("    /readyz 200 after {took:?} with {BINDINGS} bindings in the cluster");
    for i in 0..BINDINGS {
        s.wait_ready(&ns, &format!("b{i}")).await;
    }

    let trusted = s.role_name(&ns, "b0");
    let attached = s.role_name(&ns, "b1");
    let original = s.iam_role(&trusted).await.expect("role").trust_policy;
    let widened = original.replace(
        &format!("system:serviceaccount:{ns}:app0"),
        "system:serviceaccount:*",
    );
    assert_ne!(widened, original);
    s.change_iam(IamRequest::UpdateAssumeRolePolicy {
        name: trusted.clone(),
        document: widened,
    })
    .await;
    s.change_iam(IamRequest::AttachRolePolicy {
        name: attached.clone(),
        arn: "arn:aws:iam::aws:policy/AmazonEC2ReadOnlyAccess".into(),
    })
    .await;

    until(
        "the sweep to put both back",
        Duration::from_secs(60),
        || async {
            let trust = s.iam_role(&trusted).await.map(|r| r.trust_policy);
            let policies = s.attached(&attached).await;
            check(
                trust.as_deref() == Some(original.as_str()) && policies.is_empty(),
                || format!("trust {trust:?}, attached {policies:?}"),
            )
        },
    )
    .await;
    let note = s.wait_event(&ns, "b0", "DriftCorrected").await;
    assert!(note.contains("trust policy"), "{note}");
    let note = s.wait_event(&ns, "b1", "DriftCorrected").await;
    assert!(note.contains("managed policies"), "{note}");
    let sweeps = s.iam.count("GetAccountAuthorizationDetails");
    assert!(
        sweeps >= 2,
        "one sweep at start and more every 10s: {sweeps}"
    );
}

pub async fn a_role_deleted_by_hand_is_made_again(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({"driftInterval": "10s"})).await;
    let ns = s.namespace("gone").await;
    s.create_service_account(&ns, "app", json!({})).await;
    s.create_binding(
        &ns,
        "app",
        json!({"serviceAccountName": "app", "permissions": {"managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess"]}}),
    )
    .await;
    s.wait_ready(&ns, "app").await;
    let role = s.role_name(&ns, "app");
    let first = s.iam_role(&role).await.expect("role").id;
    s.change_iam(IamRequest::DetachRolePolicy {
        name: role.clone(),
        arn: "arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess".into(),
    })
    .await;
    s.change_iam(IamRequest::DeleteRole { name: role.clone() })
        .await;
    let second = until(
        "the role to be made again",
        Duration::from_secs(60),
        || async {
            match s.iam_role(&role).await {
                Some(again) if s.attached(&role).await.len() == 1 => Ok(again.id),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_ne!(first, second, "a new role (IAM gives it a new id)");
    until(
        "the status to show the new role",
        Duration::from_secs(30),
        || async {
            let binding = s.wait_ready(&ns, "app").await;
            let id = binding.status.and_then(|st| st.role_id);
            check(id.as_deref() == Some(second.as_str()), || format!("{id:?}"))
        },
    )
    .await;
}
