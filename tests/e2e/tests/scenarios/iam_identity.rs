//! IAM identity: the ARN shown is the one IAM returned; a role of the binding's own at
//! another path (after `roles.path` changed) is reported, not adopted, and never sets off
//! a CreateRole loop; a role outside the operator's path that its policy cannot read is a
//! conflict; and permanent IAM errors wait instead of backing off from 5 s.

use std::time::Duration;

use podidentity_aws::api::{Iam, NewRole};
use podidentity_e2e::Scenario;
use podidentity_e2e::iam_proxy::Fault;
use podidentity_e2e::operator::Replica;
use podidentity_e2e::scenario::condition;
use serde_json::json;

fn spec(account: &str) -> serde_json::Value {
    json!({
        "serviceAccountName": account,
        "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["*"]}]},
    })
}

pub async fn a_path_change_is_reported_not_looped(s: Scenario) {
    let (_rendered, mut controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("path").await;
    s.create_service_account(&ns, "app", json!({})).await;
    s.create_binding(&ns, "app", spec("app")).await;
    let binding = s.wait_ready(&ns, "app").await;
    let role_name = s.role_name(&ns, "app");
    let role = s.iam_role(&role_name).await.expect("role");
    assert_eq!(
        binding.status.and_then(|st| st.role_arn).as_deref(),
        Some(role.arn.as_str()),
        "the ARN IAM returned"
    );

    // The platform team moves the roles' path; the controller restarts with it.
    controller.process.kill();
    let moved = format!("/podidentity/{}/v2/", s.cluster_name);
    let rendered = s
        .install(json!({"roles": {"path": moved}, "driftInterval": "10s"}))
        .await;
    let mark = s.iam.mark();
    let mut again = s
        .controller(&rendered, &Replica::named(&format!("{}-moved", s.tag)))
        .await;
    again.wait_ready(Duration::from_secs(30)).await;
    let binding = s
        .wait_condition(&ns, "app", "Ready", "False", Some("RoleConflict"))
        .await;
    let message = condition(&binding, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("lies at path"), "{message}");
    assert!(message.contains(&moved), "{message}");
    // Two sweeps later: still no CreateRole, and the role is as it was.
    tokio::time::sleep(Duration::from_secs(22)).await;
    let calls: Vec<String> = s
        .iam
        .calls_since(mark)
        .into_iter()
        .map(|c| c.action)
        .collect();
    assert!(
        !calls.iter().any(|c| c == "CreateRole"),
        "no CreateRole loop: {calls:?}"
    );
    assert!(
        calls
            .iter()
            .filter(|c| *c == "GetAccountAuthorizationDetails")
            .count()
            >= 2,
        "{calls:?}"
    );
    assert_eq!(s.iam_role(&role_name).await.map(|r| r.id), Some(role.id));
}

pub async fn a_role_outside_the_path_is_a_conflict_and_denials_wait(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("denied").await;
    // A role of the binding's name elsewhere, which the operator's policy cannot read.
    let role_name = s.role_name(&ns, "outside");
    Iam::new(&s.moto)
        .create_role(NewRole {
            name: role_name.clone(),
            path: "/elsewhere/".into(),
            trust_policy: r#"{"Version":"2012-10-17","Statement":[]}"#.into(),
            description: "not the operator's".into(),
            max_session_duration_seconds: 3600,
            permissions_boundary_arn: None,
            tags: Default::default(),
        })
        .await
        .expect("a role elsewhere");
    s.iam.inject("GetRole", Fault::AccessDenied, 1000);
    s.create_service_account(&ns, "outside", json!({})).await;
    s.create_binding(&ns, "outside", spec("outside")).await;
    let binding = s
        .wait_condition(&ns, "outside", "Ready", "False", Some("RoleConflict"))
        .await;
    assert!(
        condition(&binding, "Ready")
            .is_some_and(|c| c.message.contains("outside the operator's path"))
    );

    // A permanent error (the operator may not put policies) waits for a change.
    s.iam.clear_faults();
    s.iam.inject("PutRolePolicy", Fault::AccessDenied, 1000);
    s.create_service_account(&ns, "policy", json!({})).await;
    s.create_binding(&ns, "policy", spec("policy")).await;
    let binding = s
        .wait_condition(&ns, "policy", "Stalled", "True", Some("AwsAccessDenied"))
        .await;
    assert!(condition(&binding, "Ready").is_some_and(|c| c.status == "False"));
    s.wait_event(&ns, "policy", "AwsAccessDenied").await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let count =
        |role: &str, action: &str| s.calls_for(role).iter().filter(|c| *c == action).count();
    assert_eq!(count(&role_name, "CreateRole"), 1, "no retry of a conflict");
    assert_eq!(
        count(&s.role_name(&ns, "policy"), "PutRolePolicy"),
        1,
        "AccessDenied is not retried from 5 s"
    );
}
