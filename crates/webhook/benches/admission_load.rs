//! Load benchmark (prints figures, asserts nothing): the webhook over HTTPS on loopback,
//! answering realistic AdmissionReviews at fixed concurrency.
//!
//! `cargo bench -p podidentity-webhook --bench admission_load`
//!
//! The server runs in a child process (this binary re-executed) so its memory is measured
//! alone. Its caches hold 10,000 ServiceAccounts and 2,000 PodIdentityBindings; the
//! request mix is 80% annotated ServiceAccounts, 10% roles predicted from bindings, 10%
//! pods without a role.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::core::DeserializeGuard;
use kube::core::{ObjectMeta, PartialObjectMeta};
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use podidentity_api::config::{AwsConfig, OperatorConfig};
use podidentity_api::{PodIdentityBinding, PodIdentityBindingSpec};
use podidentity_webhook::binding_cache::BindingCache;
use podidentity_webhook::identity::Predictor;
use podidentity_webhook::lookup::CachedLookup;
use podidentity_webhook::metrics::Metrics;
use podidentity_webhook::mutation::MutationConfig;
use podidentity_webhook::server::{AppState, ServerSettings, start};
use rustls::pki_types::CertificateDer;
use serde_json::json;

#[path = "../tests/support/mod.rs"]
mod support;

const SERVICE_ACCOUNTS: usize = 10_000;
/// PODIDENTITY_BENCH_BINDINGS overrides it (50,000 shows the lookup stays flat).
const BINDINGS: usize = 2_000;

fn binding_count() -> usize {
    std::env::var("PODIDENTITY_BENCH_BINDINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(BINDINGS)
}
const REQUESTS_PER_LEVEL: usize = 20_000;
const CONCURRENCY: [usize; 4] = [1, 8, 32, 64];
/// Each level stops after this long even if requests remain.
const LEVEL_TIME_LIMIT: Duration = Duration::from_secs(60);

fn main() {
    // `cargo bench` passes --bench; test runners listing or running every target do not,
    // and must not start a minute-long benchmark.
    let args: Vec<String> = std::env::args().collect();
    let is_server = std::env::var("PODIDENTITY_BENCH_SERVER").is_ok();
    if !is_server && !args.iter().any(|a| a == "--bench") {
        if !args.iter().any(|a| a == "--list") {
            eprintln!(
                "admission_load is a benchmark: cargo bench -p podidentity-webhook --bench admission_load"
            );
        }
        return;
    }
    #[allow(deprecated)] // ring: see Cargo.toml on rustls
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if is_server {
        runtime.block_on(serve());
    } else {
        runtime.block_on(drive());
    }
}

/// Child: serve with populated caches; print "<port> <ca-der-hex>" once listening.
async fn serve() {
    let (sa_store, mut sa_writer) = reflector::store::<PartialObjectMeta<ServiceAccount>>();
    let bindings = Arc::new(BindingCache::new());
    sa_writer.apply_watcher_event(&Event::Init);
    for i in 0..SERVICE_ACCOUNTS {
        let annotated = i % 10 < 8;
        let metadata = ObjectMeta {
            name: Some(format!("app-{i}")),
            namespace: Some(format!("team-{}", i % 200)),
            annotations: annotated.then(|| {
                [(
                    "eks.amazonaws.com/role-arn".to_string(),
                    format!("arn:aws:iam::111122223333:role/app-{i}"),
                )]
                .into()
            }),
            ..ObjectMeta::default()
        };
        let sa: PartialObjectMeta<ServiceAccount> = PartialObjectMeta {
            metadata,
            ..PartialObjectMeta::default()
        };
        sa_writer.apply_watcher_event(&Event::InitApply(sa));
    }
    sa_writer.apply_watcher_event(&Event::InitDone);
    bindings.apply(Event::Init);
    for i in 0..binding_count() {
        // Bindings cover ServiceAccounts app-{i} with i % 10 == 8 (not yet annotated).
        let sa_index = i * 10 + 8;
        let mut binding = PodIdentityBinding::new(
            &format!("b-{sa_index}"),
            PodIdentityBindingSpec {
                service_account_name: format!("app-{sa_index}"),
                ..Default::default()
            },
        );
        binding.metadata.namespace = Some(format!("team-{}", sa_index % 200));
        bindings.apply(Event::InitApply(DeserializeGuard(Ok(binding))));
    }
    bindings.apply(Event::InitDone);

    let operator = OperatorConfig {
        cluster_name: "prod".into(),
        aws: AwsConfig {
            account_id: Some("111122223333".into()),
            ..AwsConfig::default()
        },
        ..OperatorConfig::default()
    };
    let lookup = CachedLookup::new(
        sa_store,
        bindings,
        None,
        Duration::from_secs(1),
        Predictor::new(operator, "eks.amazonaws.com"),
    );

    let pki = support::TestPki::new();
    let leaf = pki.leaf();
    // Kept for the life of the process, which ends by being killed.
    let dir = support::TempDir::new("bench");
    let settings = ServerSettings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_listen: None,
        tls_cert_file: dir.write("tls.crt", &leaf.cert_pem),
        tls_key_file: dir.write("tls.key", &leaf.key_pem),
        cert_reload_interval: Duration::from_secs(10),
    };
    let state = Arc::new(AppState {
        lookup: Arc::new(lookup),
        config: MutationConfig {
            region: Some("eu-west-1".into()),
            ..MutationConfig::default()
        },
        metrics: Metrics::new(),
        bindings: None,
    });
    let server = start(&settings, state).await.expect("server");
    let hex: String = pki.ca_der().iter().map(|b| format!("{b:02x}")).collect();
    println!("{} {hex}", server.https_addr.port());
    server.wait().await;
}

fn admission_review(i: usize) -> Vec<u8> {
    // 80% annotated, 10% predicted from a binding, 10% without a role.
    let sa_index = match i % 10 {
        8 => (i / 10 % BINDINGS) * 10 + 8,
        9 => (i / 10 % (SERVICE_ACCOUNTS / 10)) * 10 + 9,
        _ => i % SERVICE_ACCOUNTS / 10 * 10 + i % 8,
    };
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": format!("app-{sa_index}-7d9f8c6b5-"), "labels": {"app": format!("app-{sa_index}"), "pod-template-hash": "7d9f8c6b5"},
                     "annotations": {"kubectl.kubernetes.io/default-container": "app"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("app-{sa_index}-7d9f8c6b5"), "uid": "6f1c2d3e-0000-4000-8000-000000000000", "controller": true}]},
        "spec": {
            "serviceAccountName": format!("app-{sa_index}"),
            "securityContext": {"runAsNonRoot": true, "runAsUser": 10001},
            "initContainers": [{"name": "migrate", "image": "registry.example.com/app/migrate:2.3.1", "command": ["/migrate", "up"],
                                "env": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}]}],
            "containers": [
                {"name": "app", "image": "registry.example.com/app/server:2.3.1", "ports": [{"containerPort": 8080}],
                 "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "PORT", "value": "8080"}],
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                 "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}, {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]},
                {"name": "proxy", "image": "registry.example.com/mesh/proxy:1.22.0", "args": ["proxy", "sidecar"]}
            ],
            "volumes": [{"name": "config", "configMap": {"name": format!("app-{sa_index}")}},
                        {"name": "kube-api-access-x", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}]
        }
    });
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": format!("00000000-0000-4000-8000-{i:012}"), "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": format!("team-{}", sa_index % 200), "operation": "CREATE",
                    "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                    "object": pod, "dryRun": false}
    }))
    .expect("json")
}

async fn connection(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tls = support::tls_connect(addr, ca).await;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .expect("http");
    tokio::spawn(conn);
    sender
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            line.strip_prefix(field).map(|rest| {
                rest.trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn drive() {
    let exe = std::env::current_exe().expect("exe");
    let mut child = Command::new(exe)
        .env("PODIDENTITY_BENCH_SERVER", "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start server process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("server line");
    let mut parts = line.split_whitespace();
    let port: u16 = parts.next().and_then(|p| p.parse().ok()).expect("port");
    let ca_hex = parts.next().expect("ca");
    let ca_der: Vec<u8> = (0..ca_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&ca_hex[i..i + 2], 16).expect("hex"))
        .collect();
    let ca = CertificateDer::from(ca_der);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..1000)
            .map(|i| Bytes::from(admission_review(i)))
            .collect(),
    );
    let idle_rss = status_kib(child.id(), "VmRSS:");

    println!(
        "pod identity webhook over HTTPS on loopback, caches: {SERVICE_ACCOUNTS} ServiceAccounts, {} bindings",
        binding_count()
    );
    println!(
        "request: AdmissionReview of a 3-container pod, {} bytes; mix 80% annotated / 10% predicted / 10% no role",
        bodies[0].len()
    );
    println!(
        "server RSS idle (caches loaded): {:.1} MiB",
        idle_rss as f64 / 1024.0
    );
    println!(
        "{:>11} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "concurrency", "requests", "seconds", "req/s", "p50", "p99", "p999", "max"
    );
    for concurrency in CONCURRENCY {
        let per_worker = REQUESTS_PER_LEVEL / concurrency;
        let deadline = Instant::now() + LEVEL_TIME_LIMIT;
        let started = Instant::now();
        let mut workers = Vec::new();
        for worker in 0..concurrency {
            let bodies = bodies.clone();
            let ca = ca.clone();
            workers.push(tokio::spawn(async move {
                let mut sender = connection(addr, &ca).await;
                let mut latencies = Vec::with_capacity(per_worker);
                for n in 0..per_worker {
                    if Instant::now() > deadline {
                        break;
                    }
                    let body = bodies[(worker * per_worker + n) % bodies.len()].clone();
                    let request = hyper::Request::post("/mutate")
                        .header("host", "127.0.0.1")
                        .header("content-type", "application/json")
                        .body(Full::new(body))
                        .expect("request");
                    let sent = Instant::now();
                    let response = sender.send_request(request).await.expect("response");
                    assert_eq!(response.status(), 200);
                    let _ = response.into_body().collect().await.expect("body");
                    latencies.push(sent.elapsed());
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for worker in workers {
            latencies.extend(worker.await.expect("worker"));
        }
        let seconds = started.elapsed().as_secs_f64();
        latencies.sort();
        let ms = |d: Duration| format!("{:.3}ms", d.as_secs_f64() * 1000.0);
        println!(
            "{concurrency:>11} {:>9} {seconds:>8.2} {:>10.0} {:>9} {:>9} {:>9} {:>9}",
            latencies.len(),
            latencies.len() as f64 / seconds,
            ms(percentile(&latencies, 50.0)),
            ms(percentile(&latencies, 99.0)),
            ms(percentile(&latencies, 99.9)),
            ms(latencies.last().copied().unwrap_or_default()),
        );
    }
    println!(
        "server RSS after load: {:.1} MiB (peak {:.1} MiB)",
        status_kib(child.id(), "VmRSS:") as f64 / 1024.0,
        status_kib(child.id(), "VmHWM:") as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
}
