//! Wires the controller together: the health listener, the optional leader lease, the
//! binding controller (bindings, the ServiceAccounts they name, and wake-ups from the
//! sweep and from sibling bindings), the short-form controller, and the drift loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use podidentity_api::PodIdentityBinding;

use crate::context::Context;
use crate::health::{self, Health};
use crate::leader::{Attempt, LeaseSettings, try_acquire};
use crate::metrics::{Metrics, ReasonLabel, ResultLabel};
use crate::watches::{owner_to_wake, raise_when_listed, wake_waiting_siblings};

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

/// Runs until a signal, a lost lease, or a failed listener.
pub async fn run(
    ctx: Context,
    metrics: Arc<Metrics>,
    settings: RunSettings,
) -> Result<(), RunError> {
    let client = ctx.client.clone();
    let (bindings_listed_raise, bindings_listed) = health::check("bindings watch");
    let (accounts_listed_raise, accounts_listed) = health::check("ServiceAccount watch");
    let (annotated_listed_raise, annotated_listed) =
        health::check("annotated ServiceAccount watch");
    let (store, writer) = reflector::store::<PodIdentityBinding>();
    let health = Arc::new(Health {
        checks: vec![
            bindings_listed.clone(),
            accounts_listed.clone(),
            annotated_listed.clone(),
        ],
        metrics: metrics.clone(),
        bindings: Some(store.clone()),
    });
    let listen = settings.health_listen;
    let health_task = tokio::spawn(health::serve(listen, health.clone()));
    let lease_task = match settings.lease.clone() {
        Some(lease) => Some(lead(client.clone(), lease).await),
        None => None,
    };

    let ctx = Arc::new(ctx.with_bindings_cache(store.clone()));
    let (triggers, triggered) =
        futures::channel::mpsc::unbounded::<ObjectRef<PodIdentityBinding>>();

    let bindings = raise_when_listed(
        wake_waiting_siblings(
            watcher(
                Api::<PodIdentityBinding>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff()
            .reflect(writer),
            ctx.clone(),
            triggers.clone(),
        ),
        bindings_listed_raise,
    )
    .applied_objects();
    // Metadata is all the mapping needs.
    let accounts = raise_when_listed(
        watcher(
            Api::<PartialObjectMeta<ServiceAccount>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
        accounts_listed_raise,
    )
    .touched_objects();
    let owners = store.clone();
    let binding_controller = Controller::for_stream(bindings, store.clone())
        .watches_stream(accounts, move |account| {
            owner_to_wake(
                &owners.state(),
                &account.namespace().unwrap_or_default(),
                &account.name_any(),
            )
        })
        .reconcile_on(triggered)
        .shutdown_on_signal()
        .run(
            {
                let metrics = metrics.clone();
                move |binding, ctx| {
                    let metrics = metrics.clone();
                    async move {
                        let started = Instant::now();
                        let result = crate::binding::reconcile(binding, ctx).await;
                        observe(&metrics, started, &result);
                        result
                    }
                }
            },
            crate::binding::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    let (annotated_store, annotated_writer) = reflector::store::<ServiceAccount>();
    let annotated = raise_when_listed(
        watcher(
            Api::<ServiceAccount>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(annotated_writer),
        annotated_listed_raise,
    )
    .applied_objects();
    let short_form_controller = Controller::for_stream(annotated, annotated_store)
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

    let sweep_task = tokio::spawn(crate::drift::sweep_loop(
        ctx.clone(),
        store,
        bindings_listed,
        triggers,
        metrics.clone(),
    ));

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
            Ok(Err(err)) => Err(RunError::Listen(listen, err)),
            _ => Ok(()),
        },
    };
    sweep_task.abort();
    outcome
}

fn observe(metrics: &Metrics, started: Instant, result: &Result<Action, crate::Error>) {
    metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    match result {
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
}
