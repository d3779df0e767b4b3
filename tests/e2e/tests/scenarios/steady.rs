//! The operator at rest, and with two replicas: an idle controller writes nothing at all
//! (counted at the API server's audit log and at the IAM proxy), and of two replicas
//! with leader election only the leader writes, and the other takes over when it dies.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams};
use podidentity_e2e::Scenario;
use podidentity_e2e::control_plane::OPERATOR_NAMESPACE;
use podidentity_e2e::operator::{Replica, family_sum};
use podidentity_e2e::wait::until;
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
    for i in 0..IDLE_BINDINGS {
        s.wait_ready(&ns, &format!("app{i}")).await;
    }
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
        "    idle {IDLE_WINDOW:?} with {IDLE_BINDINGS} bindings Ready: {} Kubernetes writes, {} IAM writes, {} reconciles, {sweeps} sweeps",
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

/// A second identity for a replica, bound to the chart's own roles.
async fn second_identity(s: &Scenario, name: &str) -> Replica {
    let account = format!("{}-controller-{name}", podidentity_e2e::chart::RELEASE);
    let chart_account = format!("{}-controller", podidentity_e2e::chart::RELEASE);
    let client = s.client();
    podidentity_e2e::chart::apply(
        &client,
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": OPERATOR_NAMESPACE}}),
    )
    .await
    .expect("ServiceAccount");
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        let role_kind = kind.trim_end_matches("Binding");
        let mut binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": format!("{account}-{}", role_kind.to_lowercase())},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": ""},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": OPERATOR_NAMESPACE}],
        });
        // The same roles the chart binds its own controller account to.
        let role_name = match kind {
            "ClusterRoleBinding" => chart_account.clone(),
            _ => format!("{}-leader-election", podidentity_e2e::chart::RELEASE),
        };
        binding["roleRef"]["name"] = json!(role_name);
        if kind == "RoleBinding" {
            binding["metadata"]["namespace"] = json!(OPERATOR_NAMESPACE);
        }
        podidentity_e2e::chart::apply(&client, &binding)
            .await
            .expect("RBAC binding");
    }
    Replica {
        identity: format!("{}-{name}", s.tag),
        service_account: account,
        api_server: None,
    }
}

async fn holder(s: &Scenario) -> Option<String> {
    Api::<Lease>::namespaced(s.client(), OPERATOR_NAMESPACE)
        .get_opt("podidentity-controller")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|spec| spec.holder_identity)
}

pub async fn two_replicas_one_writer_and_a_takeover(s: Scenario) {
    let leases: Api<Lease> = Api::namespaced(s.client(), OPERATOR_NAMESPACE);
    let _ = leases
        .delete("podidentity-controller", &DeleteParams::default())
        .await;
    let rendered = s
        .install(json!({"controller": {"leaderElection": true, "replicas": 2}}))
        .await;
    let a = Replica::named(&format!("{}-a", s.tag));
    let b = second_identity(&s, "b").await;
    let mut first = s.controller(&rendered, &a).await;
    until("a leader", Duration::from_secs(30), || async {
        holder(&s)
            .await
            .filter(|h| *h == a.identity)
            .ok_or_else(|| "none".to_string())
    })
    .await;
    let mut second = s.controller(&rendered, &b).await;
    let ns = s.namespace("leader").await;
    for i in 0..3 {
        let name = format!("app{i}");
        s.create_service_account(&ns, &name, json!({})).await;
        s.create_binding(
            &ns,
            &name,
            json!({"serviceAccountName": name, "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["*"]}]}}),
        )
        .await;
    }
    for i in 0..3 {
        s.wait_ready(&ns, &format!("app{i}")).await;
    }
    let leader_writes = s.writes_by(&first.user, s.audit_mark);
    let standby_writes: Vec<_> = s
        .writes_by(&second.user, s.audit_mark)
        .into_iter()
        .filter(|w| w.resource.as_deref() != Some("leases"))
        .collect();
    assert!(!leader_writes.is_empty(), "the leader did the work");
    assert!(
        standby_writes.is_empty(),
        "the standby wrote: {standby_writes:?}"
    );

    // kill -9 the leader: the standby takes over within the lease duration.
    let killed = Instant::now();
    first.process.kill();
    until(
        "the standby to take over",
        Duration::from_secs(30),
        || async {
            holder(&s)
                .await
                .filter(|h| *h == b.identity)
                .ok_or_else(|| "not yet".to_string())
        },
    )
    .await;
    let takeover = killed.elapsed();
    eprintln!("    takeover {takeover:?} after kill -9 of the leader");
    assert!(takeover <= Duration::from_secs(20), "{takeover:?}");
    s.create_service_account(&ns, "after", json!({})).await;
    s.create_binding(
        &ns,
        "after",
        json!({"serviceAccountName": "after", "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["*"]}]}}),
    )
    .await;
    s.wait_ready(&ns, "after").await;
    assert!(second.process.running());
}
