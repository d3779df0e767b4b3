//! A namespace's quota (`maxBindingsPerNamespace` of the policies selecting it): the
//! oldest bindings that would get a role keep it, the newest over the limit are refused.
//! Bindings refused for another reason, waiting on another for their ServiceAccount, or
//! being deleted hold no place (`podidentity_iam::ownership::quota_queue`, as `plan`
//! counts them). Here: the memo of siblings' verdicts that keeps counting cheap.

use std::collections::HashMap;
use std::sync::Mutex;

use podidentity_api::PodIdentityBinding;
use podidentity_iam::namespace_policy::AppliedPolicy;

/// Whether each sibling would be allowed, as the quota last judged it: by binding uid,
/// with the generation and the rules it was judged at. Every pass of a binding under a
/// quota asks this of its older siblings; judged afresh each time, one namespace's heavy
/// bindings cost every pass of every other there a full judgement each (the second
/// adversarial pass counted minutes of CPU per wake). Now a sibling is judged once per
/// change of its spec or of the namespace's rules.
#[derive(Default)]
pub struct SiblingVerdicts(Mutex<HashMap<String, Verdict>>);

/// One sibling's verdict and what it was judged at.
struct Verdict {
    generation: Option<i64>,
    rules_fingerprint: u64,
    allowed: bool,
}

/// Entries kept at most; past it the memo starts over (deleted bindings leave theirs).
const MAX_VERDICTS: usize = 100_000;

impl SiblingVerdicts {
    pub(super) fn allowed(
        &self,
        sibling: &PodIdentityBinding,
        rules_fingerprint: u64,
        judge: impl FnOnce() -> bool,
    ) -> bool {
        let uid = sibling.metadata.uid.clone().unwrap_or_default();
        let generation = sibling.metadata.generation;
        if let Ok(memo) = self.0.lock()
            && let Some(verdict) = memo.get(&uid)
            && verdict.generation == generation
            && verdict.rules_fingerprint == rules_fingerprint
        {
            return verdict.allowed;
        }
        let allowed = judge();
        if let Ok(mut memo) = self.0.lock() {
            if memo.len() >= MAX_VERDICTS {
                memo.clear();
            }
            memo.insert(
                uid,
                Verdict {
                    generation,
                    rules_fingerprint,
                    allowed,
                },
            );
        }
        allowed
    }
}

/// Whether any of these policies caps the namespace's bindings.
pub fn has_quota(policies: &[AppliedPolicy]) -> bool {
    policies
        .iter()
        .any(|p| p.max_bindings_per_namespace.is_some())
}

#[cfg(test)]
mod memo_tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn a_sibling_is_judged_once_per_change_of_its_spec_or_the_rules() {
        let verdicts = SiblingVerdicts::default();
        let mut sibling = PodIdentityBinding::new("older", Default::default());
        sibling.metadata.uid = Some("uid-1".into());
        sibling.metadata.generation = Some(1);
        let judged = Cell::new(0);
        let judge = || {
            judged.set(judged.get() + 1);
            false
        };
        for _ in 0..3 {
            assert!(!verdicts.allowed(&sibling, 7, judge));
        }
        assert_eq!(judged.get(), 1, "judged once while nothing changed");
        assert!(!verdicts.allowed(&sibling, 8, judge));
        sibling.metadata.generation = Some(2);
        assert!(!verdicts.allowed(&sibling, 8, judge));
        assert_eq!(
            judged.get(),
            3,
            "again after the rules, then the spec, changed"
        );
    }
}
