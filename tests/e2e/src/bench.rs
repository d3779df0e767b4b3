//! What the benchmarks share: when to run, the world they run in, and what they read of a
//! process from /proc.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::ListParams;
use serde_json::json;

use crate::Cluster;
use crate::cluster::Source;
use crate::scenario::{Leftovers, Scenario, clean_up};

/// Runs `bench` in one scenario on the harness's cluster, on `runtime`, when the binary
/// was started by `cargo bench` and a cluster is configured; otherwise says why not.
/// (Test runners that list or run every target do not pass `--bench`, and must not start
/// a minutes-long benchmark.)
pub fn run<F, Fut>(name: &str, runtime: tokio::runtime::Runtime, bench: F)
where
    F: FnOnce(Arc<Scenario>) -> Fut,
    Fut: Future<Output = ()>,
{
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let source = Source::from_env();
    if matches!(source, Source::None) {
        eprintln!("{name} needs KUBEBUILDER_ASSETS (see scripts/e2e)");
        return;
    }
    runtime.block_on(async move {
        let cluster = Arc::new(Cluster::start(&source).await.expect("cluster"));
        let leftovers = Arc::new(Leftovers::default());
        let s = Scenario::new(cluster.clone(), 1, leftovers.clone())
            .await
            .expect("scenario");
        bench(Arc::new(s)).await;
        clean_up(&cluster, &leftovers).await;
    });
}

/// Applies `n` bindings, each with its ServiceAccount, spread over `namespaces`, 16 at a
/// time: an inline statement and one AWS-managed policy each.
pub async fn apply_bindings(s: &Scenario, namespaces: &[String], n: usize) {
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let ns = namespaces[i % namespaces.len()].clone();
            async move {
                let name = format!("app{i}");
                s.create_service_account(&ns, &name, json!({})).await;
                s.create_binding(
                    &ns,
                    &name,
                    json!({
                        "serviceAccountName": name,
                        "permissions": {
                            "statements": [{"actions": ["s3:GetObject"], "resources": [format!("arn:aws:s3:::bucket-{i}/*")]}],
                            "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess"],
                        },
                    }),
                )
                .await;
            }
        })
        .await;
}

/// Waits until `n` bindings of `namespaces` are Ready for their generation (polled twice
/// a second).
pub async fn wait_all_ready(s: &Scenario, namespaces: &[String], n: usize) {
    loop {
        let mut ready = 0;
        for ns in namespaces {
            let list = s
                .bindings(ns)
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            ready += list
                .iter()
                .filter(|b| {
                    crate::scenario::condition(b, "Ready").is_some_and(|c| {
                        c.status == "True" && c.observed_generation == b.metadata.generation
                    })
                })
                .count();
        }
        if ready >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A number from the environment, or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `/proc/PID/status` field given in kB (`VmRSS:`, `VmHWM:`), in MiB; 0 if unreadable.
pub fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// CPU time (user and system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) start after the last ')';
    // utime and stime are the 12th and 13th of them.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
