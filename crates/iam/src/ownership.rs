//! A ServiceAccount carries one role. When several bindings name the same ServiceAccount,
//! the oldest (by creation time, then by name) owns it: only the owner's role is written
//! into its annotations; the others are `ServiceAccountConflict` and write nothing until
//! the owner goes. A binding being deleted owns nothing. A namespace's quota queues the
//! bindings that may have a role in the same order. The controller, the webhook's role
//! prediction and `plan` all ask these functions, so they always agree.

use k8s_openapi::jiff::Timestamp;
use podidentity_api::PodIdentityBinding;

/// The order of claims: older first, then by name. Manifests read by `plan` carry no
/// creation time, so there the name alone decides. A namespace's quota queues its bindings
/// in the same order.
pub fn claim_order(binding: &PodIdentityBinding) -> (Option<Timestamp>, &str) {
    (
        binding.metadata.creation_timestamp.as_ref().map(|t| t.0),
        binding.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// Whether `binding` names `namespace/service_account` and can own it.
fn claims(binding: &PodIdentityBinding, namespace: &str, service_account: &str) -> bool {
    binding.metadata.namespace.as_deref() == Some(namespace)
        && binding.spec.service_account_name == service_account
        && binding.metadata.deletion_timestamp.is_none()
}

/// The binding that owns `namespace/service_account`, if any names it.
pub fn service_account_owner<'a>(
    bindings: impl IntoIterator<Item = &'a PodIdentityBinding>,
    namespace: &str,
    service_account: &str,
) -> Option<&'a PodIdentityBinding> {
    bindings
        .into_iter()
        .filter(|b| claims(b, namespace, service_account))
        .min_by(|a, b| claim_order(a).cmp(&claim_order(b)))
}

/// The binding that owns `binding`'s ServiceAccount when that is another binding:
/// `binding` then waits (`ServiceAccountConflict`) and writes nothing.
pub fn service_account_taken_by<'a>(
    binding: &PodIdentityBinding,
    namespace: &str,
    bindings: impl IntoIterator<Item = &'a PodIdentityBinding>,
) -> Option<&'a PodIdentityBinding> {
    let owner = service_account_owner(bindings, namespace, &binding.spec.service_account_name)?;
    (!same_binding(owner, binding)).then_some(owner)
}

/// Two readings of one binding: the same uid, namespace and name (a manifest copied from
/// a cluster under another name keeps its uid), or (manifests, which carry none) the same
/// object.
fn same_binding(a: &PodIdentityBinding, b: &PodIdentityBinding) -> bool {
    match (&a.metadata.uid, &b.metadata.uid) {
        (Some(uid_a), Some(uid_b)) => {
            uid_a == uid_b
                && a.metadata.namespace == b.metadata.namespace
                && a.metadata.name == b.metadata.name
        }
        _ => std::ptr::eq(a, b),
    }
}

/// The bindings of `namespace` that hold a place under its quota, in claim order (a
/// binding's place is its index): not being deleted, owning their ServiceAccount among
/// `items`, and `allowed` by the namespace's rules (asked only of those, since a judgement
/// can be costly). The others hold no place.
pub fn quota_queue<'a, T>(
    namespace: &str,
    items: &'a [T],
    binding: impl Fn(&T) -> &PodIdentityBinding,
    mut allowed: impl FnMut(&T) -> bool,
) -> Vec<&'a T> {
    // Each ServiceAccount's owner, found in one pass over the namespace.
    let mut owners: std::collections::BTreeMap<&str, &T> = std::collections::BTreeMap::new();
    for item in items {
        let b = binding(item);
        if !claims(b, namespace, &b.spec.service_account_name) {
            continue;
        }
        let held = owners
            .entry(b.spec.service_account_name.as_str())
            .or_insert(item);
        if claim_order(b) < claim_order(binding(held)) {
            *held = item;
        }
    }
    let mut queue: Vec<&T> = owners.into_values().filter(|item| allowed(item)).collect();
    queue.sort_by(|a, b| claim_order(binding(a)).cmp(&claim_order(binding(b))));
    queue
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use podidentity_api::PodIdentityBindingSpec;
    use proptest::prelude::*;

    fn binding(name: &str, sa: &str, created: Option<i64>, deleting: bool) -> PodIdentityBinding {
        let mut b = PodIdentityBinding::new(
            name,
            PodIdentityBindingSpec {
                service_account_name: sa.into(),
                ..PodIdentityBindingSpec::default()
            },
        );
        b.metadata.namespace = Some("shop".into());
        b.metadata.creation_timestamp =
            created.map(|s| Time(Timestamp::from_second(s).unwrap_or_default()));
        if deleting {
            b.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        }
        b
    }

    fn owner(bindings: &[PodIdentityBinding]) -> Option<&str> {
        service_account_owner(bindings, "shop", "orders").and_then(|b| b.metadata.name.as_deref())
    }

    #[test]
    fn the_oldest_owns_then_the_name_breaks_ties() {
        let bindings = [
            binding("b", "orders", Some(20), false),
            binding("c", "orders", Some(10), false),
            binding("a", "orders", Some(20), false),
        ];
        assert_eq!(owner(&bindings), Some("c"));
        let same_second = [
            binding("b", "orders", Some(10), false),
            binding("a", "orders", Some(10), false),
        ];
        assert_eq!(owner(&same_second), Some("a"));
    }

    #[test]
    fn a_binding_being_deleted_hands_over_to_the_next() {
        let bindings = [
            binding("old", "orders", Some(1), true),
            binding("young", "orders", Some(2), false),
        ];
        assert_eq!(owner(&bindings), Some("young"));
    }

    #[test]
    fn only_bindings_of_that_namespace_and_account_count() {
        let mut elsewhere = binding("a", "orders", Some(1), false);
        elsewhere.metadata.namespace = Some("other".into());
        let bindings = [
            elsewhere,
            binding("b", "payments", Some(1), false),
            binding("c", "orders", Some(5), false),
        ];
        assert_eq!(owner(&bindings), Some("c"));
        assert_eq!(owner(&bindings[..2]), None);
    }

    #[test]
    fn manifests_without_creation_times_are_ordered_by_name() {
        let bindings = [
            binding("z", "orders", None, false),
            binding("m", "orders", None, false),
        ];
        assert_eq!(owner(&bindings), Some("m"));
    }

    #[test]
    fn a_copy_under_another_name_is_another_binding_for_its_service_account() {
        let mut original = binding("orders", "app", Some(1), false);
        original.metadata.uid = Some("uid-1".into());
        let mut copy = original.clone();
        copy.metadata.name = Some("orders-copy".into());
        let both = [original.clone(), copy.clone()];
        let taken = service_account_taken_by(&copy, "shop", &both).map(|o| o.metadata.name.clone());
        assert_eq!(
            taken,
            Some(Some("orders".to_string())),
            "the copy waits for the original"
        );
        assert!(service_account_taken_by(&original, "shop", &both).is_none());
    }

    proptest! {
        /// The owner does not depend on the order the bindings are seen in (a cache, a
        /// list, files), and it is one of the claimants.
        #[test]
        fn the_owner_is_the_same_in_any_order(
            claims in proptest::collection::vec((0i64..5, "[a-e]{1,2}", any::<bool>()), 1..8),
            rotate in 0usize..8,
        ) {
            let mut bindings: Vec<PodIdentityBinding> = claims
                .iter()
                .enumerate()
                .map(|(i, (created, name, deleting))| {
                    binding(&format!("{name}{i}"), "orders", Some(*created), *deleting)
                })
                .collect();
            let first = owner(&bindings).map(str::to_string);
            let shift = rotate % bindings.len();
            bindings.rotate_left(shift);
            bindings.reverse();
            prop_assert_eq!(owner(&bindings).map(str::to_string), first.clone());
            let any_alive = claims.iter().any(|(_, _, deleting)| !deleting);
            prop_assert_eq!(first.is_some(), any_alive);
        }

        /// The queue's count of places ahead of a binding is the rule written out plainly
        /// (older, not being deleted, allowed, owning its ServiceAccount among all), both as
        /// the controller asks it (over the older ones only) and as `plan` ranks the whole
        /// namespace.
        #[test]
        fn the_quota_queue_counts_as_the_rule_says(
            claims in proptest::collection::vec(
                (proptest::option::of(0i64..4), "[a-c]{1,2}", "[xyz]", any::<bool>(), any::<bool>()),
                1..10,
            ),
        ) {
            let bindings: Vec<PodIdentityBinding> = claims
                .iter()
                .enumerate()
                .map(|(i, (created, name, sa, deleting, _))| {
                    let mut b = binding(&format!("{name}{i}"), sa, *created, *deleting);
                    b.metadata.uid = Some(format!("uid-{i}"));
                    b
                })
                .collect();
            let allowed = |b: &PodIdentityBinding| {
                let i = bindings.iter().position(|o| o.metadata.uid == b.metadata.uid);
                i.is_some_and(|i| claims[i].4)
            };
            let owns = |b: &PodIdentityBinding| {
                service_account_owner(&bindings, "shop", &b.spec.service_account_name)
                    .is_some_and(|o| o.metadata.uid == b.metadata.uid)
            };
            let holds_place = |b: &PodIdentityBinding| {
                b.metadata.deletion_timestamp.is_none() && allowed(b) && owns(b)
            };
            let all: Vec<&PodIdentityBinding> = bindings.iter().collect();
            let whole = quota_queue("shop", &all, |b| b, |b| allowed(b));
            for b in &bindings {
                let plainly = bindings
                    .iter()
                    .filter(|o| o.metadata.uid != b.metadata.uid)
                    .filter(|o| claim_order(o) < claim_order(b))
                    .filter(|o| holds_place(o))
                    .count();
                let older: Vec<&PodIdentityBinding> = bindings
                    .iter()
                    .filter(|o| o.metadata.uid != b.metadata.uid && claim_order(o) < claim_order(b))
                    .collect();
                prop_assert_eq!(quota_queue("shop", &older, |o| o, |o| allowed(o)).len(), plainly);
                if holds_place(b) {
                    let rank = whole.iter().position(|o| o.metadata.uid == b.metadata.uid);
                    prop_assert_eq!(rank, Some(plainly));
                }
            }
        }
    }
}
