//! The controller at 10,000 bindings on a real API server (the e2e harness's control
//! plane) with moto behind the counting proxy; prints figures, asserts nothing.
//!
//! `PODIDENTITY_BIN=target/release/podidentity scripts/with-moto cargo bench -p
//! podidentity-e2e --bench controller_at_scale` (KUBEBUILDER_ASSETS set as scripts/e2e
//! sets it; PODIDENTITY_BENCH_BINDINGS=N for another N).
//!
//! The world: N bindings in N/20 namespaces, 2N ServiceAccounts (one per binding, and as
//! many unrelated). A first controller makes every role; then a second one is started on
//! the world already in line (the figures): its start-up to Ready and the writes it makes,
//! a drift sweep's IAM reads and CPU time, its reconciles while idle, 1,000 new bindings at
//! once at `aws.maxRequestsPerSecond: 50`, and its peak RSS.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use podidentity_api::PodIdentityBinding;
use podidentity_e2e::bench::{self, cpu_seconds, status_mib};
use podidentity_e2e::operator::{Operator, Replica, family_sum};
use podidentity_e2e::scenario::Scenario;
use serde_json::{Value, json};

const BINDINGS_PER_NAMESPACE: usize = 20;
const BURST: usize = 1_000;
const BURST_RATE: f64 = 50.0;
/// Long enough that the burst, started right after a sweep and the idle period, ends
/// before the next sweep: moto builds every role's details for each page, and holds its
/// other calls meanwhile (real IAM does not).
const SWEEP_EVERY: &str = "90s";

fn main() {
    let n = bench::env_number("PODIDENTITY_BENCH_BINDINGS", 10_000) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    bench::run("controller_at_scale", runtime, |s| async move {
        measure(&s, n).await
    });
}

fn binding_spec(name: &str, i: usize) -> Value {
    json!({
        "serviceAccountName": name,
        "permissions": {
            "statements": [{"actions": ["s3:GetObject"], "resources": [format!("arn:aws:s3:::bucket-{i}/*")]}],
        },
    })
}

/// Creates bindings `range` (with their ServiceAccounts, and `unrelated` more accounts per
/// binding) spread over `namespaces`.
async fn create(
    s: &Scenario,
    namespaces: &[String],
    range: std::ops::Range<usize>,
    unrelated: bool,
) {
    futures::stream::iter(range)
        .for_each_concurrent(32, |i| {
            let ns = namespaces[i % namespaces.len()].clone();
            async move {
                let name = format!("app{i}");
                s.create_service_account(&ns, &name, json!({})).await;
                if unrelated {
                    s.create_service_account(&ns, &format!("other{i}"), json!({}))
                        .await;
                }
                s.create_binding(&ns, &name, binding_spec(&name, i)).await;
            }
        })
        .await;
}

/// Waits, through one watch (not a list of every binding every few hundred ms, which at
/// 11,000 bindings loads the API server on the cores the figures are taken on), until every
/// binding named app{range} is Ready for its generation; `None` if that takes longer than
/// `timeout`. Watch errors are retried (with backoff), never taken for the end.
async fn wait_ready_watched(
    client: &kube::Client,
    range: std::ops::Range<usize>,
    timeout: Duration,
) -> Option<Duration> {
    use kube::runtime::{WatchStreamExt, watcher};
    let started = Instant::now();
    let wanted: std::collections::HashSet<String> = range.map(|i| format!("app{i}")).collect();
    let mut ready = std::collections::HashSet::new();
    let api: Api<PodIdentityBinding> = Api::all(client.clone());
    let mut events = std::pin::pin!(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    let watching = async {
        while let Some(event) = events.next().await {
            let binding = match event {
                Ok(binding) => binding,
                Err(err) => {
                    eprintln!("  (the Ready watch failed, trying again: {err})");
                    continue;
                }
            };
            let name = binding.metadata.name.clone().unwrap_or_default();
            if !wanted.contains(&name) {
                continue;
            }
            let key = (binding.metadata.namespace.clone(), name);
            let is_ready =
                podidentity_e2e::scenario::condition(&binding, "Ready").is_some_and(|c| {
                    c.status == "True" && c.observed_generation == binding.metadata.generation
                });
            if is_ready {
                ready.insert(key);
            } else {
                ready.remove(&key);
            }
            if ready.len() >= wanted.len() {
                return true;
            }
        }
        false
    };
    match tokio::time::timeout(timeout, watching).await {
        Ok(true) => Some(started.elapsed()),
        _ => None,
    }
}

fn by_action(calls: &[podidentity_e2e::iam_proxy::Call]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for call in calls {
        *counts.entry(call.action.clone()).or_default() += 1;
    }
    counts
}

async fn reconciles(controller: &Operator) -> f64 {
    family_sum(
        &controller.metrics().await,
        "podidentity_reconciles_total",
        "",
    )
}

/// Waits until the GetAccountAuthorizationDetails count has grown and then stayed put
/// for fifteen seconds (a sweep's last page read: moto takes seconds per page at 10,000
/// roles, as it builds every role's details for each page).
async fn sweep_done(s: &Scenario, before: usize, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut last = before;
    let mut still_since = Instant::now();
    loop {
        let now = s.iam.count("GetAccountAuthorizationDetails");
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if now > before && still_since.elapsed() > Duration::from_secs(15) {
            return Some(started.elapsed());
        }
        if started.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn measure(s: &Scenario, n: usize) {
    let namespace_count = n.div_ceil(BINDINGS_PER_NAMESPACE);
    let client = s.client();

    // The world, made by a first controller with a generous budget.
    let filler = s
        .install(json!({"aws": {"maxRequestsPerSecond": 1000}, "driftInterval": "1h"}))
        .await;
    let mut first = s.controller(&filler, &Replica::named("bench-filler")).await;
    first.wait_ready(Duration::from_secs(60)).await;
    let mut namespaces = Vec::new();
    for i in 0..namespace_count {
        namespaces.push(s.namespace(&format!("scale{i}")).await);
    }
    let started = Instant::now();
    create(s, &namespaces, 0..n, true).await;
    let created = started.elapsed();
    let waited = wait_ready_watched(&client, 0..n, Duration::from_secs(3600))
        .await
        .expect("the world's bindings became Ready within an hour");
    println!(
        "world: {n} bindings in {namespace_count} namespaces, {} ServiceAccounts; created in {:.0}s, all Ready {:.0}s later",
        2 * n,
        created.as_secs_f64(),
        waited.as_secs_f64()
    );
    first.process.signal("TERM");
    let _ = first.wait_exit(Duration::from_secs(30)).await;
    drop(first);

    // The measured controller, started on a world already in line.
    let rendered = s
        .install(json!({"aws": {"maxRequestsPerSecond": BURST_RATE}, "driftInterval": SWEEP_EVERY}))
        .await;
    let audit = s.audit_now();
    let iam = s.iam.mark();
    let gaad_before = s.iam.count("GetAccountAuthorizationDetails");
    let mut controller = s
        .controller(&rendered, &Replica::named("bench-controller"))
        .await;
    let pid = controller.process.pid();
    let to_ready = controller.wait_ready(Duration::from_secs(600)).await;
    let first_sweep = sweep_done(s, gaad_before, Duration::from_secs(600)).await;
    // Let the start-up passes finish: until reconciles stop for five seconds.
    let mut last = reconciles(&controller).await;
    let mut still = Instant::now();
    while still.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = reconciles(&controller).await;
        if now != last {
            last = now;
            still = Instant::now();
        }
    }
    let startup_calls = s.iam.calls_since(iam);
    let startup_writes = s.writes_by(&controller.user, audit);
    println!("start-up with everything in line (aws.maxRequestsPerSecond {BURST_RATE}):");
    println!(
        "  Ready (/readyz 200) {:.1}s after start; first sweep done {:.1}s after Ready",
        to_ready.as_secs_f64(),
        first_sweep.map_or(f64::NAN, |d| d.as_secs_f64())
    );
    println!(
        "  IAM writes {}, IAM reads {} ({:?}); Kubernetes writes {} ({:?})",
        startup_calls.iter().filter(|c| !c.is_read()).count(),
        startup_calls.iter().filter(|c| c.is_read()).count(),
        by_action(&startup_calls),
        startup_writes.len(),
        startup_writes
            .iter()
            .map(|w| format!("{} {}", w.verb, w.kind()))
            .take(5)
            .collect::<Vec<_>>()
    );
    println!(
        "  start-up passes: {} reconciles; RSS {:.1} MiB, peak {:.1} MiB",
        last,
        status_mib(pid, "VmRSS:"),
        status_mib(pid, "VmHWM:")
    );

    // A sweep while idle: its reads and CPU time; and reconciles between sweeps.
    let idle_reconciles = reconciles(&controller).await;
    let idle_iam = s.iam.mark();
    let idle_audit = s.audit_now();
    let gaad = s.iam.count("GetAccountAuthorizationDetails");
    let cpu_before = cpu_seconds(pid);
    let sweep = sweep_done(s, gaad, Duration::from_secs(300)).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let sweep_calls = s.iam.calls_since(idle_iam);
    let idle_for = Duration::from_secs(20);
    let between = reconciles(&controller).await;
    tokio::time::sleep(idle_for).await;
    let after = reconciles(&controller).await;
    println!(
        "drift sweep over {n} roles: {} IAM reads (goal ≤ {}), {:?}; {:.2}s CPU (the controller's, from the last sweep's end to this one's){}",
        sweep_calls.iter().filter(|c| c.is_read()).count(),
        n.div_ceil(1000) + 1,
        by_action(&sweep_calls),
        cpu,
        if sweep.is_none() {
            " — the sweep did not finish"
        } else {
            ""
        }
    );
    println!(
        "idle: {} reconciles in {}s between sweeps; {} reconciles around the sweep (roles in line); {} Kubernetes writes, {} IAM writes",
        after - between,
        idle_for.as_secs(),
        between - idle_reconciles,
        s.writes_by(&controller.user, idle_audit).len(),
        s.iam.writes_since(idle_iam).len(),
    );

    // 1,000 new bindings at once: the budget, not the controller, should be the limit.
    let burst_iam = s.iam.mark();
    let started = Instant::now();
    let (_, waited) = futures::join!(
        create(s, &namespaces, n..n + BURST, false),
        wait_ready_watched(&client, n..n + BURST, Duration::from_secs(1800)),
    );
    let Some(waited) = waited else {
        println!("{BURST} new bindings at once: not all Ready within 30 minutes");
        return;
    };
    let all_ready = started.elapsed().max(waited);
    let burst_calls = s.iam.calls_since(burst_iam);
    let sweep_reads = burst_calls
        .iter()
        .filter(|c| c.action == "GetAccountAuthorizationDetails")
        .count();
    // Calls made (retries of moto's 500s included) and the least a burst needs: CreateRole
    // and PutRolePolicy per binding.
    let made = burst_calls.len() - sweep_reads;
    let least = 2 * BURST;
    let (by_made, by_least) = (made as f64 / BURST_RATE, least as f64 / BURST_RATE);
    println!(
        "{BURST} new bindings at once: all Ready {:.1}s after the first create; IAM calls made {made} ({:?}) ÷ {BURST_RATE}/s = {by_made:.1}s, ratio {:.2}; least needed {least} ÷ {BURST_RATE}/s = {by_least:.1}s, ratio {:.2} (goal ≤ 1.10); {}",
        all_ready.as_secs_f64(),
        by_action(&burst_calls),
        all_ready.as_secs_f64() / by_made,
        all_ready.as_secs_f64() / by_least,
        if sweep_reads == 0 {
            "no sweep overlapped".to_string()
        } else {
            format!("a sweep overlapped ({sweep_reads} page reads)")
        }
    );
    println!(
        "controller RSS {:.1} MiB (heap and stacks {:.1}, code and libraries {:.1}), peak {:.1} MiB (goal ≤ 64 MiB)",
        status_mib(pid, "VmRSS:"),
        status_mib(pid, "RssAnon:"),
        status_mib(pid, "RssFile:"),
        status_mib(pid, "VmHWM:")
    );
}
