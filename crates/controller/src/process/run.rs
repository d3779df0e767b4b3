//! Wires the controller together: the health listener, the optional leader lease, the
//! binding controller (bindings, the ServiceAccounts they name, and wake-ups from the
//! sweep, from sibling bindings and from policy and namespace-label changes), the policy
//! status controller, the short-form controller, the CredentialsRequest controller, and
//! the drift loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use podidentity_api::PodIdentityBinding;

use crate::binding::Reconciler;
use crate::binding::memory::Memory;
use crate::binding::short_form::AccountMeta;
use crate::caches::Watched;
use crate::context::Context;
use crate::oidc::OidcKeeper;
use crate::policy::view::{NamespaceMeta, WatchedPolicy};
use crate::policy::watches::{
    at_most_every, note_binding_changes, wake_on_label_changes, wake_on_policy_changes,
};
use crate::process::health::{self, Health};
use crate::process::leader::{Elector, Lost};
use crate::process::metrics::{Metrics, ReasonLabel, ResultLabel};
use crate::process::watches::{raise_when_listed, wake_owners, wake_waiting_siblings};

pub struct RunSettings {
    pub health_listen: SocketAddr,
    /// With leader election: the elector (on an unfenced client) for the shared Lease.
    pub election: Option<Elector>,
    /// With `oidc.manage`: the provider and published keys' keeper, run by the leader.
    pub oidc: Option<OidcKeeper>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("lost the leader lease ({0}); exiting so this replica starts again as a standby")]
    LostLease(Lost),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the OIDC keeper stopped: {0}")]
    OidcKeeperEnded(String),
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
}

/// Passes in flight at once, per controller. Unbounded, a start over 10,000 bindings began
/// 10,000 passes together, each holding its request and buffers; IAM's budget, not this,
/// limits how fast roles are made (32 passes wait on 50 calls a second with room to spare).
const RECONCILE_CONCURRENCY: u16 = 32;

/// How often, at most, the policies' status is worked out again while bindings change: a
/// policy over 10,000 bindings takes about 170 ms to survey (benches/policy_cost.rs), and
/// the controller runs on one thread.
const POLICY_STATUS_PERIOD: Duration = Duration::from_secs(10);

/// Bindings per page of the watch's first list. Each page arrives whole, managedFields
/// and all, before the cache trims it: at 500 (kube's default) a page held more memory
/// than a thousand trimmed bindings.
const BINDINGS_PAGE: u32 = 100;

/// Runs until a signal, a lost lease, or a failed listener. With leader election the
/// replica is a standby (ready, reconciling nothing) until it holds the lease.
pub async fn run(
    ctx: Context,
    metrics: Arc<Metrics>,
    mut settings: RunSettings,
) -> Result<(), RunError> {
    let client = ctx.client.clone();
    let (store, writer) = reflector::store::<Watched>();
    let health = Arc::new(Health::new(
        Vec::new(),
        metrics.clone(),
        Some(store.clone()),
    ));
    let listen = settings.health_listen;
    let mut health_task = tokio::spawn(health::serve(listen, health.clone()));

    if let Some(elector) = settings.election.as_mut() {
        // A standby is healthy and ready; it just does not reconcile.
        let (standing_by, standby) = health::check("leader election");
        standing_by.raise();
        health.set_checks(vec![standby]);
        tracing::info!(lease = %elector.settings().name, holder = %elector.settings().holder, "standing by for the leader lease");
        tokio::select! {
            () = elector.acquire() => {}
            () = shutdown_signal() => return Ok(()),
        }
        tracing::info!(lease = %elector.settings().name, "leading");
    }
    // Ends with the process (a replica that loses the lease exits); should it end first
    // (a panic), the process ends with it rather than go on without it.
    let mut oidc_task = match settings.oidc.take() {
        Some(keeper) => tokio::spawn(keeper.keep()),
        None => tokio::spawn(futures::future::pending()),
    };

    let (bindings_listed_raise, bindings_listed) = health::check("bindings watch");
    let (accounts_listed_raise, accounts_listed) = health::check("ServiceAccount watch");
    let (secrets_listed_raise, secrets_listed) = health::check("credentials Secret watch");
    let (policies_listed_raise, mut policies_listed) = health::check("PodIdentityPolicy watch");
    let (namespaces_listed_raise, mut namespaces_listed) = health::check("Namespace watch");
    health.set_checks(vec![
        bindings_listed.clone(),
        accounts_listed,
        secrets_listed.clone(),
        policies_listed.clone(),
        namespaces_listed.clone(),
    ]);
    let (secret_store, secret_writer) = reflector::store::<Secret>();
    let (policy_store, policy_writer) = reflector::store::<WatchedPolicy>();
    let (namespace_store, namespace_writer) = reflector::store::<NamespaceMeta>();
    let ctx = Arc::new(
        ctx.with_bindings_cache(store.clone())
            .with_secrets_cache(secret_store, secrets_listed)
            .with_policy_caches(policy_store.clone(), namespace_store.clone()),
    );
    let memory = Arc::new(Memory::default());
    let (triggers, triggered) = futures::channel::mpsc::unbounded::<ObjectRef<Watched>>();
    let (status_asks, status_asked) = futures::channel::mpsc::unbounded::<()>();
    let bindings = raise_when_listed(
        note_binding_changes(
            wake_waiting_siblings(
                watcher(
                    Api::<Watched>::all(client.clone()),
                    watcher::Config::default().page_size(BINDINGS_PAGE),
                )
                .modify(slim)
                .default_backoff()
                .reflect(writer),
                memory.clone(),
                triggers.clone(),
            ),
            status_asks.clone(),
        ),
        bindings_listed_raise,
    )
    .applied_objects();
    // Namespaces (metadata only, labels kept): their labels decide which policies govern
    // them. Polled by the task below, whatever else runs.
    let namespaces_task = tokio::spawn(
        raise_when_listed(
            wake_on_label_changes(
                watcher(
                    Api::<NamespaceMeta>::all(client.clone()),
                    watcher::Config::default(),
                )
                .modify(|ns: &mut NamespaceMeta| {
                    ns.metadata.managed_fields = None;
                    ns.metadata.annotations = None;
                })
                .default_backoff()
                .reflect(namespace_writer),
                store.clone(),
                triggers.clone(),
                status_asks.clone(),
            ),
            namespaces_listed_raise,
        )
        .for_each(|_| async {}),
    );
    let policies = raise_when_listed(
        wake_on_policy_changes(
            watcher(
                Api::<WatchedPolicy>::all(client.clone()),
                watcher::Config::default(),
            )
            .modify(|p: &mut WatchedPolicy| match &mut p.0 {
                Ok(policy) => policy.metadata.managed_fields = None,
                Err(invalid) => invalid.metadata.managed_fields = None,
            })
            .default_backoff()
            .reflect(policy_writer),
            namespace_store,
            store.clone(),
            triggers.clone(),
            status_asks,
        ),
        policies_listed_raise,
    )
    .applied_objects();
    // Only the operator's own Secrets (by label), without managedFields.
    let secrets = raise_when_listed(
        watcher(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().labels(&crate::caches::selector()),
        )
        .modify(|secret| secret.metadata.managed_fields = None)
        .default_backoff()
        .reflect(secret_writer),
        secrets_listed_raise,
    )
    .touched_objects();
    let policy_controller = Controller::for_stream(policies, policy_store)
        .reconcile_all_on(at_most_every(status_asked, POLICY_STATUS_PERIOD))
        .shutdown_on_signal()
        .run(
            crate::policy::report::reconcile,
            crate::policy::report::error_policy,
            Arc::new(crate::policy::report::Sources {
                ctx: ctx.clone(),
                bindings: store.clone(),
            }),
        )
        .for_each(|_| async {});
    let binding_controller = Controller::for_stream(bindings, store.clone())
        .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .watches_stream(secrets, |secret| owning_binding(&secret))
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
            Arc::new(Reconciler {
                ctx: ctx.clone(),
                memory: memory.clone(),
            }),
        )
        .for_each(|_| async {});
    // CredentialsRequests are judged by the same guardrails, so they wait for them too.
    let credentials_requests = {
        let (mut policies_listed, mut namespaces_listed) =
            (policies_listed.clone(), namespaces_listed.clone());
        let ctx = ctx.clone();
        async move {
            if policies_listed.wait().await && namespaces_listed.wait().await {
                crate::credentials_request::run(ctx).await;
            }
        }
    };
    // A binding is judged only once every policy and namespace is known: judged before,
    // it could get a role its namespace's policies forbid.
    let binding_controller = async move {
        if policies_listed.wait().await && namespaces_listed.wait().await {
            binding_controller.await;
        }
    };

    // One watch of every ServiceAccount (metadata only, trimmed to what the short form
    // reads):
    // each change wakes the binding that owns the account, and the short form holds and
    // reconciles only the accounts it may act on.
    let (accounts_store, accounts_writer) = reflector::store::<AccountMeta>();
    let accounts = crate::binding::short_form::reflect_actionable(
        raise_when_listed(
            wake_owners(
                watcher(
                    Api::<PartialObjectMeta<ServiceAccount>>::all(client.clone()),
                    watcher::Config::default(),
                )
                .modify(crate::binding::short_form::trim)
                .default_backoff(),
                store.clone(),
                triggers.clone(),
            ),
            accounts_listed_raise,
        ),
        accounts_writer,
        ctx.clone(),
    )
    .applied_objects();
    let short_form_controller = {
        let ctx = ctx.clone();
        let mut bindings_listed = bindings_listed.clone();
        async move {
            // The short form asks the binding cache whether it made a binding, and the
            // accounts wake bindings found in it: the account watch starts only once the
            // cache holds them all.
            if !bindings_listed.wait().await {
                return;
            }
            Controller::for_stream(accounts, accounts_store)
                .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
                .shutdown_on_signal()
                .run(
                    crate::binding::short_form::reconcile,
                    |_sa, err, _ctx| {
                        tracing::warn!(error = %err, "short-form reconcile failed");
                        Action::requeue(Duration::from_secs(30))
                    },
                    ctx,
                )
                .for_each(|_| async {})
                .await;
        }
    };

    let sweep_task = tokio::spawn(crate::drift::sweep_loop(
        ctx.clone(),
        memory,
        store,
        bindings_listed,
        triggers,
        metrics.clone(),
    ));

    let outcome = {
        let lost = async {
            match settings.election.as_mut() {
                Some(elector) => elector.hold().await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            () = binding_controller => Ok(()),
            () = policy_controller => Ok(()),
            () = short_form_controller => Ok(()),
            () = credentials_requests => Ok(()),
            ended = &mut oidc_task => Err(RunError::OidcKeeperEnded(
                ended.err().map(|e| e.to_string()).unwrap_or_default(),
            )),
            lost = lost => Err(RunError::LostLease(lost)),
            result = &mut health_task => match result {
                Ok(Err(err)) => Err(RunError::Listen(listen, err)),
                _ => Ok(()),
            },
        }
    };
    sweep_task.abort();
    namespaces_task.abort();
    oidc_task.abort();
    // A graceful stop hands the lease over at once instead of after it runs out.
    if outcome.is_ok()
        && let Some(elector) = settings.election.as_mut()
    {
        elector.release().await;
    }
    outcome
}

/// A binding as the cache keeps it (see [`podidentity_api::slim_metadata`]).
pub(crate) fn slim(binding: &mut Watched) {
    podidentity_api::slim_metadata(match &mut binding.0 {
        Ok(binding) => &mut binding.metadata,
        Err(invalid) => &mut invalid.metadata,
    });
}

/// The binding a Secret of the operator's belongs to (its controller owner reference).
fn owning_binding(secret: &Secret) -> Option<ObjectRef<Watched>> {
    let owner = secret
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == PodIdentityBinding::kind(&()))?;
    Some(ObjectRef::new(&owner.name).within(&secret.namespace()?))
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

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::error_boundary::DeserializeGuard;

    #[test]
    fn a_cached_binding_keeps_everything_but_managed_fields_and_the_applied_copy() {
        let mut binding: PodIdentityBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "podidentity.io/v1alpha1",
            "kind": "PodIdentityBinding",
            "metadata": {
                "name": "orders", "namespace": "shop",
                "annotations": {
                    podidentity_api::LAST_APPLIED: "{\"spec\":{}}",
                    "team": "payments",
                },
                "managedFields": [{"manager": "kubectl", "operation": "Update"}],
            },
            "spec": {"serviceAccountName": "orders"},
        }))
        .unwrap_or_else(|err| panic!("{err}"));
        let expected_spec = binding.spec.clone();
        binding.metadata.labels = Some([("app".to_string(), "orders".to_string())].into());
        let mut watched = DeserializeGuard(Ok(binding));

        slim(&mut watched);

        let Ok(kept) = &watched.0 else {
            panic!("readable")
        };
        assert!(kept.metadata.managed_fields.is_none());
        assert_eq!(
            kept.metadata.annotations,
            Some([("team".to_string(), "payments".to_string())].into())
        );
        assert_eq!(kept.metadata.labels.as_ref().map(|l| l.len()), Some(1));
        assert_eq!(kept.spec, expected_spec);
    }
}
