//! IAM identity: the ARN shown is the one IAM returned; a role of the binding's own at
//! another path (after `roles.path` changed) is reported, not adopted, and never sets off
//! a CreateRole loop; a role outside the operator's path that its policy cannot read is a
//! conflict; permanent IAM errors wait instead of backing off from 5 s; roles made under
//! the legacy names keep them; and another cluster's role of the same name is refused.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use podidentity_aws::api::{Iam, NewRole};
use podidentity_e2e::Scenario;
use podidentity_e2e::iam_proxy::Fault;
use podidentity_e2e::operator::Replica;
use podidentity_e2e::scenario::ACCOUNT;
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

/// A role as an older operator made it: the legacy name (`-` between namespace and name),
/// the three ownership tags, no cluster uid.
async fn make_role(s: &Scenario, name: &str, tags: &[(&str, String)]) -> String {
    Iam::new(&s.moto)
        .create_role(NewRole {
            name: name.to_string(),
            path: format!("/podidentity/{}/", s.cluster_name),
            trust_policy: r#"{"Version":"2012-10-17","Statement":[]}"#.into(),
            description: "made earlier".into(),
            max_session_duration_seconds: 3600,
            permissions_boundary_arn: None,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .await
        .expect("a role made earlier")
        .id
}

/// Upgrading from revision 2: a binding whose status records its role under the legacy
/// name keeps that role (same id and ARN, pods unaffected) and the role gets this cluster's
/// uid; new bindings get the new names; and a role of this cluster's name, namespace and
/// binding but another cluster's uid (two clusters called alike in one account) is refused
/// with no write but the refused CreateRole.
pub async fn legacy_names_are_kept_and_other_clusters_roles_refused(s: Scenario) {
    let ns = s.namespace("names").await;
    let kube_system: Api<Namespace> = Api::all(s.client());
    let uid = kube_system
        .get("kube-system")
        .await
        .expect("kube-system")
        .metadata
        .uid
        .expect("uid");

    // What revision 2 left behind, before this controller starts.
    let legacy = format!("{}-{ns}-old", s.cluster_name);
    let ownership = |binding: &'static str| {
        [
            ("podidentity.io/cluster", s.cluster_name.clone()),
            ("podidentity.io/namespace", ns.clone()),
            ("podidentity.io/binding", binding.to_string()),
        ]
    };
    let legacy_id = make_role(&s, &legacy, &ownership("old")).await;
    let legacy_arn = format!(
        "arn:aws:iam::{ACCOUNT}:role/podidentity/{}/{legacy}",
        s.cluster_name
    );
    s.create_service_account(&ns, "old", json!({})).await;
    s.create_binding(&ns, "old", spec("old")).await;
    s.bindings(&ns)
        .patch_status(
            "old",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {
                "roleName": legacy, "roleArn": legacy_arn, "roleId": legacy_id,
            }})),
        )
        .await
        .expect("the status revision 2 wrote");

    // Another cluster called the same, whose binding of the same namespace and name made
    // the role this cluster would make.
    let theirs = s.role_name(&ns, "twin");
    let mut their_tags: Vec<(&str, String)> = ownership("twin").to_vec();
    their_tags.push((
        "podidentity.io/cluster-uid",
        "uid-of-another-cluster".into(),
    ));
    make_role(&s, &theirs, &their_tags).await;
    let theirs_before = s.iam_role(&theirs).await;

    let mark = s.iam.mark();
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let binding = s.wait_ready(&ns, "old").await;
    let status = binding.status.expect("status");
    assert_eq!(status.role_name.as_deref(), Some(legacy.as_str()));
    assert_eq!(status.role_id.as_deref(), Some(legacy_id.as_str()));
    assert_eq!(
        s.annotations(&ns, "old")
            .await
            .get("eks.amazonaws.com/role-arn"),
        Some(&legacy_arn)
    );
    let adopted = s.iam_role(&legacy).await.expect("the legacy role");
    assert_eq!(
        adopted.tags.get("podidentity.io/cluster-uid"),
        Some(&uid),
        "tagged with this cluster's kube-system uid"
    );
    assert!(
        s.iam_role(&s.role_name(&ns, "old")).await.is_none(),
        "no role of the new name was made for it"
    );

    // A new binding: the new name, with the uid.
    s.create_service_account(&ns, "new", json!({})).await;
    s.create_binding(&ns, "new", spec("new")).await;
    let binding = s.wait_ready(&ns, "new").await;
    let new_name = s.role_name(&ns, "new");
    assert_eq!(
        binding.status.and_then(|st| st.role_name).as_deref(),
        Some(new_name.as_str())
    );
    let made = s.iam_role(&new_name).await.expect("the new role");
    assert_eq!(made.tags.get("podidentity.io/cluster-uid"), Some(&uid));

    // The twin's role: refused, untouched.
    s.create_service_account(&ns, "twin", json!({})).await;
    s.create_binding(&ns, "twin", spec("twin")).await;
    let binding = s
        .wait_condition(&ns, "twin", "Ready", "False", Some("RoleConflict"))
        .await;
    let message = condition(&binding, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("uid-of-another-cluster") && message.contains(&uid),
        "{message}"
    );
    assert_eq!(s.iam_role(&theirs).await, theirs_before, "untouched");
    let writes: Vec<String> = s
        .iam
        .calls_since(mark)
        .into_iter()
        .filter(|c| c.role.as_deref() == Some(theirs.as_str()))
        .map(|c| c.action)
        .filter(|a| !a.starts_with("Get") && !a.starts_with("List"))
        .collect();
    assert_eq!(writes, ["CreateRole"], "only the refused CreateRole");
}
