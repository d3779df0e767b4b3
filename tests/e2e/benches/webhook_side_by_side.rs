//! `podidentity webhook` beside amazon-eks-pod-identity-webhook, in one run on one machine;
//! prints figures, asserts nothing.
//!
//! `PODIDENTITY_BENCH_PEER=/path/to/amazon-eks-pod-identity-webhook \
//!  scripts/with-moto cargo bench -p podidentity-e2e --bench webhook_side_by_side`
//! (KUBEBUILDER_ASSETS set as scripts/e2e sets it). Without PODIDENTITY_BENCH_PEER only
//! our rows are printed.
//!
//! Both webhooks watch the same real API server and the same ServiceAccounts, each pinned
//! to core 1 (one at a time under load, alternating), the load generator (this process,
//! one thread) pinned to core 0. The requests are AdmissionReviews captured from the API
//! server itself: a Deployment's pod of two containers, once for a ServiceAccount that
//! carries `eks.amazonaws.com/role-arn` (the peer's kind) and once for a ServiceAccount
//! covered only by a PodIdentityBinding (ours; the peer cannot serve it). HTTP/1.1 (one
//! connection per request in flight, as wrk) and HTTP/2 (one connection, as the API
//! server's client), at concurrency 8, 32 and 128.
//!
//! PODIDENTITY_BENCH_SECONDS (measured seconds per level, default 10; 3 s warm-up before),
//! PODIDENTITY_BENCH_PASSES (default 2), PODIDENTITY_BENCH_POPULATION (ServiceAccounts and
//! bindings in the cluster besides the two under test, default 500 each).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use kube::api::{Api, DeleteParams};
use podidentity_e2e::HarnessError;
use podidentity_e2e::bench::{self, cpu_seconds, status_mib};
use podidentity_e2e::capture::Capture;
use podidentity_e2e::chart::OPERATOR_NAMESPACE;
use podidentity_e2e::chart::RELEASE;
use podidentity_e2e::load::{self, Level, Measured, Protocol};
use podidentity_e2e::operator::Operator;
use podidentity_e2e::process::{Process, free_port};
use podidentity_e2e::scenario::Scenario;
use serde_json::{Value, json};

const CONCURRENCY: [usize; 3] = [8, 32, 128];
const WEBHOOK_CPU: usize = 1;
const LOAD_CPU: usize = 0;
const PEER_KIND: &str = "peer-kind";
const BINDING_KIND: &str = "binding-kind";

fn main() {
    let peer = std::env::var_os("PODIDENTITY_BENCH_PEER").map(PathBuf::from);
    // One thread: the load generator is this process, and it must fit on one core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    bench::run("webhook_side_by_side", runtime, |s| async move {
        if let Err(err) = side_by_side(&s, peer.as_deref()).await {
            eprintln!("webhook_side_by_side: {err}");
        }
    });
}

async fn apply_all(client: &kube::Client, objects: Vec<Value>) {
    let results = futures::future::join_all(
        objects
            .iter()
            .map(|o| podidentity_e2e::chart::apply(client, o)),
    )
    .await;
    if let Some(Err(err)) = results.into_iter().find(Result::is_err) {
        panic!("create the population: {err}");
    }
}

/// ServiceAccounts and bindings besides the two under test, so the caches are not trivial.
async fn populate(s: &Scenario, count: usize) {
    let mut namespaces = Vec::new();
    for i in 0..10 {
        namespaces.push(s.namespace(&format!("pop{i}")).await);
    }
    let mut objects = Vec::new();
    for i in 0..count {
        let namespace = &namespaces[i % namespaces.len()];
        objects.push(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": format!("annotated-{i}"), "namespace": namespace,
                "annotations": {"eks.amazonaws.com/role-arn": format!("arn:aws:iam::123456789012:role/pop-{i}")}},
        }));
        objects.push(binding(namespace, &format!("covered-{i}")));
    }
    for chunk in objects.chunks(200) {
        apply_all(&s.client(), chunk.to_vec()).await;
    }
}

fn binding(namespace: &str, service_account: &str) -> Value {
    json!({
        "apiVersion": "podidentity.io/v1alpha1", "kind": "PodIdentityBinding",
        "metadata": {"name": service_account, "namespace": namespace},
        "spec": {
            "serviceAccountName": service_account,
            "permissions": {"statements": [{"actions": ["s3:GetObject"],
                "resources": ["arn:aws:s3:::bench/*"]}]},
        },
    })
}

fn deployment(namespace: &str, service_account: &str) -> Value {
    let container = |name: &str, image: &str, port: u16| {
        json!({
            "name": name, "image": image, "imagePullPolicy": "IfNotPresent",
            "ports": [{"containerPort": port, "protocol": "TCP"}],
        })
    };
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": service_account, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": service_account}},
            "template": {
                "metadata": {"labels": {"app": service_account}},
                "spec": {
                    "serviceAccountName": service_account,
                    "containers": [
                        container("app", "registry.example/shop/app:1.4.2", 8080),
                        container("proxy", "registry.example/mesh/proxy:2.1.0", 15001),
                    ],
                },
            },
        },
    })
}

/// The AdmissionReviews the API server sends for a Deployment's pod of each kind.
async fn capture_requests(s: &Scenario, namespace: &str) -> Result<(Bytes, Bytes), HarnessError> {
    let plane = s
        .cluster
        .plane
        .as_ref()
        .ok_or_else(|| HarnessError::new("needs the harness's own control plane"))?;
    let capture = Capture::start(&plane.pki.serving(&[])?).await?;
    let name = format!("{}-bench-capture", s.tag);
    let configuration = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "capture.podidentity.io",
            "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Ignore",
            "clientConfig": {"url": format!("https://{}/mutate", capture.addr),
                "caBundle": base64_encode(&s.cluster.ca_pem)},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        }],
    });
    podidentity_e2e::chart::apply(&s.client(), &configuration).await?;
    // Give the API server a moment to load the new configuration.
    tokio::time::sleep(Duration::from_secs(2)).await;
    apply_all(
        &s.client(),
        vec![
            deployment(namespace, PEER_KIND),
            deployment(namespace, BINDING_KIND),
        ],
    )
    .await;
    let started = Instant::now();
    let find = |bodies: &[Bytes], account: &str| {
        let needle = format!("\"serviceAccountName\":\"{account}\"");
        bodies
            .iter()
            .find(|b| String::from_utf8_lossy(b).contains(&needle))
            .cloned()
    };
    let result = loop {
        let bodies = capture.bodies();
        if let (Some(peer), Some(ours)) = (find(&bodies, PEER_KIND), find(&bodies, BINDING_KIND)) {
            break Ok((peer, ours));
        }
        if started.elapsed() > Duration::from_secs(60) {
            break Err(HarnessError::new(
                "the API server sent no pod admissions within 60 s (is the replicaset controller running?)",
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let api: Api<kube::api::DynamicObject> = Api::all_with(
        s.client(),
        &kube::api::ApiResource::erase::<
            k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
        >(&()),
    );
    let _ = api.delete(&name, &DeleteParams::default()).await;
    result
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// One webhook under test.
struct Subject {
    label: &'static str,
    process_pid: u32,
    addr: std::net::SocketAddr,
}

/// What one level of one webhook showed.
struct Row {
    measured: Measured,
    cpu_share: f64,
    /// The load generator's own share of its core: near 100 % means it, not the webhook,
    /// set the pace.
    load_cpu_share: f64,
    rss: f64,
}

async fn measure(
    subject: &Subject,
    ca_pem: &str,
    body: &Bytes,
    level: &Level,
) -> Result<Row, HarnessError> {
    let cpu_before = cpu_seconds(subject.process_pid);
    let load_before = cpu_seconds(std::process::id());
    let wall = Instant::now();
    let measured = load::run(subject.addr, ca_pem, body.clone(), level).await?;
    let cpu = cpu_seconds(subject.process_pid) - cpu_before;
    let load_cpu = cpu_seconds(std::process::id()) - load_before;
    let seconds = wall.elapsed().as_secs_f64();
    Ok(Row {
        measured,
        cpu_share: cpu / seconds,
        load_cpu_share: load_cpu / seconds,
        rss: status_mib(subject.process_pid, "VmRSS:"),
    })
}

/// Sends `body` until the answer carries a patch (caches filled), or gives up.
async fn wait_mutating(subject: &Subject, ca_pem: &str, body: &Bytes) -> Result<(), HarnessError> {
    let started = Instant::now();
    let level = Level {
        protocol: Protocol::Http1,
        concurrency: 1,
        warm_up: Duration::ZERO,
        measure: Duration::from_millis(200),
    };
    loop {
        if let Ok(measured) = load::run(subject.addr, ca_pem, body.clone(), &level).await
            && measured.mutated > 0
            && measured.mutated == measured.requests
        {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            let answer = load::once(subject.addr, ca_pem, body.clone()).await;
            return Err(HarnessError::new(format!(
                "{} did not mutate the captured pod within 60 s; it answers {answer:?}",
                subject.label
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn start_peer(
    s: &Scenario,
    binary: &Path,
) -> Result<(Process, std::net::SocketAddr), HarnessError> {
    let plane = s
        .cluster
        .plane
        .as_ref()
        .ok_or_else(|| HarnessError::new("needs the harness's own control plane"))?;
    let serving = plane.pki.serving(&[])?;
    let write = |name: &str, text: &str| -> Result<PathBuf, HarnessError> {
        let path = s.dir.join(name);
        std::fs::write(&path, text).map_err(|e| HarnessError::new(format!("{name}: {e}")))?;
        Ok(path)
    };
    let cert = write("peer-tls.crt", &serving.cert_pem)?;
    let key = write("peer-tls.key", &serving.key_pem)?;
    let kubeconfig = s.dir.join("peer.kubeconfig");
    s.cluster
        .service_account_kubeconfig(
            OPERATOR_NAMESPACE,
            &format!("{RELEASE}-webhook"),
            &kubeconfig,
        )
        .await?;
    let port = free_port()?;
    let args: Vec<String> = [
        "--in-cluster=false".to_string(),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--tls-cert={}", cert.display()),
        format!("--tls-key={}", key.display()),
        format!("--port={port}"),
        format!("--metrics-port={}", free_port()?),
        "--annotation-prefix=eks.amazonaws.com".to_string(),
        "--token-audience=sts.amazonaws.com".to_string(),
        "--logtostderr".to_string(),
    ]
    .to_vec();
    let process = Process::start_on(
        "peer-webhook",
        binary,
        &args,
        &[],
        s.dir.join("peer-webhook.log"),
        Some(WEBHOOK_CPU),
    )?;
    let addr = format!("127.0.0.1:{port}")
        .parse()
        .map_err(|e| HarnessError::new(format!("{e}")))?;
    Ok((process, addr))
}

fn pin_this_process(cpu: usize) {
    let pinned = std::process::Command::new("taskset")
        .args([
            "-a",
            "-pc",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !pinned {
        eprintln!("warning: could not pin the load generator to core {cpu} (taskset)");
    }
}

async fn side_by_side(s: &Scenario, peer_binary: Option<&Path>) -> Result<(), HarnessError> {
    let seconds = bench::env_number("PODIDENTITY_BENCH_SECONDS", 10);
    let passes = bench::env_number("PODIDENTITY_BENCH_PASSES", 2);
    let population = bench::env_number("PODIDENTITY_BENCH_POPULATION", 500) as usize;
    let rendered = s.install(json!({})).await;
    let namespace = s.namespace("load").await;
    populate(s, population).await;
    apply_all(
        &s.client(),
        vec![
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": PEER_KIND, "namespace": namespace,
                    "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/bench-peer-kind"}}}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": BINDING_KIND, "namespace": namespace}}),
            binding(&namespace, BINDING_KIND),
        ],
    )
    .await;
    let (peer_body, binding_body) = capture_requests(s, &namespace).await?;
    println!(
        "captured AdmissionReviews: {} bytes (peer's kind), {} bytes (binding-covered)",
        peer_body.len(),
        binding_body.len()
    );

    let ours_process = Operator::webhook_on(
        &s.cluster,
        &rendered,
        &s.dir,
        "bench-webhook",
        Some(WEBHOOK_CPU),
    )
    .await?;
    let ours = Subject {
        label: "ours",
        process_pid: ours_process.process.pid(),
        addr: ours_process
            .https
            .ok_or_else(|| HarnessError::new("our webhook serves no HTTPS"))?,
    };
    let peer_started = match peer_binary {
        Some(binary) => Some(start_peer(s, binary).await?),
        None => None,
    };
    let peer = peer_started.as_ref().map(|(process, addr)| Subject {
        label: "Go peer",
        process_pid: process.pid(),
        addr: *addr,
    });
    let ca = s.cluster.ca_pem.clone();
    wait_mutating(&ours, &ca, &peer_body).await?;
    wait_mutating(&ours, &ca, &binding_body).await?;
    if let Some(peer) = &peer
        && let Err(err) = wait_mutating(peer, &ca, &peer_body).await
    {
        let log = podidentity_e2e::process::tail(&s.dir.join("peer-webhook.log"), 30);
        return Err(HarnessError::new(format!("{err}; its log ends:\n{log}")));
    }
    pin_this_process(LOAD_CPU);
    println!(
        "webhooks pinned to core {WEBHOOK_CPU}, load generator to core {LOAD_CPU}; \
         {seconds} s measured per level after 3 s warm-up, {passes} passes, \
         {population} ServiceAccounts and {population} bindings besides"
    );
    println!(
        "| protocol | concurrency | request | webhook | rps | p50 ms | p99 ms | p99.9 ms | max ms | webhook CPU | load CPU | RSS MiB | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut summary = Vec::new();
    for protocol in [Protocol::Http1, Protocol::Http2] {
        for concurrency in CONCURRENCY {
            let level = Level {
                protocol,
                concurrency,
                warm_up: Duration::from_secs(3),
                measure: Duration::from_secs(seconds),
            };
            let mut rows: Vec<(&str, &str, Row)> = Vec::new();
            for _ in 0..passes {
                let mut runs: Vec<(&Subject, &str, &Bytes)> = Vec::new();
                if let Some(peer) = &peer {
                    runs.push((peer, "peer's kind", &peer_body));
                }
                runs.push((&ours, "peer's kind", &peer_body));
                runs.push((&ours, "binding", &binding_body));
                for (subject, request, body) in runs {
                    match measure(subject, &ca, body, &level).await {
                        Ok(row) => {
                            print_row(protocol, concurrency, request, subject.label, &row);
                            rows.push((subject.label, request, row));
                        }
                        Err(err) => println!(
                            "| {} | {concurrency} | {request} | {} | failed: {err} |",
                            protocol.label(),
                            subject.label
                        ),
                    }
                }
            }
            summary.push((protocol, concurrency, rows));
        }
    }
    print_ratios(&summary);
    drop(ours_process);
    drop(peer_started);
    Ok(())
}

fn print_row(protocol: Protocol, concurrency: usize, request: &str, label: &str, row: &Row) {
    let m = &row.measured;
    println!(
        "| {} | {concurrency} | {request} | {label} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {:.0}% | {:.0}% | {:.1} | {} |",
        protocol.label(),
        m.rps(),
        m.percentile_ms(0.50),
        m.percentile_ms(0.99),
        m.percentile_ms(0.999),
        m.max_ms(),
        row.cpu_share * 100.0,
        row.load_cpu_share * 100.0,
        row.rss,
        m.errors,
    );
}

type Summary<'a> = Vec<(Protocol, usize, Vec<(&'a str, &'a str, Row)>)>;

/// Per level: the best pass of each (throughput) and the worst tail, and ours ÷ the peer's.
fn print_ratios(summary: &Summary<'_>) {
    println!();
    println!(
        "| protocol | concurrency | Go peer rps | ours rps (peer's kind) | ratio | ours rps (binding) | ratio | Go p99 / p99.9 ms | ours p99 / p99.9 ms (peer's kind) | ours p99 / p99.9 ms (binding) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (protocol, concurrency, rows) in summary {
        let pick = |label: &str, request: &str| -> Vec<&Row> {
            rows.iter()
                .filter(|(l, r, _)| *l == label && *r == request)
                .map(|(_, _, row)| row)
                .collect()
        };
        let (peer, ours, binding) = (
            pick("Go peer", "peer's kind"),
            pick("ours", "peer's kind"),
            pick("ours", "binding"),
        );
        let rps = |rows: &[&Row]| -> f64 {
            rows.iter().map(|r| r.measured.rps()).sum::<f64>() / rows.len().max(1) as f64
        };
        let tail = |rows: &[&Row]| -> String {
            let worst = |q: f64| {
                rows.iter()
                    .map(|r| r.measured.percentile_ms(q))
                    .fold(0.0, f64::max)
            };
            format!("{:.2} / {:.2}", worst(0.99), worst(0.999))
        };
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}", a / b)
            } else {
                "–".into()
            }
        };
        println!(
            "| {} | {concurrency} | {:.0} | {:.0} | {} | {:.0} | {} | {} | {} | {} |",
            protocol.label(),
            rps(&peer),
            rps(&ours),
            ratio(rps(&ours), rps(&peer)),
            rps(&binding),
            ratio(rps(&binding), rps(&peer)),
            if peer.is_empty() {
                "–".into()
            } else {
                tail(&peer)
            },
            tail(&ours),
            tail(&binding),
        );
    }
}
