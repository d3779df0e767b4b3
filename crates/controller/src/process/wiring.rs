//! What each watch and controller of the process is wired to: the caches they fill, the
//! readiness checks they raise, and what each change wakes. `run` starts them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use podidentity_api::PodIdentityBinding;
use podidentity_webhook::watch::relisting_watcher;

use crate::binding::Reconciler;
use crate::binding::memory::Memory;
use crate::binding::short_form::AccountMeta;
use crate::caches::Watched;
use crate::context::Context;
use crate::policy::view::{NamespaceMeta, WatchedPolicy};
use crate::policy::watches::{
    at_most_every, note_binding_changes, wake_on_label_changes, wake_on_policy_changes,
};
use crate::process::check::{Check, Raise, check};
use crate::process::health::Health;
use crate::process::lanes::PER_ACCOUNT;
use crate::process::metrics::{Metrics, ReasonLabel, ResultLabel};
use crate::process::watches::{
    controller_on, raise_when_listed, wake_owners, wake_waiting_siblings,
};

/// How often, at most, the policies' status is worked out again while bindings change: a
/// policy over 10,000 bindings takes about 170 ms to survey (benches/policy_cost.rs), and
/// the controller runs on one thread.
const POLICY_STATUS_PERIOD: Duration = Duration::from_secs(10);

/// Bindings per page of the watch's first list. Each page arrives whole, managedFields
/// and all, before the cache trims it: at 500 (kube's default) a page held more memory
/// than a thousand trimmed bindings.
const BINDINGS_PAGE: u32 = 100;

/// The readiness checks of the watches (each raised on its first complete list).
pub struct Checks {
    pub bindings: Check,
    pub secrets: Check,
    pub policies: Check,
    pub namespaces: Check,
}

/// Their owners' ends.
pub struct Raises {
    pub bindings: Raise,
    pub accounts: Raise,
    pub secrets: Raise,
    pub policies: Raise,
    pub namespaces: Raise,
}

impl Checks {
    /// The checks, installed as the process's readiness.
    pub fn new(health: &Health) -> (Self, Raises) {
        let (bindings_raise, bindings) = check("bindings watch");
        let (accounts_raise, accounts) = check("ServiceAccount watch");
        let (secrets_raise, secrets) = check("credentials Secret watch");
        let (policies_raise, policies) = check("PodIdentityPolicy watch");
        let (namespaces_raise, namespaces) = check("Namespace watch");
        health.set_checks(vec![
            bindings.clone(),
            accounts,
            secrets.clone(),
            policies.clone(),
            namespaces.clone(),
        ]);
        let raises = Raises {
            bindings: bindings_raise,
            accounts: accounts_raise,
            secrets: secrets_raise,
            policies: policies_raise,
            namespaces: namespaces_raise,
        };
        (
            Self {
                bindings,
                secrets,
                policies,
                namespaces,
            },
            raises,
        )
    }

    /// Runs `work` once every policy and namespace is known: a binding judged before could
    /// get a role its namespace's policies forbid.
    pub fn after_policies(
        &self,
        work: impl std::future::Future<Output = ()>,
    ) -> impl std::future::Future<Output = ()> {
        let (mut policies, mut namespaces) = (self.policies.clone(), self.namespaces.clone());
        async move {
            if policies.wait().await && namespaces.wait().await {
                work.await;
            }
        }
    }
}

/// The watch caches the controllers read.
pub struct Caches {
    pub bindings: Store<Watched>,
    pub secrets: Store<Secret>,
    pub policies: Store<WatchedPolicy>,
    pub namespaces: Store<NamespaceMeta>,
}

/// Their writers, each given to its watch.
pub struct Writers {
    pub bindings: Writer<Watched>,
    pub secrets: Writer<Secret>,
    pub policies: Writer<WatchedPolicy>,
    pub namespaces: Writer<NamespaceMeta>,
}

impl Caches {
    pub fn new(bindings: Store<Watched>, bindings_writer: Writer<Watched>) -> (Self, Writers) {
        let (secrets, secrets_writer) = reflector::store::<Secret>();
        let (policies, policies_writer) = reflector::store::<WatchedPolicy>();
        let (namespaces, namespaces_writer) = reflector::store::<NamespaceMeta>();
        (
            Self {
                bindings,
                secrets,
                policies,
                namespaces,
            },
            Writers {
                bindings: bindings_writer,
                secrets: secrets_writer,
                policies: policies_writer,
                namespaces: namespaces_writer,
            },
        )
    }

    /// The context reading through these caches.
    pub fn serve(&self, ctx: Context, checks: &Checks) -> Context {
        ctx.with_bindings_cache(self.bindings.clone())
            .with_secrets_cache(self.secrets.clone(), checks.secrets.clone())
            .with_policy_caches(self.policies.clone(), self.namespaces.clone())
    }
}

/// Wake-ups: bindings to reconcile (from the sweep, siblings, policies, labels,
/// ServiceAccounts), and asks for the policies' status.
pub struct Wakes {
    pub wake: UnboundedSender<ObjectRef<Watched>>,
    pub woken: UnboundedReceiver<ObjectRef<Watched>>,
    pub ask_status: UnboundedSender<()>,
    pub status_asked: UnboundedReceiver<()>,
}

impl Wakes {
    pub fn new() -> Self {
        let (wake, woken) = futures::channel::mpsc::unbounded();
        let (ask_status, status_asked) = futures::channel::mpsc::unbounded();
        Self {
            wake,
            woken,
            ask_status,
            status_asked,
        }
    }
}

impl Default for Wakes {
    fn default() -> Self {
        Self::new()
    }
}

/// Every binding (trimmed), waking waiting siblings and asking for the policies' status
/// on changes.
pub fn binding_watch(
    ctx: &Context,
    writer: Writer<Watched>,
    listed: Raise,
    memory: &Arc<Memory>,
    wakes: &Wakes,
) -> impl Stream<Item = Result<Watched, watcher::Error>> + use<> {
    raise_when_listed(
        note_binding_changes(
            wake_waiting_siblings(
                relisting_watcher(
                    Api::<Watched>::all(ctx.client.clone()),
                    watcher::Config::default().page_size(BINDINGS_PAGE),
                )
                .modify(slim)
                .default_backoff()
                .reflect(writer),
                memory.clone(),
                wakes.wake.clone(),
            ),
            wakes.ask_status.clone(),
        ),
        listed,
    )
    .applied_objects()
}

/// Namespaces (metadata only, labels kept): their labels decide which policies govern
/// them. Polled by its own task, whatever else runs.
pub fn namespace_watch(
    ctx: &Context,
    caches: &Caches,
    writer: Writer<NamespaceMeta>,
    listed: Raise,
    wakes: &Wakes,
) -> impl std::future::Future<Output = ()> + use<> {
    raise_when_listed(
        wake_on_label_changes(
            relisting_watcher(
                Api::<NamespaceMeta>::all(ctx.client.clone()),
                watcher::Config::default(),
            )
            .modify(|ns: &mut NamespaceMeta| {
                ns.metadata.managed_fields = None;
                ns.metadata.annotations = None;
            })
            .default_backoff()
            .reflect(writer),
            caches.bindings.clone(),
            wakes.wake.clone(),
            wakes.ask_status.clone(),
        ),
        listed,
    )
    .for_each(|_| async {})
}

/// Every PodIdentityPolicy, waking the bindings a change concerns.
pub fn policy_watch(
    ctx: &Context,
    caches: &Caches,
    writer: Writer<WatchedPolicy>,
    listed: Raise,
    wakes: &Wakes,
) -> impl Stream<Item = Result<WatchedPolicy, watcher::Error>> + use<> {
    raise_when_listed(
        wake_on_policy_changes(
            relisting_watcher(
                Api::<WatchedPolicy>::all(ctx.client.clone()),
                watcher::Config::default(),
            )
            .modify(|p: &mut WatchedPolicy| match &mut p.0 {
                Ok(policy) => policy.metadata.managed_fields = None,
                Err(invalid) => invalid.metadata.managed_fields = None,
            })
            .default_backoff()
            .reflect(writer),
            caches.namespaces.clone(),
            caches.bindings.clone(),
            wakes.wake.clone(),
            wakes.ask_status.clone(),
        ),
        listed,
    )
    .applied_objects()
}

/// Only the operator's own Secrets (by label), without managedFields.
pub fn secret_watch(
    ctx: &Context,
    writer: Writer<Secret>,
    listed: Raise,
) -> impl Stream<Item = Result<Secret, watcher::Error>> + use<> {
    raise_when_listed(
        relisting_watcher(
            Api::<Secret>::all(ctx.client.clone()),
            watcher::Config::default().labels(&crate::caches::selector()),
        )
        .modify(|secret| secret.metadata.managed_fields = None)
        .default_backoff()
        .reflect(writer),
        listed,
    )
    .touched_objects()
}

/// The policies' status, worked out again at most every period while bindings change.
pub fn policy_controller<P>(
    ctx: &Arc<Context>,
    caches: &Caches,
    policies: P,
    status_asked: UnboundedReceiver<()>,
) -> impl std::future::Future<Output = ()> + use<P>
where
    P: Stream<Item = Result<WatchedPolicy, watcher::Error>> + Send + 'static,
{
    controller_on(policies, caches.policies.clone())
        .reconcile_all_on(at_most_every(status_asked, POLICY_STATUS_PERIOD))
        .shutdown_on_signal()
        .run(
            crate::policy::report::reconcile,
            crate::policy::report::error_policy,
            Arc::new(crate::policy::report::Sources {
                ctx: ctx.clone(),
                bindings: caches.bindings.clone(),
            }),
        )
        .for_each(|_| async {})
}

/// The bindings: their watch, their Secrets' changes, and every wake-up.
pub fn binding_controller<B, S>(
    ctx: &Arc<Context>,
    caches: &Caches,
    memory: &Arc<Memory>,
    metrics: &Arc<Metrics>,
    bindings: B,
    secrets: S,
    woken: UnboundedReceiver<ObjectRef<Watched>>,
) -> impl std::future::Future<Output = ()> + use<B, S>
where
    B: Stream<Item = Result<Watched, watcher::Error>> + Send + 'static,
    S: Stream<Item = Result<Secret, watcher::Error>> + Send + 'static,
{
    let metrics = metrics.clone();
    // As many passes at once as the accounts' lanes hold together (see `lanes`).
    controller_on(bindings, caches.bindings.clone())
        .with_config(controller::Config::default().concurrency(ctx.lanes.concurrency()))
        .watches_stream(secrets, |secret| owning_binding(&secret))
        .reconcile_on(woken)
        .shutdown_on_signal()
        .run(
            move |binding, reconciler| {
                let metrics = metrics.clone();
                async move {
                    let started = Instant::now();
                    let result = crate::binding::reconcile(binding, reconciler).await;
                    observe(&metrics, started, &result);
                    result
                }
            },
            crate::binding::error_policy,
            Arc::new(Reconciler {
                ctx: ctx.clone(),
                memory: memory.clone(),
            }),
        )
        .for_each(|_| async {})
}

/// One watch of every ServiceAccount (metadata only, trimmed to what the short form
/// reads): each change wakes the binding that owns the account, and the short form holds
/// and reconciles only the accounts it may act on.
pub fn short_form_controller(
    ctx: &Arc<Context>,
    caches: &Caches,
    checks: &Checks,
    listed: Raise,
    wake: &UnboundedSender<ObjectRef<Watched>>,
) -> impl std::future::Future<Output = ()> + use<> {
    let (accounts_store, accounts_writer) = reflector::store::<AccountMeta>();
    let accounts = crate::binding::short_form::reflect_actionable(
        raise_when_listed(
            wake_owners(
                relisting_watcher(
                    Api::<PartialObjectMeta<ServiceAccount>>::all(ctx.client.clone()),
                    watcher::Config::default(),
                )
                .modify(crate::binding::short_form::trim)
                .default_backoff(),
                caches.bindings.clone(),
                wake.clone(),
            ),
            listed,
        ),
        accounts_writer,
        ctx.clone(),
    )
    .applied_objects();
    let ctx = ctx.clone();
    let mut bindings_listed = checks.bindings.clone();
    async move {
        // The short form asks the binding cache whether it made a binding, and the
        // accounts wake bindings found in it: the account watch starts only once the
        // cache holds them all.
        if !bindings_listed.wait().await {
            return;
        }
        controller_on(accounts, accounts_store)
            .with_config(controller::Config::default().concurrency(PER_ACCOUNT))
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
