//! What counting pods that started too early costs the controller, on a real API server:
//! its resident memory before and after the cluster holds thousands of such pods, and
//! how long the passes that list them take. Prints figures, asserts nothing.
//!
//! `scripts/with-moto cargo bench -p podidentity-e2e --bench early_pods`
//! (KUBEBUILDER_ASSETS set as scripts/e2e sets it; PODIDENTITY_BENCH_PODS=N pods in all,
//! spread over PODIDENTITY_BENCH_ACCOUNTS ServiceAccounts).

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use podidentity_e2e::bench::{self, status_mib};
use podidentity_e2e::operator::Replica;
use podidentity_e2e::scenario::Scenario;
use serde_json::json;

fn main() {
    let pods = bench::env_number("PODIDENTITY_BENCH_PODS", 3000) as usize;
    let accounts = bench::env_number("PODIDENTITY_BENCH_ACCOUNTS", 30) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    bench::run("early_pods", runtime, |s| async move {
        measure(&s, pods, accounts.max(1)).await
    });
}

fn spec(account: &str) -> serde_json::Value {
    json!({"serviceAccountName": account,
        "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["*"]}]}})
}

/// Every binding's `status.podsNeedingRestart`, summed (bindings not counted yet: 0).
async fn counted(s: &Scenario, ns: &str) -> i64 {
    s.bindings(ns)
        .list(&Default::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter_map(|b| b.status.as_ref()?.pods_needing_restart)
                .sum()
        })
        .unwrap_or(0)
}

/// A pass over every binding (a label change wakes each), timed until they all count
/// `expected` pods in all.
async fn passes(s: &Scenario, ns: &str, accounts: usize, round: usize, expected: i64) -> Duration {
    let started = Instant::now();
    for a in 0..accounts {
        let patch = json!({"metadata": {"labels": {"round": round.to_string()}}});
        let _ = s
            .bindings(ns)
            .patch(
                &format!("sa{a}"),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await;
    }
    loop {
        let now = counted(s, ns).await;
        if now == expected {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let each: Vec<Option<i64>> = s
                .bindings(ns)
                .list(&Default::default())
                .await
                .map(|l| {
                    l.items
                        .iter()
                        .map(|b| b.status.as_ref().and_then(|s| s.pods_needing_restart))
                        .collect()
                })
                .unwrap_or_default();
            println!("round {round}: {now} pods counted of {expected} after 120 s: {each:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    started.elapsed()
}

async fn measure(s: &Scenario, pods: usize, accounts: usize) {
    let rendered = s
        .install(json!({"aws": {"maxRequestsPerSecond": 100}}))
        .await;
    let mut controller = s
        .controller(&rendered, &Replica::named("early-pods-controller"))
        .await;
    controller.wait_ready(Duration::from_secs(60)).await;
    let pid = controller.process.pid();
    let ns = s.namespace("early").await;
    for a in 0..accounts {
        let name = format!("sa{a}");
        s.create_service_account(&ns, &name, json!({})).await;
        s.create_binding(&ns, &name, spec(&name)).await;
    }
    for a in 0..accounts {
        s.wait_ready(&ns, &format!("sa{a}")).await;
    }
    passes(s, &ns, accounts, 0, 0).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = status_mib(pid, "VmRSS:");

    // Pods without the role (no webhook registered): every one needs a restart.
    let api: Api<Pod> = Api::namespaced(s.client(), &ns);
    let started = Instant::now();
    let created = futures::stream::iter(0..pods)
        .map(|i| {
            let api = api.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("p{i}"), "labels": {"app": "early"}},
                    "spec": {"serviceAccountName": format!("sa{}", i % accounts),
                        "containers": [{"name": "app", "image": "registry.example/app:1",
                            "env": [{"name": "MODE", "value": "production"}]}]}}))
                .expect("pod");
                api.create(&PostParams::default(), &pod).await.map(|_| ())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let failed: Vec<String> = created
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    println!(
        "{pods} pods of {accounts} ServiceAccounts created in {:.1}s ({} failed{})",
        started.elapsed().as_secs_f64(),
        failed.len(),
        failed
            .first()
            .map(|e| format!(", first: {e}"))
            .unwrap_or_default()
    );
    let expected = i64::try_from(pods).unwrap_or(i64::MAX);
    let first = passes(s, &ns, accounts, 1, expected).await;
    let second = passes(s, &ns, accounts, 2, expected).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = status_mib(pid, "VmRSS:");
    let peak = status_mib(pid, "VmHWM:");
    println!(
        "a pass over each of {accounts} Ready bindings, listing {} pods each: all counted in {:.2}s (again: {:.2}s)",
        pods / accounts,
        first.as_secs_f64(),
        second.as_secs_f64()
    );
    println!(
        "controller RSS: {before:.1} MiB before the pods, {after:.1} MiB after ({:+.0} bytes a pod); peak {peak:.1} MiB",
        (after - before) * 1024.0 * 1024.0 / pods as f64
    );
    println!(
        "status.podsNeedingRestart summed over the bindings: {} (expected {pods})",
        counted(s, &ns).await
    );
}
