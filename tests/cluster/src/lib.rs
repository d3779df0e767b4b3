//! The real kube-apiserver the workspace's tests run against: `with-control-plane` (the
//! end-to-end crate's binary, which scripts/test runs the tests under) starts it and puts
//! its admin kubeconfig in `PODIDENTITY_TEST_KUBECONFIG`. Each test makes a namespace of its
//! own there, so tests run side by side without meeting.
//!
//! A dedicated variable, not `KUBECONFIG`: the tests write, and must never write to the
//! cluster a developer's shell points at.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// The control plane's admin configuration; `None` (with one line saying why) when there is
/// none, which fails instead when PODIDENTITY_TEST_REQUIRE_KUBERNETES is set (scripts/test
/// sets it when the envtest binaries are there).
pub async fn config() -> Option<kube::Config> {
    #[allow(deprecated)] // ring: see Cargo.toml on rustls
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(path) = std::env::var_os("PODIDENTITY_TEST_KUBECONFIG") else {
        if std::env::var_os("PODIDENTITY_TEST_REQUIRE_KUBERNETES").is_some() {
            panic!(
                "PODIDENTITY_TEST_REQUIRE_KUBERNETES is set but PODIDENTITY_TEST_KUBECONFIG is not: \
                 run the tests through scripts/test, which starts a control plane"
            );
        }
        eprintln!("skipped: no Kubernetes API server; run scripts/test, which starts one");
        return None;
    };
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|err| panic!("PODIDENTITY_TEST_KUBECONFIG {}: {err}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|err| panic!("PODIDENTITY_TEST_KUBECONFIG {}: {err}", path.display()));
    Some(config)
}

/// An admin client of the control plane (see [`config`]).
pub async fn client() -> Option<kube::Client> {
    let config = config().await?;
    Some(kube::Client::try_from(config).unwrap_or_else(|err| panic!("test cluster client: {err}")))
}

/// A client that acts as `user` (the admin impersonating them, in no group but
/// `system:authenticated`): what it may do is what RBAC grants that user.
pub async fn client_as(user: &str) -> Option<kube::Client> {
    let mut config = config().await?;
    config.auth_info.impersonate = Some(user.to_string());
    config.auth_info.impersonate_groups = Some(vec!["system:authenticated".to_string()]);
    Some(kube::Client::try_from(config).unwrap_or_else(|err| panic!("test cluster client: {err}")))
}

/// What a client sent, one `METHOD path?query` line per request, in order.
#[derive(Clone, Default)]
pub struct Requests(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Requests {
    /// Records `request`; the line recorded.
    pub fn record<B>(&self, request: &http::Request<B>) -> String {
        let line = format!(
            "{} {}",
            request.method(),
            request
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or_default()
        );
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(line.clone());
        line
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many lines so far start with `method` (e.g. `GET`: reads, lists and watches).
    pub fn count(&self, method: &http::Method) -> usize {
        let prefix = format!("{method} ");
        self.lines()
            .iter()
            .filter(|l| l.starts_with(&prefix))
            .count()
    }
}

/// An admin client that records every request it sends, to assert what a path costs the
/// API server.
pub async fn client_recording() -> Option<(kube::Client, Requests)> {
    let config = config().await?;
    let requests = Requests::default();
    let seen = requests.clone();
    let recording =
        tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
            let _ = seen.record(&request);
            request
        });
    let client = kube::client::ClientBuilder::try_from(config)
        .unwrap_or_else(|err| panic!("test cluster client: {err}"))
        .with_layer(&recording)
        .build();
    Some((client, requests))
}

/// Makes a namespace no other test uses, `prefix-<n>`, and returns its name.
pub async fn namespace(client: &kube::Client, prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{prefix}-{}-{nanos}-{n}", std::process::id());
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name}
    }))
    .unwrap_or_else(|err| panic!("{err}"));
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|err| panic!("namespace {name}: {err}"));
    name
}
