//! The drift loop: once the bindings are listed, and then every `driftInterval` (jittered),
//! read every role under the operator's path in pages and compare it with what the
//! bindings want. A binding whose role drifted, went missing or lost its ownership tags is
//! flagged and woken: its own reconcile (one writer per binding, serialized) puts the role
//! back and reports it. The sweep itself writes nothing.

pub mod sweep;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use podidentity_iam::{BindingRef, desired_state};

use crate::binding::memory::Memory;
use crate::caches::Watched;
use crate::context::{Context, jitter};
use crate::drift::sweep::{Finding, Survey, survey_each};
use crate::process::health::Check;

/// One sweep: flags and wakes every binding whose role needs attention. Each account
/// the bindings' roles live in is read on its own (its own client and budget), so one
/// account's trouble leaves the others' sweeps as they are.
pub async fn sweep_once(
    ctx: &Context,
    memory: &Memory,
    store: &Store<Watched>,
    triggers: &UnboundedSender<ObjectRef<Watched>>,
) -> Option<Survey> {
    // Account → role name → its binding (namespace and name only); what each role should
    // be is worked out again when its page arrives, so no list of 10,000 desired roles is
    // held through the sweep. The operator's own account (`None`) and every configured
    // one are always read: the first sweep, at start, assumes each account's role before
    // any binding needs it (an AssumeRole at a pass's first call cost seconds under load),
    // and an account whose role cannot be assumed is said at once.
    let mut by_account: BTreeMap<Option<String>, BTreeMap<String, ObjectRef<Watched>>> =
        std::iter::once(None)
            .chain(ctx.account_iam.keys().cloned().map(Some))
            .map(|account| (account, BTreeMap::new()))
            .collect();
    // One reading of the policies for the whole sweep.
    let guardrails = ctx.policies.for_all();
    for watched in store.state() {
        let Ok(binding) = &watched.0 else { continue };
        // Only roles made (in status or by this process) for bindings that still validate.
        let made = binding
            .status
            .as_ref()
            .and_then(|s| s.role_id.as_ref())
            .is_some()
            || memory.applied(&binding.uid().unwrap_or_default()).is_some();
        if !made || binding.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let (Some((account, role)), Some(namespace)) =
            (desired_role(ctx, &guardrails, binding), binding.namespace())
        {
            by_account.entry(account).or_default().insert(
                role.name,
                ObjectRef::new(&binding.name_any()).within(&namespace),
            );
        }
    }
    let desired_for = |role: &str, key: &ObjectRef<Watched>| {
        let watched = store.get(key)?;
        let binding = watched.0.as_ref().ok()?;
        let (_, mut want) =
            desired_role(ctx, &guardrails, binding).filter(|(_, want)| want.name == role)?;
        // A managed policy IAM does not have is what the binding is stalled on, not drift:
        // its pass asks IAM again on its own slow schedule.
        let stalled_on = memory.stalled_on(&binding.uid().unwrap_or_default());
        want.managed_policy_arns
            .retain(|arn| !stalled_on.contains(arn));
        Some(want)
    };
    let mut total: Option<Survey> = None;
    for (account, by_role) in &by_account {
        let shown = account.as_deref().unwrap_or("own");
        let found = match ctx.iam_in(account.as_deref()) {
            Ok(iam) => survey_each(iam, &ctx.config.role_path(), by_role, desired_for).await,
            Err(err) => {
                tracing::warn!(account = shown, error = %err, "drift sweep cannot read this account");
                continue;
            }
        };
        let found = match found {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(account = shown, error = %err, "drift sweep failed; trying again next interval");
                continue;
            }
        };
        wake_findings(ctx, memory, store, triggers, by_role, &found);
        tracing::info!(
            account = shown,
            pages = found.pages,
            roles = found.roles_read,
            findings = found.findings.len(),
            "drift sweep done"
        );
        let sum = total.get_or_insert_with(Survey::default);
        sum.pages += found.pages;
        sum.roles_read += found.roles_read;
        sum.findings.extend(found.findings);
    }
    sweep_associations(ctx, memory, store, triggers).await;
    total
}

/// Flags and wakes the binding of each role the survey found out of line.
fn wake_findings(
    ctx: &Context,
    memory: &Memory,
    store: &Store<Watched>,
    triggers: &UnboundedSender<ObjectRef<Watched>>,
    by_role: &BTreeMap<String, ObjectRef<Watched>>,
    found: &Survey,
) {
    for (role, finding) in &found.findings {
        let Some(key) = by_role.get(role) else {
            continue;
        };
        let Some(uid) = store
            .get(key)
            .and_then(|watched| watched.meta().uid.clone())
        else {
            continue;
        };
        if matches!(finding, Finding::Drifted(_) | Finding::Missing) {
            ctx.metrics.drift_found(role);
        }
        let namespace = key.namespace.as_deref().unwrap_or_default();
        tracing::info!(%role, ?finding, binding = %key.name, %namespace, "drift found; reconciling");
        memory.mark_drifted(&uid);
        let _ = triggers.unbounded_send(key.clone());
    }
}

/// The bindings whose recorded EKS Pod Identity association is not among the cluster's
/// (`ids`): deleted outside the operator.
fn missing_associations<'a>(
    bindings: impl IntoIterator<Item = &'a podidentity_api::PodIdentityBinding>,
    ids: &std::collections::BTreeSet<String>,
) -> Vec<&'a podidentity_api::PodIdentityBinding> {
    bindings
        .into_iter()
        .filter(|b| b.metadata.deletion_timestamp.is_none())
        .filter(|b| {
            b.status
                .as_ref()
                .and_then(|s| s.association.as_ref())
                .is_some_and(|a| !ids.contains(&a.id))
        })
        .collect()
}

/// Associations deleted outside the operator: one list of the cluster's (pages of 100),
/// only when some binding records one; each binding whose association is gone is flagged
/// and woken, and its pass makes it again. (A changed association is put right by the
/// binding's next pass, which reads it.)
async fn sweep_associations(
    ctx: &Context,
    memory: &Memory,
    store: &Store<Watched>,
    triggers: &UnboundedSender<ObjectRef<Watched>>,
) {
    let Some(api) = &ctx.associations else { return };
    let state = store.state();
    let bindings: Vec<&podidentity_api::PodIdentityBinding> =
        state.iter().filter_map(|w| w.0.as_ref().ok()).collect();
    let recorded = bindings
        .iter()
        .any(|b| b.status.as_ref().is_some_and(|s| s.association.is_some()));
    if !recorded {
        return;
    }
    let cluster = ctx.config.eks_cluster_name();
    let ids = match api.ids(cluster).await {
        Ok(ids) => ids.into_iter().collect(),
        Err(err) => {
            tracing::warn!(error = %err, "association sweep failed; trying again next interval");
            return;
        }
    };
    for binding in missing_associations(bindings, &ids) {
        let (Some(uid), Some(namespace)) = (binding.uid(), binding.namespace()) else {
            continue;
        };
        let role = binding.status.as_ref().and_then(|s| s.role_name.as_deref());
        ctx.metrics.drift_found(role.unwrap_or_default());
        tracing::info!(binding = %binding.name_any(), %namespace, "association deleted outside the operator; reconciling");
        memory.mark_drifted(&uid);
        let _ = triggers.unbounded_send(ObjectRef::new(&binding.name_any()).within(&namespace));
    }
}

/// The role a binding wants, and the account it lives in, if it validates.
fn desired_role(
    ctx: &Context,
    guardrails: &podidentity_iam::Guardrails,
    binding: &podidentity_api::PodIdentityBinding,
) -> Option<(Option<String>, podidentity_iam::build::DesiredRole)> {
    let namespace = binding.namespace().unwrap_or_default();
    let mut desired = desired_state(
        BindingRef::of(&namespace, binding),
        &binding.spec,
        &ctx.config,
        guardrails,
    )
    .ok()?;
    // A migration's role trusts both mechanisms until its pass finds no old pods.
    crate::binding::migration::trust_in_force(
        binding,
        &namespace,
        &ctx.config,
        &mut desired,
        false,
    );
    Some((desired.account, desired.role))
}

/// Sweeps once the bindings are listed, then every interval, until dropped.
pub async fn sweep_loop(
    ctx: Arc<Context>,
    memory: Arc<Memory>,
    store: Store<Watched>,
    mut listed: Check,
    triggers: UnboundedSender<ObjectRef<Watched>>,
) {
    let interval = ctx
        .config
        .drift_interval()
        .unwrap_or(Duration::from_secs(600));
    if !listed.wait().await {
        return;
    }
    loop {
        sweep_once(&ctx, &memory, &store, &triggers).await;
        tokio::time::sleep(interval + jitter(interval / 10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podidentity_api::{AssociationStatus, PodIdentityBinding, PodIdentityBindingStatus};

    fn binding(name: &str, association: Option<&str>) -> PodIdentityBinding {
        let mut b = PodIdentityBinding::new(name, Default::default());
        b.status = Some(PodIdentityBindingStatus {
            association: association.map(|id| AssociationStatus {
                id: id.into(),
                arn: format!("arn:aws:eks:eu-west-1:111122223333:podidentityassociation/prod/{id}"),
                disable_session_tags: false,
                target_role_arn: None,
            }),
            ..Default::default()
        });
        b
    }

    #[test]
    fn only_bindings_whose_recorded_association_is_gone_are_flagged() {
        let bindings = [
            binding("kept", Some("a-kept")),
            binding("gone", Some("a-gone")),
            binding("irsa", None),
        ];
        let ids = ["a-kept".to_string(), "a-someone-elses".to_string()].into();
        let missing: Vec<String> = missing_associations(&bindings, &ids)
            .into_iter()
            .map(|b| b.name_any())
            .collect();
        assert_eq!(missing, ["gone"]);
    }
}
