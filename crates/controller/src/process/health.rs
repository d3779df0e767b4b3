//! The plain-HTTP listener: `/livez`, `/readyz` and `/metrics`. Readiness is a set of
//! named checks, each a flag its owner raises (a watch that has listed everything once;
//! a standby's lease loop that is running); `/readyz` says which are still down. The set
//! changes when a standby becomes the leader.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use kube::runtime::reflector::Store;

pub use super::check::{Check, Raise, check};
use crate::binding::conditions::is_ready;
use crate::caches::Watched;
use crate::process::metrics::{Metrics, ReadyLabel};

pub struct Health {
    checks: std::sync::RwLock<Vec<Check>>,
    metrics: Arc<Metrics>,
    /// For the bindings-by-Ready gauge, counted when scraped.
    bindings: Option<Store<Watched>>,
}

impl Health {
    pub fn new(
        checks: Vec<Check>,
        metrics: Arc<Metrics>,
        bindings: Option<Store<Watched>>,
    ) -> Self {
        Self {
            checks: std::sync::RwLock::new(checks),
            metrics,
            bindings,
        }
    }

    /// What readiness waits for from now on.
    pub fn set_checks(&self, checks: Vec<Check>) {
        if let Ok(mut current) = self.checks.write() {
            *current = checks;
        }
    }

    /// The checks not yet up.
    pub fn down(&self) -> Vec<&'static str> {
        match self.checks.read() {
            Ok(checks) => checks
                .iter()
                .filter(|c| !c.is_up())
                .map(Check::name)
                .collect(),
            Err(_) => vec!["health state"],
        }
    }

    fn encode_metrics(&self) -> String {
        if let Some(store) = &self.bindings {
            let state = store.state();
            let ready = state
                .iter()
                .filter(|b| b.0.as_ref().is_ok_and(|b| is_ready(b.status.as_ref())))
                .count();
            let gauge = |label: &'static str, n: usize| {
                self.metrics
                    .bindings
                    .get_or_create(&ReadyLabel { ready: label })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            };
            gauge("true", ready);
            gauge("false", state.len() - ready);
        }
        self.metrics.encode()
    }
}

pub async fn serve(addr: SocketAddr, health: Arc<Health>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(h): State<Arc<Health>>| async move {
                let down = h.down();
                if down.is_empty() {
                    (StatusCode::OK, "ok".to_string())
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("waiting for: {}", down.join(", ")),
                    )
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(h): State<Arc<Health>>| async move { h.encode_metrics().into_response() }),
        )
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
