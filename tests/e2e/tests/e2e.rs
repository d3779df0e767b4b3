//! End to end: the `podidentity` binary, as the chart starts it and under the chart's own
//! RBAC, against a real control plane (etcd, kube-apiserver, kube-controller-manager from
//! KUBEBUILDER_ASSETS, started once for the run) and moto. Scenarios run one after another
//! on that control plane, each in its own namespaces with its own IAM role prefix, and
//! assert on what a user sees: status, Events, the API server's answers and audit log, and
//! IAM as moto holds it.
//!
//! Without KUBEBUILDER_ASSETS or PODIDENTITY_E2E_KUBECONFIG the scenarios are skipped
//! (reported as ignored); with PODIDENTITY_E2E_REQUIRE set (scripts/test sets it when it
//! found the assets) that is a failure instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use podidentity_e2e::cluster::Source;
use podidentity_e2e::scenario::{Leftovers, Scenario, clean_up, forbidden_since};
use podidentity_e2e::{Cluster, HarnessError};

mod scenarios;

type ScenarioFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
pub type ScenarioFn = fn(Scenario) -> ScenarioFuture;

/// What a scenario needs beyond the API server.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Any cluster.
    Cluster,
    /// The harness's own control plane: its audit log, its CA (webhooks on loopback).
    OwnControlPlane,
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

async fn run_one(cluster: Arc<Cluster>, index: usize, scenario: ScenarioFn) -> Result<(), Failed> {
    let leftovers = Arc::new(Leftovers::default());
    let world = Scenario::new(cluster.clone(), index, leftovers.clone())
        .await
        .map_err(|e| Failed::from(e.to_string()))?;
    let dir = world.dir.clone();
    let since = world.audit_mark;
    let outcome = tokio::spawn(scenario(world)).await;
    // Every scenario runs under the chart's RBAC: any request it refused is a failure,
    // even one the operator recovered from.
    let forbidden = forbidden_since(&cluster, since);
    clean_up(&cluster, &leftovers).await;
    match outcome {
        Ok(()) if forbidden.is_empty() => Ok(()),
        Ok(()) => Err(Failed::from(format!(
            "the chart's RBAC refused the operator: {:#?}",
            forbidden
                .iter()
                .map(|e| format!(
                    "{} {} {} ({}: {})",
                    e.user, e.verb, e.uri, e.code, e.message
                ))
                .collect::<Vec<_>>()
        ))),
        Err(err) => {
            let message = match err.try_into_panic() {
                Ok(payload) => panic_message(payload.as_ref()),
                Err(err) => err.to_string(),
            };
            Err(Failed::from(format!("{message}\n{}", log_tails(&dir))))
        }
    }
}

/// The end of every process log of a failed scenario.
fn log_tails(dir: &std::path::Path) -> String {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
    logs.sort();
    logs.iter()
        .map(|p| {
            format!(
                "--- {}\n{}",
                p.display(),
                podidentity_e2e::process::tail(p, 40)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn main() {
    let mut args = Arguments::from_args();
    // One control plane, scenarios one at a time: each counts writes and calls.
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let all = scenarios::all();
    let source = Source::from_env();
    let required = std::env::var_os("PODIDENTITY_E2E_REQUIRE").is_some();

    if args.list || matches!(source, Source::None) {
        if matches!(source, Source::None) && !args.list {
            if required {
                eprintln!(
                    "PODIDENTITY_E2E_REQUIRE is set but there is no cluster: set KUBEBUILDER_ASSETS (scripts/test unpacks ../shared/envtest) or PODIDENTITY_E2E_KUBECONFIG"
                );
                std::process::exit(1);
            }
            eprintln!(
                "skipped: no cluster for the end-to-end tests (set KUBEBUILDER_ASSETS to envtest binaries, or PODIDENTITY_E2E_KUBECONFIG)"
            );
        }
        let trials = all
            .into_iter()
            .map(|(name, _, _)| Trial::test(name, || Ok(())).with_ignored_flag(true))
            .collect();
        libtest_mimic::run(&args, trials).exit();
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => Arc::new(runtime),
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            std::process::exit(1);
        }
    };
    let started = std::time::Instant::now();
    let cluster: Result<Cluster, HarnessError> = runtime.block_on(Cluster::start(&source));
    let cluster = match cluster {
        Ok(cluster) => Arc::new(cluster),
        Err(err) => {
            eprintln!("error: the end-to-end cluster did not start: {err}");
            std::process::exit(1);
        }
    };
    eprintln!(
        "e2e: cluster at {} ready in {:.1}s ({})",
        cluster.url,
        started.elapsed().as_secs_f64(),
        if cluster.plane.is_some() {
            "own control plane"
        } else {
            "existing cluster"
        }
    );
    let own_plane = cluster.plane.is_some();
    let trials = all
        .into_iter()
        .enumerate()
        .map(|(index, (name, needs, scenario))| {
            let runtime = runtime.clone();
            let cluster = cluster.clone();
            let runnable = own_plane || needs == Needs::Cluster;
            let trial = Trial::test(name, move || {
                runtime.block_on(run_one(cluster, index + 1, scenario))
            });
            if runnable {
                trial
            } else {
                trial.with_ignored_flag(true)
            }
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // Stop the control plane before exiting (exit skips destructors).
    drop(cluster);
    conclusion.exit();
}
