//! Controller benchmark (prints figures, asserts nothing): N bindings reconciled against
//! moto's IAM, Kubernetes in kube-fake-client.
//!
//! `scripts/with-moto cargo bench -p podidentity-controller --bench reconcile_load`
//!
//! Prints, for N = 100 and 1000: IAM calls per binding by operation, time until all are
//! Ready, IAM reads for one drift sweep, writes by the idle controller over a simulated
//! minute, and peak RSS of the whole benchmark process (fake API server included).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams};
use kube::core::ObjectMeta;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use kube_fake_client::ClientBuilder;
use podidentity_api::config::{AwsConfig, OidcConfig, OperatorConfig};
use podidentity_api::{PodIdentityBinding, PodIdentityBindingSpec, Statement};
use podidentity_aws::api::IamApi;
use podidentity_aws::counting::{CallLog, Counted};
use podidentity_aws::sdk::{AwsSettings, SdkIam};
use podidentity_controller::Context;
use podidentity_controller::binding::reconcile;
use podidentity_controller::drift::sweep_once;
use podidentity_controller::metrics::Metrics;
use podidentity_controller::status::is_ready;

const NAMESPACES: usize = 20;
const CONCURRENCY: usize = 8;
/// A minute of idling at the shortest drift interval (10s): six sweeps and six passes
/// over every binding (as after watch re-lists).
const IDLE_CYCLES: usize = 6;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        if !args.iter().any(|a| a == "--list") {
            eprintln!(
                "reconcile_load is a benchmark: scripts/with-moto cargo bench -p podidentity-controller --bench reconcile_load"
            );
        }
        return;
    }
    let Ok(endpoint) = std::env::var("PODIDENTITY_TEST_IAM_ENDPOINT") else {
        eprintln!(
            "reconcile_load needs moto: scripts/with-moto cargo bench -p podidentity-controller --bench reconcile_load"
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for n in [100, 1000] {
            bench(&endpoint, n).await;
        }
        println!(
            "peak RSS of the benchmark process: {:.1} MiB",
            peak_rss_kib() as f64 / 1024.0
        );
    });
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn objects(n: usize) -> (Vec<PodIdentityBinding>, Vec<ServiceAccount>) {
    let mut bindings = Vec::new();
    let mut accounts = Vec::new();
    for i in 0..n {
        let namespace = format!("team-{}", i % NAMESPACES);
        let mut spec = PodIdentityBindingSpec {
            service_account_name: format!("app-{i}"),
            ..PodIdentityBindingSpec::default()
        };
        spec.permissions.statements.push(Statement {
            actions: vec!["s3:GetObject".into(), "s3:ListBucket".into()],
            resources: vec![
                format!("arn:aws:s3:::bucket-{i}"),
                format!("arn:aws:s3:::bucket-{i}/*"),
            ],
            ..Statement::default()
        });
        spec.permissions.managed_policy_arns =
            vec!["arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess".into()];
        let mut binding = PodIdentityBinding::new(&format!("b-{i}"), spec);
        binding.metadata.namespace = Some(namespace.clone());
        binding.metadata.generation = Some(1);
        // See the reconcile tests: kube-fake-client needs a non-empty finalizer list.
        binding.metadata.finalizers = Some(vec!["bench.example.com/hold".into()]);
        bindings.push(binding);
        accounts.push(ServiceAccount {
            metadata: ObjectMeta {
                name: Some(format!("app-{i}")),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        });
    }
    (bindings, accounts)
}

async fn pass_all(ctx: &Arc<Context>, client: &kube::Client) {
    let all: Vec<PodIdentityBinding> = Api::<PodIdentityBinding>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    futures::stream::iter(all)
        .for_each_concurrent(CONCURRENCY, |binding| {
            let ctx = ctx.clone();
            async move {
                if let Err(err) = reconcile(Arc::new(binding), ctx).await {
                    eprintln!("pass failed: {err}");
                }
            }
        })
        .await;
}

async fn bench(endpoint: &str, n: usize) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let cluster = format!("bench{}", nanos % 1_000_000_000);
    let (bindings, accounts) = objects(n);
    let client = ClientBuilder::new()
        .with_resource::<PodIdentityBinding>()
        .with_status_subresource::<PodIdentityBinding>()
        .with_objects(bindings)
        .with_objects(accounts)
        .build()
        .await
        .expect("fake client");
    let sdk = SdkIam::connect(&AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.into()),
        max_attempts: 3,
        call_timeout: Some(Duration::from_secs(30)),
        static_credentials: Some(("testing".into(), "testing".into())),
    })
    .await;
    let log = CallLog::default();
    let iam: Arc<dyn IamApi> = Arc::new(Counted::new(sdk, log.clone()));
    let config = OperatorConfig {
        cluster_name: cluster,
        oidc: OidcConfig {
            issuer_url: Some("https://oidc.example.com/id/ABC".into()),
            ..OidcConfig::default()
        },
        aws: AwsConfig {
            account_id: Some("123456789012".into()),
            ..AwsConfig::default()
        },
        ..OperatorConfig::default()
    };
    let ctx = Arc::new(Context::new(client.clone(), iam, config));

    let started = Instant::now();
    let mut passes = 0;
    loop {
        passes += 1;
        pass_all(&ctx, &client).await;
        let all = Api::<PodIdentityBinding>::all(client.clone())
            .list(&ListParams::default())
            .await
            .expect("list")
            .items;
        let ready = all.iter().filter(|b| is_ready(b.status.as_ref())).count();
        if ready == n || passes >= 5 {
            println!(
                "\nN = {n}: {ready} of {n} Ready after {:.1}s ({passes} passes over all bindings, {CONCURRENCY} at a time, no request budget)",
                started.elapsed().as_secs_f64()
            );
            break;
        }
    }
    let mut by_operation: BTreeMap<&str, u64> = BTreeMap::new();
    for ((operation, _), count) in log.snapshot() {
        *by_operation.entry(operation).or_default() += count;
    }
    let total: u64 = by_operation.values().sum();
    let per_binding: Vec<String> = by_operation
        .iter()
        .map(|(op, c)| format!("{op} {:.2}", *c as f64 / n as f64))
        .collect();
    println!(
        "  IAM calls per binding to Ready: {:.2} ({})",
        total as f64 / n as f64,
        per_binding.join(", ")
    );
    println!(
        "  at the default budget of 10 requests/s those {total} calls take at least {:.0}s",
        total as f64 / 10.0
    );

    // One drift sweep, from a store filled the way the controller's watch fills it.
    let (store, mut writer) = reflector::store::<PodIdentityBinding>();
    writer.apply_watcher_event(&Event::Init);
    for binding in Api::<PodIdentityBinding>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
    {
        writer.apply_watcher_event(&Event::InitApply(binding));
    }
    writer.apply_watcher_event(&Event::InitDone);
    let metrics = Metrics::new();
    // Drifted bindings would be woken through here; nothing drifts in this benchmark.
    let (triggers, _woken) = futures::channel::mpsc::unbounded();
    log.reset();
    let sweep_started = Instant::now();
    sweep_once(&ctx, &store, &triggers, &metrics).await;
    println!(
        "  one drift sweep over {n} roles: {} IAM reads ({:?}), {} writes, {:.2}s",
        log.total(),
        log.snapshot().keys().map(|(op, _)| *op).collect::<Vec<_>>(),
        log.writes(),
        sweep_started.elapsed().as_secs_f64()
    );

    // The idle controller: nothing changed anywhere.
    let versions = |items: Vec<PodIdentityBinding>| -> BTreeMap<String, Option<String>> {
        items
            .into_iter()
            .map(|b| {
                (
                    format!("{:?}/{:?}", b.metadata.namespace, b.metadata.name),
                    b.metadata.resource_version,
                )
            })
            .collect()
    };
    let before = versions(
        Api::<PodIdentityBinding>::all(client.clone())
            .list(&ListParams::default())
            .await
            .expect("list")
            .items,
    );
    log.reset();
    for _ in 0..IDLE_CYCLES {
        pass_all(&ctx, &client).await;
        sweep_once(&ctx, &store, &triggers, &metrics).await;
    }
    let after = versions(
        Api::<PodIdentityBinding>::all(client.clone())
            .list(&ListParams::default())
            .await
            .expect("list")
            .items,
    );
    let kube_writes = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .count();
    println!(
        "  idle minute ({IDLE_CYCLES} sweeps and {IDLE_CYCLES} passes over every binding): {} IAM writes, {kube_writes} binding writes, {} IAM reads",
        log.writes(),
        log.total() - log.writes()
    );
}
