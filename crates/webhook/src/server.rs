//! The HTTPS admission server (axum on rustls) and the plain-HTTP metrics and health
//! listener. The certificate and key are re-read when their files change: Kubernetes
//! Secret mounts swap a symlink, so contents are compared, not modification times.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};

use crate::admission::{ReviewResponse, review};
use crate::lookup::IdentityLookup;
use crate::metrics::Metrics;
use crate::mutation::MutationConfig;
use crate::validation::BindingAdmission;

/// Admission requests carry one pod; the API server caps objects at 1.5 MiB. Anything
/// much larger is not a pod admission.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Plain HTTP for `/metrics`, `/livez`, `/readyz`; `None` serves them only over HTTPS.
    pub metrics_listen: Option<SocketAddr>,
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
    pub cert_reload_interval: Duration,
}

/// Everything a request handler needs.
pub struct AppState {
    pub lookup: Arc<dyn IdentityLookup>,
    pub config: MutationConfig,
    pub metrics: Metrics,
    /// Admission of PodIdentityBindings (`/validate-bindings`); `None` serves no such route.
    pub bindings: Option<BindingAdmission>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot load the TLS certificate {cert} and key {key}: {source}")]
    Tls {
        cert: String,
        key: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the HTTPS server did not start listening")]
    NotListening,
}

pub fn router(state: Arc<AppState>) -> Router {
    health_routes(
        Router::new()
            .route("/mutate", post(mutate))
            .route("/validate-bindings", post(validate_bindings)),
    )
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
    .with_state(state)
}

fn health_routes(router: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    router
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn mutate(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let started = Instant::now();
    match review(&body, state.lookup.as_ref(), &state.config).await {
        Ok((reviewed, outcome)) => {
            state
                .metrics
                .record(outcome, started.elapsed().as_secs_f64());
            json_reply(&reviewed)
        }
        Err(err) => {
            state.metrics.record(
                crate::admission::Outcome::Error,
                started.elapsed().as_secs_f64(),
            );
            tracing::warn!(error = %err, "refused a request that is not an AdmissionReview");
            (StatusCode::BAD_REQUEST, err.to_string()).into_response()
        }
    }
}

async fn validate_bindings(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let Some(admission) = &state.bindings else {
        return (StatusCode::NOT_FOUND, "binding admission is not configured").into_response();
    };
    match admission.review(&body).await {
        Ok(reviewed) => json_reply(&reviewed),
        Err(err) => (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
    }
}

fn json_reply(reviewed: &ReviewResponse) -> Response {
    match serde_json::to_vec(reviewed) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.lookup.is_ready() {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced").into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// A started server: where it listens, and how to stop it.
pub struct RunningServer {
    pub https_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    handle: Handle<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    pub fn shutdown(self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(5)));
        for task in self.tasks {
            task.abort();
        }
    }

    /// Runs until the HTTPS server stops.
    pub async fn wait(mut self) {
        if !self.tasks.is_empty() {
            let server = self.tasks.remove(0);
            let _ = server.await;
        }
    }
}

/// Binds both listeners and starts serving; returns once the HTTPS port is listening.
pub async fn start(
    settings: &ServerSettings,
    state: Arc<AppState>,
) -> Result<RunningServer, ServerError> {
    // One crypto provider for the process: ring, as kube's client uses.
    #[allow(deprecated)] // ring: see Cargo.toml on rustls
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls_error = |source| ServerError::Tls {
        cert: settings.tls_cert_file.display().to_string(),
        key: settings.tls_key_file.display().to_string(),
        source,
    };
    let cert = tokio::fs::read(&settings.tls_cert_file)
        .await
        .map_err(tls_error)?;
    let key = tokio::fs::read(&settings.tls_key_file)
        .await
        .map_err(tls_error)?;
    let tls = RustlsConfig::from_pem(cert.clone(), key.clone())
        .await
        .map_err(tls_error)?;

    let handle = Handle::new();
    // TCP_NODELAY: an answer is one small write, and Nagle's algorithm would hold it back
    // until the client's delayed ACK (40 ms) whenever an earlier segment is unacknowledged;
    // over HTTP/2, where answers share one connection, that was most of them.
    let acceptor = RustlsAcceptor::new(tls.clone()).acceptor(NoDelayAcceptor::new());
    let https = axum_server::bind(settings.listen)
        .acceptor(acceptor)
        .handle(handle.clone())
        .serve(router(state.clone()).into_make_service());
    let mut tasks = vec![tokio::spawn(async move {
        if let Err(err) = https.await {
            tracing::error!(error = %err, "HTTPS server stopped");
        }
    })];
    let https_addr = handle.listening().await.ok_or(ServerError::NotListening)?;

    tasks.push(tokio::spawn(reload_certificates(
        settings.clone(),
        tls,
        cert,
        key,
    )));

    let mut metrics_addr = None;
    if let Some(addr) = settings.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Listen { addr, source })?;
        metrics_addr = listener.local_addr().ok();
        let app = health_routes(Router::new()).with_state(state);
        tasks.push(tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(error = %err, "metrics listener stopped");
            }
        }));
    }
    Ok(RunningServer {
        https_addr,
        metrics_addr,
        handle,
        tasks,
    })
}

/// Polls the certificate files and swaps them in when their contents change. A pair that
/// does not load (e.g. caught halfway through a rotation) keeps the old one serving.
async fn reload_certificates(
    settings: ServerSettings,
    tls: RustlsConfig,
    mut cert: Vec<u8>,
    mut key: Vec<u8>,
) {
    let mut ticker = tokio::time::interval(settings.cert_reload_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (Ok(new_cert), Ok(new_key)) = (
            tokio::fs::read(&settings.tls_cert_file).await,
            tokio::fs::read(&settings.tls_key_file).await,
        ) else {
            continue;
        };
        if new_cert == cert && new_key == key {
            continue;
        }
        match tls.reload_from_pem(new_cert.clone(), new_key.clone()).await {
            Ok(()) => {
                tracing::info!("reloaded the TLS certificate");
                (cert, key) = (new_cert, new_key);
            }
            Err(err) => {
                tracing::warn!(error = %err, "new TLS certificate does not load yet; keeping the old one")
            }
        }
    }
}
