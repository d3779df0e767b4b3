//! The binding reconciler: dereference → validate → build → apply → status, behind the
//! finalizer. `apply` makes the role, annotates the ServiceAccount and writes the
//! credentials Secret; `cleanup` undoes it on deletion; `status` writes what a pass
//! found (this reconciler is the only writer of a binding's status); `invalid` reports
//! an object the operator cannot read; `quota` and `revoke` apply the namespace's
//! PodIdentityPolicies beyond what a spec alone shows.

mod apply;
pub mod assumable;
mod cleanup;
pub mod conditions;
pub mod early_pods;
pub mod finalizer;
mod invalid;
pub mod managed_policies;
mod quota;
mod readiness;
mod report;
mod revoke;
pub mod role;
pub mod secret;
pub mod service_account;
pub mod short_form;
pub use quota::SiblingVerdicts;

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use podidentity_api::PodIdentityBinding;

use crate::context::Context;
use crate::error::Error;
use finalizer::Stage;

/// How long a binding waits after a permanent AWS error before trying again by itself.
pub(crate) const PERMANENT_ERROR_RETRY: Duration = Duration::from_secs(600);

/// A binding as the watch delivers it: readable, or not (a field from a newer CRD, a
/// status edited by hand) without failing the whole watch.
pub type Watched = DeserializeGuard<PodIdentityBinding>;

/// The controller's entry point for one binding.
pub async fn reconcile(watched: Arc<Watched>, ctx: Arc<Context>) -> Result<Action, Error> {
    match &watched.0 {
        Ok(binding) => reconcile_binding(binding, &ctx).await,
        Err(invalid) => invalid::report(invalid, &ctx).await,
    }
}

/// One pass over a readable binding (the fake-client tests call this directly).
pub async fn reconcile_binding(
    binding: &PodIdentityBinding,
    ctx: &Context,
) -> Result<Action, Error> {
    let namespace = binding.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<PodIdentityBinding> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = ObjectRef::from_obj(binding);
    let result = match finalizer::stage(binding) {
        // The patch's watch event starts the next pass.
        Stage::Add => finalizer::add(&api, binding)
            .await
            .map(|_| Action::await_change())
            .map_err(Error::Kube),
        Stage::Apply => apply::apply(binding, ctx).await,
        Stage::Cleanup => match cleanup::cleanup(binding, ctx).await {
            Ok(()) => finalizer::remove(&api, binding)
                .await
                .map(|_| Action::await_change())
                .map_err(Error::Kube),
            Err(err) => Err(err),
        },
        Stage::Done => Ok(Action::await_change()),
    };
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}

/// Requeue policy for failed passes: per-binding exponential backoff for what may pass by
/// itself; a slow retry for what needs a change (AccessDenied, a malformed document).
pub fn error_policy(watched: Arc<Watched>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::new(&watched.name_any()).within(&watched.namespace().unwrap_or_default());
    let delay = if error.is_permanent() {
        PERMANENT_ERROR_RETRY
    } else {
        ctx.backoff(&key)
    };
    tracing::warn!(binding = %key.name, namespace = key.namespace.as_deref().unwrap_or_default(), reason = error.reason(), %error, ?delay, "reconcile failed");
    Action::requeue(delay)
}
