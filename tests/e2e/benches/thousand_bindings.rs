//! The controller at 1,000 bindings on a real API server (the e2e harness's control
//! plane) with moto behind the counting proxy; prints figures, asserts nothing.
//!
//! `scripts/with-moto cargo bench -p podidentity-e2e --bench thousand_bindings`
//! (KUBEBUILDER_ASSETS set as scripts/e2e sets it; PODIDENTITY_BENCH_BINDINGS=N for
//! another N).
//!
//! Prints: time from the first apply to all Ready at `aws.maxRequestsPerSecond: 100`, IAM
//! calls and Kubernetes writes per binding, the controller's peak RSS, and every write
//! (IAM and Kubernetes) the idle controller makes over 60 s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use podidentity_e2e::bench;
use podidentity_e2e::operator::{Replica, family_sum};
use podidentity_e2e::scenario::Scenario;
use serde_json::json;

const NAMESPACES: usize = 20;

fn main() {
    let n = bench::env_number("PODIDENTITY_BENCH_BINDINGS", 1000) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    bench::run("thousand_bindings", runtime, |s| async move {
        measure(&s, n).await
    });
}

fn peak_rss_mib(pid: u32) -> f64 {
    bench::status_mib(pid, "VmHWM:")
}

async fn measure(s: &Scenario, n: usize) {
    let rendered = s
        .install(json!({"aws": {"maxRequestsPerSecond": 100}, "driftInterval": "10m"}))
        .await;
    let mut controller = s
        .controller(&rendered, &Replica::named("bench-controller"))
        .await;
    controller.wait_ready(Duration::from_secs(60)).await;
    let mut namespaces = Vec::new();
    for i in 0..NAMESPACES {
        namespaces.push(s.namespace(&format!("bench{i}")).await);
    }
    let audit = s.audit_now();
    let iam = s.iam.mark();
    let started = Instant::now();
    bench::apply_bindings(s, &namespaces, n).await;
    let applied = started.elapsed();
    bench::wait_all_ready(s, &namespaces, n).await;
    let all_ready = started.elapsed();
    let calls = s.iam.calls_since(iam);
    let mut by_action: BTreeMap<String, usize> = BTreeMap::new();
    for call in &calls {
        *by_action.entry(call.action.clone()).or_default() += 1;
    }
    let failed: BTreeMap<String, usize> =
        calls
            .iter()
            .filter(|c| c.status != 200)
            .fold(BTreeMap::new(), |mut m, c| {
                *m.entry(format!("{} {}", c.action, c.status)).or_default() += 1;
                m
            });
    let writes = s.writes_by(&controller.user, audit);
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for write in &writes {
        *by_kind
            .entry(format!("{} {}", write.verb, write.kind()))
            .or_default() += 1;
    }
    let per = |count: usize| count as f64 / n as f64;
    println!(
        "{n} bindings in {NAMESPACES} namespaces, aws.maxRequestsPerSecond 100, real API server"
    );
    println!(
        "  applied in {:.1}s; all Ready {:.1}s after the first apply",
        applied.as_secs_f64(),
        all_ready.as_secs_f64()
    );
    println!(
        "  IAM calls per binding: {:.2} ({})",
        per(calls.len()),
        by_action
            .iter()
            .map(|(a, c)| format!("{a} {:.2}", per(*c)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  IAM answers other than 200: {failed:?}");
    println!(
        "  IAM calls needed / 100 per second: {:.1}s",
        calls.len() as f64 / 100.0
    );
    println!(
        "  Kubernetes writes per binding: {:.2} ({})",
        per(writes.len()),
        by_kind
            .iter()
            .map(|(k, c)| format!("{k} {:.2}", per(*c)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  controller peak RSS so far: {:.1} MiB",
        peak_rss_mib(controller.process.pid())
    );

    let metrics = controller.metrics().await;
    let reconciles_before = family_sum(&metrics, "podidentity_reconciles_total", "");
    let idle_audit = s.audit_now();
    let idle_iam = s.iam.mark();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let reconciles_after = family_sum(
        &controller.metrics().await,
        "podidentity_reconciles_total",
        "",
    );
    println!(
        "  idle 60s: {} Kubernetes writes, {} IAM writes, {} reconciles",
        s.writes_by(&controller.user, idle_audit).len(),
        s.iam.writes_since(idle_iam).len(),
        reconciles_after - reconciles_before
    );
    println!(
        "  controller peak RSS: {:.1} MiB",
        peak_rss_mib(controller.process.pid())
    );
}
