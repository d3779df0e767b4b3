//! Namespace self-service confined by a PodIdentityPolicy, on the real API server under the
//! chart's RBAC: two teams under one policy with `${namespace}`, a policy change that
//! refuses a Ready binding, a relabelled namespace, the quota, `onViolation: Revoke`, and
//! the policy's status. Every refusal is counted: no IAM write.

use std::time::Duration;

use podidentity_e2e::Scenario;
use podidentity_e2e::scenario::condition;
use serde_json::{Value, json};

/// The label the teams' policy selects by (no other scenario's namespace carries it).
const TEAM: &str = "podidentity-e2e/team";

fn reads(bucket: &str) -> Value {
    json!({"statements": [{"actions": ["s3:GetObject"], "resources": [format!("arn:aws:s3:::{bucket}/*")]}]})
}

fn teams_policy(actions: &[&str], max: u32) -> Value {
    json!({
        "namespaceSelector": {"matchExpressions": [{"key": TEAM, "operator": "Exists"}]},
        "allowedActions": actions,
        "allowedResources": ["arn:${partition}:s3:::${namespace}.*", "arn:${partition}:sqs:${region}:${account}:${namespace}_*"],
        "maxBindingsPerNamespace": max,
    })
}

/// The Ready condition's message once it is False for `reason`.
async fn refused(s: &Scenario, ns: &str, name: &str, reason: &str) -> String {
    let binding = s
        .wait_condition(ns, name, "Ready", "False", Some(reason))
        .await;
    condition(&binding, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// IAM writes since `mark` on the roles of namespace `ns`.
fn writes_in(s: &Scenario, mark: usize, ns: &str) -> Vec<String> {
    s.iam
        .writes_since(mark)
        .into_iter()
        .filter(|c| c.role.as_deref().is_some_and(|r| r.contains(ns)))
        .map(|c| format!("{} {:?}", c.action, c.role))
        .collect()
}

pub async fn two_teams_confined_by_one_policy(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let shop = s.namespace_labelled("shop", json!({TEAM: "shop"})).await;
    let blog = s.namespace_labelled("blog", json!({TEAM: "blog"})).await;
    let policy = s
        .apply_policy("teams", teams_policy(&["s3:*", "sqs:*"], 2))
        .await;
    s.wait_policy_status(&policy, "selects both teams", |st| {
        st.selected_namespaces == 2
    })
    .await;
    let mut refusals = 0;

    // The shop team's bucket: allowed in shop, refused in blog, by name and field.
    let shop_bucket = format!("{shop}.data");
    for ns in [&shop, &blog] {
        s.create_service_account(ns, "app", json!({})).await;
    }
    let mark = s.iam.mark();
    s.create_binding(
        &shop,
        "reader",
        json!({"serviceAccountName": "app", "permissions": reads(&shop_bucket)}),
    )
    .await;
    s.create_binding(
        &blog,
        "reader",
        json!({"serviceAccountName": "app", "permissions": reads(&shop_bucket)}),
    )
    .await;
    s.wait_ready(&shop, "reader").await;
    let message = refused(&s, &blog, "reader", "GuardrailViolation").await;
    refusals += 1;
    assert!(
        message.contains("spec.permissions.statements[0].resources[0]")
            && message.contains(&format!("PodIdentityPolicy {policy} (allowedResources)"))
            && message.contains(&format!("arn:aws:s3:::{blog}.*")),
        "{message}"
    );
    assert!(s.iam_role(&s.role_name(&blog, "reader")).await.is_none());
    assert_eq!(
        writes_in(&s, mark, &blog),
        Vec::<String>::new(),
        "a refusal writes nothing to IAM"
    );

    // A policy change refuses a Ready binding; its role stays as it was.
    let role = s.role_name(&shop, "reader");
    let before = s.iam_role(&role).await.expect("the shop reader's role");
    let mark = s.iam.mark();
    s.apply_policy("teams", teams_policy(&["sqs:*"], 2)).await;
    let message = refused(&s, &shop, "reader", "GuardrailViolation").await;
    refusals += 1;
    assert!(
        message.contains("spec.permissions.statements[0].actions[0]")
            && message.contains(&format!("PodIdentityPolicy {policy} (allowedActions)")),
        "{message}"
    );
    let binding = s.bindings(&shop).get("reader").await.expect("binding");
    let status = binding.status.clone().unwrap_or_default();
    assert_eq!(
        status.role_arn.as_deref(),
        Some(before.arn.as_str()),
        "the status keeps the role"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        writes_in(&s, mark, &shop),
        Vec::<String>::new(),
        "the refused role keeps what it had"
    );
    let kept = s.iam_role(&role).await.expect("the role stays");
    assert_eq!((kept.id, kept.arn), (before.id, before.arn));
    // Put back: Ready again, on the same role.
    s.apply_policy("teams", teams_policy(&["s3:*", "sqs:*"], 2))
        .await;
    let ready = s.wait_ready(&shop, "reader").await;
    assert_eq!(ready.status.and_then(|st| st.role_arn), status.role_arn);

    // Relabelling: blog leaves the teams, so no policy governs it and the configuration's
    // guardrails alone judge its binding; back among the teams, it is refused again and
    // its role (made meanwhile) keeps what it has.
    s.label_namespace(&blog, json!({TEAM: null})).await;
    s.wait_ready(&blog, "reader").await;
    let mark = s.iam.mark();
    s.label_namespace(&blog, json!({TEAM: "blog"})).await;
    refused(&s, &blog, "reader", "GuardrailViolation").await;
    refusals += 1;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(writes_in(&s, mark, &blog), Vec::<String>::new());

    // The quota (two per namespace): the oldest keep their roles, the newest waits, and
    // gets its role when an older binding goes.
    for name in ["second", "third"] {
        s.create_service_account(&shop, name, json!({})).await;
        // One second apart: creation times order the queue.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        s.create_binding(
            &shop,
            name,
            json!({"serviceAccountName": name, "permissions": reads(&format!("{shop}.{name}"))}),
        )
        .await;
    }
    s.wait_ready(&shop, "second").await;
    let message = refused(&s, &shop, "third", "GuardrailViolation").await;
    refusals += 1;
    assert!(
        message.contains("maxBindingsPerNamespace") && message.contains("number 3 by age"),
        "{message}"
    );
    assert!(
        s.iam_role(&s.role_name(&shop, "third")).await.is_none(),
        "no role over the quota"
    );
    let status = s
        .wait_policy_status(&policy, "counts governed and refused bindings", |st| {
            st.bindings_governed == 4 && st.bindings_refused == 2
        })
        .await;
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(ready.status, "True");
    s.delete_binding(&shop, "second").await;
    s.wait_gone(&shop, "second").await;
    s.wait_ready(&shop, "third").await;
    eprintln!("    {refusals} refusals, no IAM write for any");
}

pub async fn a_revoking_policy_takes_permissions_and_gives_them_back(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ops = s.namespace("ops").await;
    // Only queues, and a refusal revokes: selects namespaces labelled strict.
    let strict = format!("{}-strict", s.tag);
    s.apply_policy(
        "strict",
        json!({
            "namespaceSelector": {"matchLabels": {"podidentity-e2e/strict": strict}},
            "allowedActions": ["sqs:*"],
            "onViolation": "Revoke",
        }),
    )
    .await;
    s.create_service_account(&ops, "worker", json!({})).await;
    s.create_binding(
        &ops,
        "worker",
        json!({"serviceAccountName": "worker", "permissions": reads(&format!("{ops}.data"))}),
    )
    .await;
    s.wait_ready(&ops, "worker").await;
    let role = s.role_name(&ops, "worker");
    assert_eq!(inline_policies(&s, &role).await.len(), 1);

    let mark = s.iam.mark();
    s.label_namespace(&ops, json!({"podidentity-e2e/strict": strict}))
        .await;
    let binding = s
        .wait_condition(
            &ops,
            "worker",
            "RoleSynced",
            "False",
            Some("PermissionsRevoked"),
        )
        .await;
    assert_eq!(
        condition(&binding, "Ready").map(|c| c.reason.to_string()),
        Some("GuardrailViolation".to_string())
    );
    s.wait_event(&ops, "worker", "PermissionsRevoked").await;
    assert!(
        inline_policies(&s, &role).await.is_empty(),
        "the inline policy is gone"
    );
    let trust_kept = s.iam_role(&role).await.is_some();
    assert!(trust_kept, "the role itself stays");
    let writes: Vec<String> = s
        .iam
        .writes_since(mark)
        .into_iter()
        .map(|c| c.action)
        .collect();
    assert_eq!(writes, ["DeleteRolePolicy"]);

    // Allowed again: the permissions come back.
    s.label_namespace(&ops, json!({"podidentity-e2e/strict": null}))
        .await;
    s.wait_ready(&ops, "worker").await;
    assert_eq!(inline_policies(&s, &role).await.len(), 1);
}

async fn inline_policies(s: &Scenario, role: &str) -> Vec<String> {
    podidentity_aws::api::Iam::new(&s.moto)
        .list_role_policies(role)
        .await
        .unwrap_or_default()
}
