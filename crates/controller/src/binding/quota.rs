//! A namespace's quota (`maxBindingsPerNamespace` of the policies selecting it): the
//! oldest bindings that would get a role keep it, the newest over the limit are refused.
//! Bindings refused for another reason, waiting on another for their ServiceAccount, or
//! being deleted hold no place (as `plan` counts them).

use std::sync::Arc;

use podidentity_api::PodIdentityBinding;
use podidentity_api::config::OperatorConfig;
use podidentity_iam::namespace_policy::AppliedPolicy;
use podidentity_iam::ownership::claim_order;
use podidentity_iam::{BindingRef, Guardrails, desired_state, service_account_owner};

use super::Watched;

/// How many bindings of the namespace hold a place ahead of `binding`.
pub fn places_ahead(
    binding: &PodIdentityBinding,
    namespace: &str,
    siblings: &[Arc<Watched>],
    config: &OperatorConfig,
    guardrails: &Guardrails,
) -> usize {
    let readable: Vec<&PodIdentityBinding> =
        siblings.iter().filter_map(|b| b.0.as_ref().ok()).collect();
    let mine = claim_order(binding);
    readable
        .iter()
        .filter(|other| other.metadata.uid != binding.metadata.uid && claim_order(other) < mine)
        .filter(|other| other.metadata.deletion_timestamp.is_none())
        .filter(|other| {
            desired_state(
                BindingRef::of(namespace, other),
                &other.spec,
                config,
                guardrails,
            )
            .is_ok()
        })
        .filter(|other| {
            service_account_owner(
                readable.iter().copied(),
                namespace,
                &other.spec.service_account_name,
            )
            .is_some_and(|owner| owner.metadata.uid == other.metadata.uid)
        })
        .count()
}

/// Whether any of these policies caps the namespace's bindings.
pub fn has_quota(policies: &[AppliedPolicy]) -> bool {
    policies
        .iter()
        .any(|p| p.max_bindings_per_namespace.is_some())
}
