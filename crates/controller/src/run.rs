//! Wires the controller together: start-up checks, the optional leader lease, the binding
//! and ServiceAccount controllers, the drift sweep loop, and the health/metrics listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use podidentity_api::PodIdentityBinding;
use podidentity_iam::{BindingRef, desired_state};

use crate::context::{Context, jitter};
use crate::leader::{Attempt, LeaseSettings, try_acquire};
use crate::metrics::{Metrics, ReadyLabel, ReasonLabel, ResultLabel};
use crate::status::is_ready;
use crate::sweep::sweep;

#[derive(Clone, Debug)]
pub struct RunSettings {
    pub health_listen: SocketAddr,
    pub lease: Option<LeaseSettings>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("lost the leader lease {0}; exiting so another replica can take over")]
    LostLease(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

struct Health {
    ready: AtomicBool,
    metrics: Arc<Metrics>,
}

async fn serve_health(addr: SocketAddr, health: Arc<Health>) -> Result<(), RunError> {
    let app = Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(h): State<Arc<Health>>| async move {
                if h.ready.load(Ordering::Acquire) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "watches not synced")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(h): State<Arc<Health>>| async move { h.metrics.encode().into_response() }),
        )
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| RunError::Listen(addr, e))?;
    axum::serve(listener, app)
        .await
        .map_err(|e| RunError::Listen(addr, e))
}

/// Holds the lease: returns once acquired; the returned task ends with an error when it
/// is lost.
async fn lead(client: kube::Client, lease: LeaseSettings) -> tokio::task::JoinHandle<RunError> {
    loop {
        match try_acquire(&client, &lease).await {
            Ok(Attempt::Held) => break,
            Ok(Attempt::HeldBy(holder)) => tracing::info!(%holder, "waiting for the leader lease"),
            Err(err) => tracing::warn!(error = %err, "leader lease attempt failed"),
        }
        tokio::time::sleep(lease.duration / 3).await;
    }
    tracing::info!(lease = %lease.name, "acquired the leader lease");
    tokio::spawn(async move {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(lease.duration / 3).await;
            match try_acquire(&client, &lease).await {
                Ok(Attempt::Held) => last_renewed = Instant::now(),
                Ok(Attempt::HeldBy(holder)) => {
                    return RunError::LostLease(format!("{} (now held by {holder})", lease.name));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not renew the leader lease");
                    if last_renewed.elapsed() >= lease.duration {
                        return RunError::LostLease(lease.name.clone());
                    }
                }
            }
        }
    })
}

/// The bindings a ServiceAccount change must wake: those in its namespace that name it.
pub fn bindings_naming(
    bindings: &[Arc<PodIdentityBinding>],
    sa: &ServiceAccount,
) -> Vec<ObjectRef<PodIdentityBinding>> {
    let namespace = sa.namespace();
    let name = sa.name_any();
    bindings
        .iter()
        .filter(|b| b.namespace() == namespace && b.spec.service_account_name == name)
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

/// One drift sweep over every binding in the store.
pub async fn sweep_once(ctx: &Context, store: &Store<PodIdentityBinding>, metrics: &Metrics) {
    let bindings = store.state();
    let mut desired = Vec::new();
    let mut by_role = std::collections::BTreeMap::new();
    let (mut ready, mut not_ready) = (0i64, 0i64);
    for binding in &bindings {
        if is_ready(binding.status.as_ref()) {
            ready += 1
        } else {
            not_ready += 1
        }
        // Only roles the controller made (in status) and whose spec still validates.
        if binding
            .status
            .as_ref()
            .and_then(|s| s.role_id.as_ref())
            .is_none()
            || binding.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let (namespace, name) = (binding.namespace().unwrap_or_default(), binding.name_any());
        if let Ok(state) = desired_state(
            BindingRef {
                namespace: &namespace,
                name: &name,
            },
            &binding.spec,
            &ctx.config,
            &ctx.guardrails,
        ) {
            by_role.insert(state.role.name.clone(), binding.clone());
            desired.push(state.role);
        }
    }
    metrics
        .bindings
        .get_or_create(&ReadyLabel { ready: "true" })
        .set(ready);
    metrics
        .bindings
        .get_or_create(&ReadyLabel { ready: "false" })
        .set(not_ready);
    let report = match sweep(ctx.iam.as_ref(), &desired, &ctx.config.role_path()).await {
        Ok(report) => report,
        Err(err) => {
            tracing::warn!(error = %err, "drift sweep failed; trying again next interval");
            return;
        }
    };
    tracing::info!(
        pages = report.pages,
        roles = report.roles_read,
        corrected = report.corrected.len(),
        missing = report.missing.len(),
        "drift sweep done"
    );
    for (role, changes) in &report.corrected {
        metrics.drift_corrections.inc();
        if let Some(binding) = by_role.get(role) {
            let what: Vec<&str> = changes.iter().map(|c| c.describe()).collect();
            ctx.event(
                binding,
                EventType::Normal,
                "DriftCorrected",
                format!(
                    "IAM role {role} was changed outside; put back: {}",
                    what.join(", ")
                ),
            )
            .await;
        }
    }
    // A role deleted outside: forget its id so the binding's next pass creates it again.
    for role in &report.missing {
        if let Some(binding) = by_role.get(role) {
            let api: Api<PodIdentityBinding> =
                Api::namespaced(ctx.client.clone(), &binding.namespace().unwrap_or_default());
            let patch = serde_json::json!({"status": {"roleId": null}});
            if let Err(err) = api
                .patch_status(
                    &binding.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                tracing::warn!(error = %err, %role, "could not mark a deleted role for re-creation");
            }
            ctx.event(
                binding,
                EventType::Warning,
                "DriftCorrected",
                format!("IAM role {role} was deleted outside; creating it again"),
            )
            .await;
        }
    }
}

/// Runs until a signal, a lost lease, or a failed listener.
pub async fn run(
    ctx: Arc<Context>,
    metrics: Arc<Metrics>,
    settings: RunSettings,
) -> Result<(), RunError> {
    let health = Arc::new(Health {
        ready: AtomicBool::new(false),
        metrics: metrics.clone(),
    });
    let health_task = tokio::spawn(serve_health(settings.health_listen, health.clone()));
    let lease_task = match settings.lease.clone() {
        Some(lease) => Some(lead(ctx.client.clone(), lease).await),
        None => None,
    };

    let bindings: Api<PodIdentityBinding> = Api::all(ctx.client.clone());
    let service_accounts: Api<ServiceAccount> = Api::all(ctx.client.clone());
    let controller = Controller::new(bindings, watcher::Config::default());
    let store = controller.store();
    let mapper_store = store.clone();
    let binding_controller = controller
        .watches(
            service_accounts.clone(),
            watcher::Config::default(),
            move |sa| {
                let namespace = sa.namespace();
                let name = sa.name_any();
                mapper_store
                    .state()
                    .into_iter()
                    .filter(|b| b.namespace() == namespace && b.spec.service_account_name == name)
                    .map(|b| ObjectRef::from_obj(b.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(
            {
                let metrics = metrics.clone();
                move |binding, ctx| {
                    let metrics = metrics.clone();
                    async move {
                        let started = Instant::now();
                        let result = crate::binding::reconcile(binding, ctx).await;
                        metrics
                            .reconcile_duration
                            .observe(started.elapsed().as_secs_f64());
                        match &result {
                            Ok(_) => metrics
                                .reconciles
                                .get_or_create(&ResultLabel { result: "ok" })
                                .inc(),
                            Err(err) => {
                                metrics
                                    .reconciles
                                    .get_or_create(&ResultLabel { result: "error" })
                                    .inc();
                                metrics
                                    .errors
                                    .get_or_create(&ReasonLabel {
                                        reason: err.reason(),
                                    })
                                    .inc()
                            }
                        };
                        result
                    }
                }
            },
            crate::binding::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let short_form_controller = Controller::new(service_accounts, watcher::Config::default())
        .shutdown_on_signal()
        .run(
            crate::short_form::reconcile,
            |_sa, err, _ctx| {
                tracing::warn!(error = %err, "short-form reconcile failed");
                Action::requeue(Duration::from_secs(30))
            },
            ctx.clone(),
        )
        .for_each(|_| async {});

    let ready_store = store.clone();
    let ready_flag = health.clone();
    tokio::spawn(async move {
        if ready_store.wait_until_ready().await.is_ok() {
            ready_flag.ready.store(true, Ordering::Release);
        }
    });
    let sweep_ctx = ctx.clone();
    let sweep_metrics = metrics.clone();
    let sweep_store = store.clone();
    let sweep_task = tokio::spawn(async move {
        let interval = sweep_ctx
            .config
            .drift_interval()
            .unwrap_or(Duration::from_secs(600));
        if sweep_store.wait_until_ready().await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(interval + jitter(interval / 10)).await;
            sweep_once(&sweep_ctx, &sweep_store, &sweep_metrics).await;
        }
    });

    let lost = async {
        match lease_task {
            Some(task) => match task.await {
                Ok(err) => err,
                Err(join) => RunError::LostLease(join.to_string()),
            },
            None => futures::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        () = binding_controller => Ok(()),
        () = short_form_controller => Ok(()),
        err = lost => Err(err),
        result = health_task => match result {
            Ok(Err(err)) => Err(err),
            _ => Ok(()),
        },
    };
    sweep_task.abort();
    outcome
}
