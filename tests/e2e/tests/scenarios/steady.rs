//! The operator at rest: an idle controller writes nothing at all (counted at the API
//! server's audit log and at the IAM proxy), and reconciles nothing between sweeps, even
//! with a binding stalled on a managed policy that does not exist.

use std::time::Duration;

use podidentity_e2e::Scenario;
use podidentity_e2e::operator::family_sum;
use serde_json::json;

const IDLE_BINDINGS: usize = 30;
const IDLE_WINDOW: Duration = Duration::from_secs(60);

pub async fn an_idle_operator_writes_nothing(s: Scenario) {
    let (_rendered, controller) = s.start_controller(json!({"driftInterval": "10s"})).await;
    let ns = s.namespace("idle").await;
    for i in 0..IDLE_BINDINGS {
        let name = format!("app{i}");
        s.create_service_account(&ns, &name, json!({})).await;
        let mut spec = json!({
            "serviceAccountName": name,
            "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["*"]}]},
        });
        if i % 3 == 0 {
            spec["credentialsSecret"] = json!({"name": format!("{name}-aws")});
        }
        s.create_binding(&ns, &name, spec).await;
    }
    // And one stalled on a managed policy IAM does not have: it waits on the policy
    // appearing (re-checked on the slow schedule), which the sweep must not call drift.
    s.create_service_account(&ns, "stalled", json!({})).await;
    s.create_binding(
        &ns,
        "stalled",
        json!({
            "serviceAccountName": "stalled",
            "permissions": {"managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonSQSReadOnlyAcess"]},
        }),
    )
    .await;
    for i in 0..IDLE_BINDINGS {
        s.wait_ready(&ns, &format!("app{i}")).await;
    }
    s.wait_condition(
        &ns,
        "stalled",
        "Ready",
        "False",
        Some("ManagedPolicyNotFound"),
    )
    .await;
    // Let the last status writes' own watch events pass through.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let audit = s.audit_now();
    let iam = s.iam.mark();
    let reconciles = |m: &str| family_sum(m, "podidentity_reconciles_total", "");
    let before = reconciles(&controller.metrics().await);
    tokio::time::sleep(IDLE_WINDOW).await;
    let after = reconciles(&controller.metrics().await);

    let writes = s.writes_by(&controller.user, audit);
    let iam_writes = s.iam.writes_since(iam);
    let sweeps = s
        .iam
        .calls_since(iam)
        .iter()
        .filter(|c| c.action == "GetAccountAuthorizationDetails")
        .count();
    eprintln!(
        "    idle {IDLE_WINDOW:?} with {IDLE_BINDINGS} bindings Ready and one stalled: {} Kubernetes writes, {} IAM writes, {} reconciles, {sweeps} sweeps",
        writes.len(),
        iam_writes.len(),
        after - before
    );
    assert!(
        writes.is_empty(),
        "Kubernetes writes while idle: {:?}",
        writes
            .iter()
            .take(10)
            .map(|w| (&w.verb, w.kind(), &w.name))
            .collect::<Vec<_>>()
    );
    assert!(
        iam_writes.is_empty(),
        "IAM writes while idle: {iam_writes:?}"
    );
    assert_eq!(after - before, 0.0, "no reconcile between sweeps");
    assert!(sweeps >= 5, "the sweeps ran: {sweeps}");
}
