//! The webhook over real HTTPS on loopback, with a certificate from a throwaway CA.

mod support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use podidentity_webhook::admission::Outcome;
use podidentity_webhook::metrics::Metrics;
use podidentity_webhook::mutation::MutationConfig;
use podidentity_webhook::server::{AppState, RunningServer, ServerSettings, start};
use serde_json::{Value, json};
use support::{FixedLookup, TempDir, TestPki, https, peer_certificate};

const ARN: &str = "arn:aws:iam::111122223333:role/orders";

struct Fixture {
    pki: TestPki,
    dir: TempDir,
    server: RunningServer,
    state: Arc<AppState>,
}

async fn serve(lookup: FixedLookup) -> Fixture {
    let pki = TestPki::new();
    let dir = TempDir::new("https");
    let leaf = pki.leaf();
    let settings = ServerSettings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_listen: Some("127.0.0.1:0".parse().expect("addr")),
        tls_cert_file: dir.write("tls.crt", &leaf.cert_pem),
        tls_key_file: dir.write("tls.key", &leaf.key_pem),
        cert_reload_interval: Duration::from_millis(50),
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
    let server = start(&settings, state.clone())
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    Fixture {
        pki,
        dir,
        server,
        state,
    }
}

fn pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "orders-", "annotations": {"eks.amazonaws.com/skip-containers": "log"}},
           "spec": {"serviceAccountName": "orders",
                    "containers": [{"name": "app", "image": "app:1", "env": [{"name": "LOG_LEVEL", "value": "info"}]},
                                   {"name": "log", "image": "log:1"}]}})
}

fn review(uid: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                    "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "shop", "operation": "CREATE",
                    "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                    "object": object, "dryRun": false}
    }))
    .expect("json")
}

#[tokio::test]
async fn a_full_admission_round_trip_yields_the_expected_pod() {
    let f = serve(FixedLookup::with(
        "shop",
        "orders",
        &[("eks.amazonaws.com/role-arn", ARN)],
    ))
    .await;
    let (status, body) = https(
        f.server.https_addr,
        &f.pki.ca_der(),
        "POST",
        "/mutate",
        review("uid-1", pod()),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).expect("AdmissionReview JSON");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    let response = &answer["response"];
    assert_eq!(response["uid"], "uid-1");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let patch_bytes = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap_or_default())
        .expect("base64 patch");
    let patch: json_patch::Patch = serde_json::from_slice(&patch_bytes).expect("JSON patch");
    let mut patched = pod();
    json_patch::patch(&mut patched, &patch).expect("patch applies to the pod");

    let mut expected = pod();
    expected["spec"]["containers"][0]["env"] = json!([
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "AWS_DEFAULT_REGION", "value": "eu-west-1"},
        {"name": "AWS_REGION", "value": "eu-west-1"},
        {"name": "AWS_ROLE_ARN", "value": ARN},
        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}
    ]);
    expected["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "aws-iam-token", "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount", "readOnly": true}
    ]);
    expected["spec"]["volumes"] = json!([
        {"name": "aws-iam-token", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}}
    ]);
    assert_eq!(patched, expected);
    assert_eq!(f.state.metrics.admissions(Outcome::Mutated), 1);
    f.server.shutdown();
}

#[tokio::test]
async fn a_pod_without_a_role_is_admitted_without_a_patch() {
    let f = serve(FixedLookup::with("shop", "orders", &[])).await;
    let (status, body) = https(
        f.server.https_addr,
        &f.pki.ca_der(),
        "POST",
        "/mutate",
        review("uid-2", pod()),
    )
    .await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer}");
    assert_eq!(f.state.metrics.admissions(Outcome::NoIdentity), 1);
    f.server.shutdown();
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused_without_harm() {
    let f = serve(FixedLookup::with(
        "shop",
        "orders",
        &[("eks.amazonaws.com/role-arn", ARN)],
    ))
    .await;
    let addr = f.server.https_addr;
    let ca = f.pki.ca_der();

    let (status, body) = https(addr, &ca, "POST", "/mutate", b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("not an AdmissionReview"));

    let (status, _) = https(addr, &ca, "POST", "/mutate", vec![b' '; 4 * 1024 * 1024]).await;
    assert_eq!(
        status, 413,
        "bodies over the limit are refused before parsing"
    );

    // An AdmissionReview without a request: an AdmissionReview error, not a crash.
    let (status, body) = https(
        addr,
        &ca,
        "POST",
        "/mutate",
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 400);

    // A pod that cannot be read is admitted unchanged, with a warning, and counted.
    let broken = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": "not a list"}});
    let (status, body) = https(addr, &ca, "POST", "/mutate", review("uid-3", broken)).await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());
    assert!(
        answer["response"]["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("cannot be read"),
        "{answer}"
    );

    // The server is still serving.
    let (status, _) = https(addr, &ca, "POST", "/mutate", review("uid-4", pod())).await;
    assert_eq!(status, 200);
    assert_eq!(f.state.metrics.admissions(Outcome::Error), 3);
    assert_eq!(f.state.metrics.admissions(Outcome::Mutated), 1);
    f.server.shutdown();
}

#[tokio::test]
async fn a_failing_lookup_admits_the_pod_unchanged() {
    let f = serve(FixedLookup {
        fail: true,
        ready: true,
        ..FixedLookup::default()
    })
    .await;
    let (status, body) = https(
        f.server.https_addr,
        &f.pki.ca_der(),
        "POST",
        "/mutate",
        review("uid-5", pod()),
    )
    .await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());
    assert!(
        answer["response"]["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{answer}"
    );
    f.server.shutdown();
}

#[tokio::test]
async fn the_certificate_rotates_without_a_restart() {
    let f = serve(FixedLookup::with(
        "shop",
        "orders",
        &[("eks.amazonaws.com/role-arn", ARN)],
    ))
    .await;
    let ca = f.pki.ca_der();
    let addr = f.server.https_addr;
    let before = peer_certificate(addr, &ca).await;

    // Rotate the way a Secret mount does: new files, then swap a symlink-like rename.
    let next = f.pki.leaf();
    let staged = f.dir.write("tls.crt.new", &next.cert_pem);
    let staged_key = f.dir.write("tls.key.new", &next.key_pem);
    std::fs::rename(&staged_key, f.dir.0.join("tls.key")).expect("swap key");
    std::fs::rename(&staged, f.dir.0.join("tls.crt")).expect("swap cert");

    let mut after = before.clone();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = peer_certificate(addr, &ca).await;
        if after != before {
            break;
        }
    }
    assert_ne!(after, before, "the new certificate was never served");
    assert_eq!(
        after, next.der,
        "the server serves exactly the rotated certificate"
    );
    let (status, _) = https(addr, &ca, "POST", "/mutate", review("uid-6", pod())).await;
    assert_eq!(status, 200, "admissions keep working after rotation");
    f.server.shutdown();
}

#[tokio::test]
async fn health_and_metrics_answer_on_the_plain_listener() {
    let mut lookup = FixedLookup::with("shop", "orders", &[("eks.amazonaws.com/role-arn", ARN)]);
    lookup.ready = false;
    let f = serve(lookup).await;
    let ca = f.pki.ca_der();
    https(
        f.server.https_addr,
        &ca,
        "POST",
        "/mutate",
        review("uid-7", pod()),
    )
    .await;
    let metrics_addr = f.server.metrics_addr.expect("metrics listener");
    let get = |path: &'static str| async move {
        let mut stream = tokio::net::TcpStream::connect(metrics_addr)
            .await
            .expect("connect");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("write");
        let mut text = String::new();
        stream.read_to_string(&mut text).await.expect("read");
        text
    };
    assert!(get("/livez").await.starts_with("HTTP/1.1 200"));
    assert!(
        get("/readyz").await.starts_with("HTTP/1.1 503"),
        "not ready until caches sync"
    );
    let metrics = get("/metrics").await;
    assert!(
        metrics.contains("podidentity_webhook_admissions_total{outcome=\"mutated\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("podidentity_webhook_admission_duration_seconds_count 1"),
        "{metrics}"
    );
    f.server.shutdown();
}
