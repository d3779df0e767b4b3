//! The binding wing. A pass over a binding runs behind the finalizer in three steps, each
//! in its own module: `judge` (pure: what the binding may have, from its namespace's
//! rules and bindings) → `apply` (the IAM role, the ServiceAccount, the credentials
//! Secret; returns what it did and found) → `report` (the conditions computed once from
//! that, the status written once, the Events published once). `memory` is what passes
//! remember between them; `cleanup` undoes a binding on deletion; `invalid` reports an
//! object the operator cannot read; `short_form` makes bindings from annotated
//! ServiceAccounts. `role`, `service_account`, `secret`, `association`,
//! `managed_policies`, `assumable` and `early_pods` are the apply step's hands;
//! `migration` is what a change of mechanism adds to a pass, `account_move` what a
//! namespace moved to another account adds.

mod account_move;
mod apply;
pub mod association;
pub mod association_count;
pub mod association_quota;
pub mod assumable;
mod cleanup;
pub mod conditions;
pub mod early_pods;
pub mod finalizer;
mod invalid;
pub mod judge;
pub mod managed_policies;
pub mod memory;
pub mod migration;
pub mod quota;
mod readiness;
mod report;
mod revoke;
pub mod role;
pub mod secret;
pub mod service_account;
pub mod short_form;

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use podidentity_api::PodIdentityBinding;

use self::apply::Pass;
use self::finalizer::Stage;
use self::memory::{Memory, PERMANENT_ERROR_RETRY};
use crate::caches::Watched;
use crate::context::Context;
use crate::error::Error;
use crate::process::lanes::LANE_FULL_RETRY;

/// What the binding controller runs with: the shared handles, and the wing's memory.
pub struct Reconciler {
    pub ctx: Arc<Context>,
    pub memory: Arc<Memory>,
}

/// The controller's entry point for one binding.
pub async fn reconcile(
    watched: Arc<Watched>,
    reconciler: Arc<Reconciler>,
) -> Result<Action, Error> {
    let (ctx, memory) = (&reconciler.ctx, &reconciler.memory);
    match &watched.0 {
        Ok(binding) => reconcile_binding(binding, ctx, memory).await,
        Err(invalid) => invalid::report(invalid, ctx, memory).await,
    }
}

/// One pass over a readable binding (the fake-client tests call this directly).
pub async fn reconcile_binding(
    binding: &PodIdentityBinding,
    ctx: &Context,
    memory: &Memory,
) -> Result<Action, Error> {
    let namespace = binding.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<PodIdentityBinding> = Api::namespaced(ctx.client.clone(), &namespace);
    tracing::debug!(binding = %binding.name_any(), %namespace, resource_version = binding.resource_version().unwrap_or_default(), "pass begins");
    let result = match finalizer::stage(binding) {
        // The patch's watch event starts the next pass.
        Stage::Add => finalizer::add(&api, binding)
            .await
            .map(|_| Action::await_change())
            .map_err(Error::Kube),
        Stage::Apply => match pass(binding, &namespace, ctx, memory).await {
            Err(Error::Gone) => vanished(binding, ctx, memory).await,
            other => other,
        },
        Stage::Cleanup => match cleanup::cleanup(binding, ctx, memory).await {
            Ok(()) => finalizer::remove(&api, binding)
                .await
                .map(|_| Action::await_change())
                .map_err(Error::Kube),
            Err(err) => Err(err),
        },
        Stage::Done => Ok(Action::await_change()),
    };
    if result.is_ok() {
        memory.succeeded(&binding.uid().unwrap_or_default());
    }
    result
}

/// The binding went while its pass made its role, though it carried the finalizer: a
/// kube-apiserver decides a DELETE on the object as it read it, and a finalizer added
/// between that read and the delete's write does not hold it (seen end to end: finalizer
/// added 8 ms before the DELETE returned, the object gone, no cleanup). What the pass made
/// would be left behind: clean up as deletion would have.
async fn vanished(
    binding: &PodIdentityBinding,
    ctx: &Context,
    memory: &Memory,
) -> Result<Action, Error> {
    tracing::info!(binding = %binding.name_any(), namespace = binding.namespace().unwrap_or_default(), "the binding was deleted during its pass without its finalizer holding; cleaning up what the pass made");
    cleanup::cleanup(binding, ctx, memory).await?;
    Ok(Action::await_change())
}

/// How soon a pass that saw the binding as it was before its own last status write looks
/// again.
pub const OWN_WRITE_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// One pass over a binding that is not being deleted: read, judge, apply, report.
async fn pass(
    binding: &PodIdentityBinding,
    namespace: &str,
    ctx: &Context,
    memory: &Memory,
) -> Result<Action, Error> {
    // A pass woken before the watch delivered this process's own last status write sees
    // the binding as it was before that pass: its work is done, and the write's own
    // event brings the binding back as it is now. Looked at again shortly all the same:
    // the controller reads the binding from its cache, which a relist after an outage
    // swaps only once the whole list is in, after the relisted binding's own wake (seen
    // end to end under load: a policy changed during an outage was never judged).
    let uid = binding.uid().unwrap_or_default();
    if memory
        .record(&uid)
        .own_write
        .is_some_and(|w| Some(&w.over) == binding.resource_version().as_ref())
    {
        tracing::debug!(binding = %binding.name_any(), %namespace, "the cache is behind this process's own status write; looking again shortly");
        return Ok(Action::requeue(OWN_WRITE_RECHECK));
    }
    let guardrails = ctx.policies.for_namespace(namespace);
    // The namespace's account has as many passes in flight as it may: this one steps
    // aside, so a throttled account never holds the others' bindings back.
    let placed = guardrails.account_for(namespace);
    let Ok(_lane) = ctx.lanes.enter(ctx.account_or_own(placed.as_deref())) else {
        return Ok(Action::requeue(LANE_FULL_RETRY));
    };
    let rules = guardrails.rules_for(namespace);
    let mut siblings = Vec::new();
    let judgement = match judge::judge_spec(binding, namespace, &ctx.config, &rules) {
        Err(refused) => refused,
        Ok(desired) => {
            siblings = ctx.bindings_in(namespace).await?;
            judge::judge_among(
                binding,
                namespace,
                desired,
                &siblings,
                &ctx.config,
                &rules,
                &ctx.sibling_verdicts,
            )
        }
    };
    tracing::debug!(binding = %binding.name_any(), %namespace, verdict = judgement.verdict.kind(), "judged");
    memory.set_waiting(&ObjectRef::from_obj(binding), judgement.waits_on_siblings);
    let pass = Pass {
        ctx,
        memory,
        binding,
        namespace,
        rules: &rules,
        siblings: &siblings,
    };
    let found = apply::apply(&pass, judgement).await?;
    report::report(ctx, memory, binding, found).await
}

/// Requeue policy for failed passes: per-binding exponential backoff for what may pass by
/// itself; a slow retry for what needs a change (AccessDenied, a malformed document).
pub fn error_policy(watched: Arc<Watched>, error: &Error, reconciler: Arc<Reconciler>) -> Action {
    let key = ObjectRef::<Watched>::new(&watched.name_any())
        .within(&watched.namespace().unwrap_or_default());
    let delay = if error.is_permanent() {
        PERMANENT_ERROR_RETRY
    } else {
        reconciler
            .memory
            .backoff(&watched.uid().unwrap_or_default())
    };
    tracing::warn!(binding = %key.name, namespace = key.namespace.as_deref().unwrap_or_default(), reason = error.reason(), %error, ?delay, "reconcile failed");
    Action::requeue(delay)
}
