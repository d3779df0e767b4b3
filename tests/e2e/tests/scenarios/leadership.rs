//! Two replicas with leader election, as the chart runs them: the standby is Ready, only
//! the leader writes, and across three hand-overs (kill -9 of the leader, a hung leader
//! under SIGSTOP, a leader cut off from the API server by a partition) the old leader's
//! last write always comes before the new leader's first: no two ever overlap. Writes
//! are counted at the API server (audit log, one ServiceAccount per side) and at IAM (one
//! proxy per side).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use podidentity_e2e::Scenario;
use podidentity_e2e::chart::OPERATOR_NAMESPACE;
use podidentity_e2e::chart::{self, RELEASE};
use podidentity_e2e::iam_proxy::IamProxy;
use podidentity_e2e::operator::{Operator, Replica};
use podidentity_e2e::partition::PartitionProxy;
use podidentity_e2e::wait::until;
use serde_json::json;

const LEASE: &str = "podidentity-controller";

/// A second identity bound to the chart's own roles, so its writes can be told apart.
async fn second_identity(s: &Scenario, name: &str) -> String {
    let account = format!("{RELEASE}-controller-{name}");
    let client = s.client();
    chart::apply(
        &client,
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": OPERATOR_NAMESPACE}}),
    )
    .await
    .expect("ServiceAccount");
    for (kind, role) in [
        ("ClusterRoleBinding", format!("{RELEASE}-controller")),
        ("RoleBinding", format!("{RELEASE}-leader-election")),
    ] {
        let role_kind = kind.trim_end_matches("Binding");
        let mut binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": format!("{account}-{}", role_kind.to_lowercase())},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": OPERATOR_NAMESPACE}],
        });
        if kind == "RoleBinding" {
            binding["metadata"]["namespace"] = json!(OPERATOR_NAMESPACE);
        }
        chart::apply(&client, &binding).await.expect("RBAC binding");
    }
    account
}

async fn holder(s: &Scenario) -> Option<String> {
    Api::<Lease>::namespaced(s.client(), OPERATOR_NAMESPACE)
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|spec| spec.holder_identity)
}

async fn wait_holder(s: &Scenario, identity: &str, timeout: Duration) -> Duration {
    let started = std::time::Instant::now();
    until(
        &format!("{identity} to hold the lease"),
        timeout,
        || async {
            match holder(s).await {
                Some(h) if h == identity => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    started.elapsed()
}

/// One side of the election: its ServiceAccount (audit) and its IAM proxy.
struct Side {
    account: String,
    iam: IamProxy,
    rendered: podidentity_e2e::chart::Rendered,
}

impl Side {
    fn user(&self) -> String {
        format!(
            "system:serviceaccount:{OPERATOR_NAMESPACE}:{}",
            self.account
        )
    }

    /// Every write of this side (Kubernetes but the lease, and IAM), by time.
    fn writes(&self, s: &Scenario) -> Vec<(Timestamp, String)> {
        let mut writes: Vec<(Timestamp, String)> = s
            .writes_by(&self.user(), s.audit_mark)
            .into_iter()
            .filter(|w| w.resource.as_deref() != Some("leases"))
            .filter_map(|w| Some((w.time()?, format!("{} {} {:?}", w.verb, w.kind(), w.name))))
            .collect();
        writes.extend(
            self.iam
                .writes_since(0)
                .into_iter()
                .map(|c| (c.wall, format!("IAM {} {:?}", c.action, c.role))),
        );
        writes.sort();
        writes
    }

    async fn start(&self, s: &Scenario, identity: &str, api_server: Option<String>) -> Operator {
        s.controller(
            &self.rendered,
            &Replica {
                identity: format!("{}-{identity}", s.tag),
                service_account: self.account.clone(),
                api_server,
            },
        )
        .await
    }
}

/// The old side's last write against the new side's first, after `since`: the gap, and
/// every write of the old side at or after the new side's first (must be none).
fn handover(
    label: &str,
    old: &[(Timestamp, String)],
    new: &[(Timestamp, String)],
    since: Timestamp,
) -> f64 {
    let first_new = new
        .iter()
        .find(|(t, _)| *t >= since)
        .unwrap_or_else(|| panic!("{label}: the new leader never wrote"));
    let overlap: Vec<_> = old.iter().filter(|(t, _)| *t >= first_new.0).collect();
    assert!(
        overlap.is_empty(),
        "{label}: the old leader wrote after the new one began ({first_new:?}): {overlap:?}"
    );
    let last_old = old
        .iter()
        .rfind(|(t, _)| *t < first_new.0)
        .map(|(t, _)| *t)
        .unwrap_or(since);
    let gap = first_new.0.duration_since(last_old).as_secs_f64();
    eprintln!(
        "    {label}: gap {gap:.1}s between the old leader's last write and the new leader's first; overlap 0"
    );
    gap
}

pub async fn one_writer_through_kill_stop_and_partition(s: Scenario) {
    let leases: Api<Lease> = Api::namespaced(s.client(), OPERATOR_NAMESPACE);
    let _ = leases.delete(LEASE, &DeleteParams::default()).await;
    let election = json!({"controller": {"leaderElection": true, "replicas": 2}});
    let side = |account: String, iam: IamProxy, rendered| Side {
        account,
        iam,
        rendered,
    };
    let a_iam = IamProxy::start(&s.cluster.moto).await.expect("proxy");
    let b_iam = IamProxy::start(&s.cluster.moto).await.expect("proxy");
    let mut a_values = election.clone();
    a_values["aws"] = json!({"endpointUrl": a_iam.url});
    let mut b_values = election.clone();
    b_values["aws"] = json!({"endpointUrl": b_iam.url});
    let a = side(
        format!("{RELEASE}-controller"),
        a_iam,
        s.install(a_values).await,
    );
    let b = side(
        second_identity(&s, "b").await,
        b_iam,
        s.install(b_values).await,
    );

    // A leads, B stands by: both are Ready (a rolling update or `helm --wait` finishes).
    let mut a1 = a.start(&s, "a1", None).await;
    wait_holder(&s, &a1.identity, Duration::from_secs(30)).await;
    let mut b1 = b.start(&s, "b1", None).await;
    a1.wait_ready(Duration::from_secs(30)).await;
    b1.wait_ready(Duration::from_secs(30)).await;

    // Steady work for whoever leads: a new binding every 300 ms.
    let ns = s.namespace("leaders").await;
    let load = {
        let client = s.client();
        let ns = ns.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let name = format!("app{i}");
                let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
                    Api::namespaced(client.clone(), &ns);
                let account = serde_json::from_value(json!({"metadata": {"name": name}}))
                    .expect("ServiceAccount");
                let _ = accounts.create(&Default::default(), &account).await;
                let bindings: Api<podidentity_api::PodIdentityBinding> =
                    Api::namespaced(client.clone(), &ns);
                let binding = serde_json::from_value(json!({
                    "apiVersion": "podidentity.io/v1alpha1",
                    "kind": "PodIdentityBinding",
                    "metadata": {"name": name},
                    "spec": {"serviceAccountName": name, "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["*"]}]}},
                }))
                .expect("binding");
                let _ = bindings.create(&Default::default(), &binding).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!a.writes(&s).is_empty(), "the leader writes");
    assert!(b.writes(&s).is_empty(), "the standby writes nothing");
    assert_eq!(b1.readyz().await, Some(200), "the standby is Ready");

    // 1. kill -9 of the leader.
    let since = Timestamp::now();
    a1.process.kill();
    let took = wait_holder(&s, &b1.identity, Duration::from_secs(30)).await;
    eprintln!("    kill -9: the standby holds the lease {took:?} later");
    until(
        "the new leader to write",
        Duration::from_secs(30),
        || async {
            (!b.writes(&s).iter().all(|(t, _)| *t < since))
                .then_some(())
                .ok_or_else(|| "no write yet".to_string())
        },
    )
    .await;
    let mut gaps = vec![handover("kill -9", &a.writes(&s), &b.writes(&s), since)];

    // 2. A hung leader: SIGSTOP for 25 s, then SIGCONT. It must not write on waking.
    let mut a2 = a.start(&s, "a2", None).await;
    a2.wait_ready(Duration::from_secs(30)).await;
    let since = Timestamp::now();
    b1.process.signal("STOP");
    let took = wait_holder(&s, &a2.identity, Duration::from_secs(40)).await;
    eprintln!("    SIGSTOP: the standby holds the lease {took:?} later");
    tokio::time::sleep(Duration::from_secs(25).saturating_sub(took)).await;
    b1.process.signal("CONT");
    let code = b1.wait_exit(Duration::from_secs(30)).await;
    assert_ne!(code, Some(0), "the woken leader exits: it lost the lease");
    gaps.push(handover("SIGSTOP", &b.writes(&s), &a.writes(&s), since));

    // 3. A partition: the leader (B, through a proxy) is cut off from the API server.
    let partition = PartitionProxy::start(&s.cluster.url)
        .await
        .expect("partition proxy");
    let mut b2 = b.start(&s, "b2", Some(partition.url.clone())).await;
    b2.wait_ready(Duration::from_secs(30)).await;
    a2.process.kill();
    wait_holder(&s, &b2.identity, Duration::from_secs(40)).await;
    let mut a3 = a.start(&s, "a3", None).await;
    a3.wait_ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let since = Timestamp::now();
    partition.cut();
    let took = wait_holder(&s, &a3.identity, Duration::from_secs(40)).await;
    eprintln!("    partition: the standby holds the lease {took:?} later");
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(took)).await;
    partition.heal();
    let code = b2.wait_exit(Duration::from_secs(30)).await;
    assert_ne!(
        code,
        Some(0),
        "the partitioned leader exits once it can see it lost"
    );
    until(
        "the new leader to write",
        Duration::from_secs(30),
        || async {
            (!a.writes(&s).iter().all(|(t, _)| *t < since))
                .then_some(())
                .ok_or_else(|| "no write yet".to_string())
        },
    )
    .await;
    gaps.push(handover("partition", &b.writes(&s), &a.writes(&s), since));
    load.abort();
    eprintln!(
        "    worst gap {:.1}s, overlap 0 in every hand-over",
        gaps.iter().cloned().fold(0.0, f64::max)
    );
    assert!(a3.process.running());
}
