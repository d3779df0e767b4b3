//! The first step of a pass: what the binding may have, judged purely from what was read
//! (its namespace's rules and bindings). The spec is validated and built under the
//! rules, the ServiceAccount's owner found, and the quota's queue counted, with the same
//! functions `plan` calls. Nothing here reads or writes anything.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use kube::ResourceExt;
use podidentity_api::PodIdentityBinding;
use podidentity_api::config::OperatorConfig;
use podidentity_iam::build::DesiredState;
use podidentity_iam::namespace_policy::{AppliedPolicy, over_quota};
use podidentity_iam::ownership::{claim_order, quota_queue, service_account_taken_by};
use podidentity_iam::{BindingRef, RuleSet, desired_state_under};

use super::quota::{SiblingVerdicts, has_quota};
use super::revoke::revoking_policy;
use crate::caches::Watched;

/// What a binding may have.
pub enum Verdict<'r> {
    /// Validation, the guardrails or the namespace's quota refused the spec; `revoking`:
    /// the policy among the refusing ones that asks for the role's permissions to go.
    Refused {
        refusal: podidentity_iam::Error,
        revoking: Option<&'r AppliedPolicy>,
    },
    /// Another binding owns the ServiceAccount (the oldest naming it): this one waits.
    ServiceAccountTaken { owner: String },
    /// The role, ServiceAccount and Secret this generation wants.
    Allowed(Box<DesiredState>),
}

impl Verdict<'_> {
    /// The verdict's kind, for the debug log.
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Refused { .. } => "refused",
            Verdict::ServiceAccountTaken { .. } => "service account taken",
            Verdict::Allowed(_) => "allowed",
        }
    }
}

/// The verdict, and whether a change to another binding of the namespace can change it
/// (its ServiceAccount's owner going, a binding ahead in the quota's queue going).
pub struct Judgement<'r> {
    pub verdict: Verdict<'r>,
    pub waits_on_siblings: bool,
}

/// Judges the spec alone under `rules`: the state it wants, or its refusal (which needs
/// nothing of the namespace's other bindings, so none are read for it).
pub fn judge_spec<'r>(
    binding: &PodIdentityBinding,
    namespace: &str,
    config: &OperatorConfig,
    rules: &'r RuleSet,
) -> Result<DesiredState, Judgement<'r>> {
    desired_state_under(
        BindingRef::of(namespace, binding),
        &binding.spec,
        config,
        rules,
    )
    .map_err(|refusal| Judgement {
        verdict: Verdict::Refused {
            revoking: revoking_policy(&rules.policies, &binding.spec, None),
            refusal,
        },
        waits_on_siblings: false,
    })
}

/// Judges a binding whose spec is allowed (`desired`) among `siblings` (the namespace's
/// bindings, itself included or not): its ServiceAccount's owner and the quota's queue.
pub fn judge_among<'r>(
    binding: &PodIdentityBinding,
    namespace: &str,
    desired: DesiredState,
    siblings: &[Arc<Watched>],
    config: &OperatorConfig,
    rules: &'r RuleSet,
    verdicts: &SiblingVerdicts,
) -> Judgement<'r> {
    let policies = &rules.policies;
    let readable: Vec<&PodIdentityBinding> =
        siblings.iter().filter_map(|b| b.0.as_ref().ok()).collect();
    // One ServiceAccount, one role: only its owner (the oldest binding naming it) goes on.
    if let Some(owner) = service_account_taken_by(binding, namespace, readable.iter().copied()) {
        return Judgement {
            verdict: Verdict::ServiceAccountTaken {
                owner: owner.name_any(),
            },
            waits_on_siblings: true,
        };
    }
    // Under a quota, any change to an older binding can move this one in or out of it.
    if !has_quota(policies) {
        return Judgement {
            verdict: Verdict::Allowed(Box::new(desired)),
            waits_on_siblings: false,
        };
    }
    let ahead = places_ahead(binding, namespace, &readable, config, rules, verdicts);
    let verdict = match over_quota(policies, ahead) {
        Some(violation) => Verdict::Refused {
            refusal: podidentity_iam::Error::Refused(vec![violation]),
            revoking: revoking_policy(policies, &binding.spec, Some(ahead)),
        },
        None => Verdict::Allowed(Box::new(desired)),
    };
    Judgement {
        verdict,
        waits_on_siblings: true,
    }
}

/// How many bindings of the namespace hold a place in the quota's queue ahead of
/// `binding`: only older ones can, and each is judged once per change of its spec or of
/// the rules (`verdicts`).
fn places_ahead(
    binding: &PodIdentityBinding,
    namespace: &str,
    readable: &[&PodIdentityBinding],
    config: &OperatorConfig,
    rules: &RuleSet,
    verdicts: &SiblingVerdicts,
) -> usize {
    let rules_fingerprint = {
        let mut hasher = DefaultHasher::new();
        format!("{rules:?}").hash(&mut hasher);
        hasher.finish()
    };
    let mine = claim_order(binding);
    // The owner of an older binding's ServiceAccount is older still: the older ones alone
    // say who is ahead.
    let older: Vec<&PodIdentityBinding> = readable
        .iter()
        .copied()
        .filter(|other| other.metadata.uid != binding.metadata.uid && claim_order(other) < mine)
        .collect();
    quota_queue(
        namespace,
        &older,
        |b| b,
        |other| {
            verdicts.allowed(other, rules_fingerprint, || {
                desired_state_under(BindingRef::of(namespace, other), &other.spec, config, rules)
                    .is_ok()
            })
        },
    )
    .len()
}
