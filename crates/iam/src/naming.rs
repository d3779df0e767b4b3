//! Deterministic role names: `<prefix><namespace>.<binding>`, cut to IAM's 64 characters
//! with `-` and 8 hex characters of a SHA-256 of the full name, so that the same manifest
//! always yields the same ARN and different bindings never share a role.
//!
//! The separator is `.` because a namespace (a DNS label) cannot hold one: the first `.`
//! after the prefix ends the namespace, so no namespace can spell a name that belongs to
//! another. With `-` (the format before revision 3), namespace `team` could take the name
//! of `team-a/b-sync` by naming a binding `a-b-sync`. A cut name cannot be spelled by
//! another namespace either: its last nine characters (`-` and hex) hold no `.`, so a whole
//! name equal to it has its `.` within the kept head, which names the same namespace.

use sha2::{Digest, Sha256};

pub const MAX_ROLE_NAME_LEN: usize = 64;
const HASH_HEX_LEN: usize = 8;

/// Between the namespace and the binding's name: a character no namespace holds.
pub const NAMESPACE_SEPARATOR: char = '.';

pub fn role_name(prefix: &str, namespace: &str, binding: &str) -> String {
    cut_to_fit(format!("{prefix}{namespace}{NAMESPACE_SEPARATOR}{binding}"))
}

/// The name the operator gave roles before revision 3 (`-` between namespace and name).
/// Roles made then keep their names (and ARNs, which pods and resource policies hold):
/// a binding whose status records this name goes on using it.
pub fn legacy_role_name(prefix: &str, namespace: &str, binding: &str) -> String {
    cut_to_fit(format!("{prefix}{namespace}-{binding}"))
}

/// The name a binding's role has: the one its status records when that is the legacy
/// spelling of this binding's name (a role made before revision 3, adopted by its
/// ownership tags as ever), else the current spelling.
pub fn role_name_keeping_legacy(
    prefix: &str,
    namespace: &str,
    binding: &str,
    recorded: Option<&str>,
) -> String {
    match recorded {
        // Worked out only when a name is recorded (never for a manifest or a new binding).
        Some(recorded) if recorded == legacy_role_name(prefix, namespace, binding) => {
            recorded.to_string()
        }
        _ => role_name(prefix, namespace, binding),
    }
}

/// Whether an explicit role name (`spec.role.name`) is shaped like a name the operator
/// derives for a binding in another namespace. Under a prefix, every name beginning with it
/// belongs to derived names (cut ones included), so an override there must begin with
/// `<prefix><its own namespace>.`; with an empty prefix, a `.` or the shape of a cut name
/// (64 characters ending in `-` and 8 hex) means a derived name, and the part before the
/// `.` must be the override's own namespace. IAM role names are unique whatever their
/// letter case (`PROD-payments.api` is the role `prod-payments.api`), so all of this is
/// judged without case.
pub fn override_takes_derived_name(prefix: &str, namespace: &str, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let prefix = prefix.to_ascii_lowercase();
    let own = format!(
        "{prefix}{}{NAMESPACE_SEPARATOR}",
        namespace.to_ascii_lowercase()
    );
    if name.starts_with(&own) {
        return false;
    }
    if prefix.is_empty() {
        name.contains(NAMESPACE_SEPARATOR) || is_cut_shape(&name)
    } else {
        name.starts_with(&prefix)
    }
}

/// The one spelling of a role name that IAM tells apart from others: names differing only
/// in letter case are one role.
pub fn role_identity(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn is_cut_shape(name: &str) -> bool {
    name.len() == MAX_ROLE_NAME_LEN
        && name
            .get(MAX_ROLE_NAME_LEN - HASH_HEX_LEN - 1..)
            .and_then(|tail| tail.strip_prefix('-'))
            .is_some_and(|hash| hash.chars().all(|c| c.is_ascii_hexdigit()))
}

fn cut_to_fit(full: String) -> String {
    if full.len() <= MAX_ROLE_NAME_LEN {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let hash: String = digest
        .iter()
        .take(HASH_HEX_LEN / 2)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    // Names are ASCII (validated prefix, DNS-1123 namespace and name), so a byte cut is a
    // character cut.
    let keep = MAX_ROLE_NAME_LEN - HASH_HEX_LEN - 1;
    let head = full.get(..keep).unwrap_or(&full);
    format!("{head}-{hash}")
}

/// Whether IAM accepts `name` as a role name: 1 to 64 of `[A-Za-z0-9+=,.@_-]`.
pub fn is_valid_role_name(name: &str) -> bool {
    (1..=MAX_ROLE_NAME_LEN).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

pub fn role_arn(partition: &str, account_id: &str, path: &str, name: &str) -> String {
    format!("arn:{partition}:iam::{account_id}:role{path}{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_names_are_kept_whole() {
        assert_eq!(
            role_name("prod-", "shop", "orders-s3"),
            "prod-shop.orders-s3"
        );
        assert_eq!(
            role_arn(
                "aws",
                "111122223333",
                "/podidentity/prod/",
                "prod-shop.orders-s3"
            ),
            "arn:aws:iam::111122223333:role/podidentity/prod/prod-shop.orders-s3"
        );
    }

    #[test]
    fn a_namespace_cannot_spell_the_name_of_a_longer_namespace() {
        // The squat the legacy format allowed: both spelled prod-team-a-b-sync.
        assert_eq!(
            legacy_role_name("prod-", "team", "a-b-sync"),
            legacy_role_name("prod-", "team-a", "b-sync")
        );
        assert_ne!(
            role_name("prod-", "team", "a-b-sync"),
            role_name("prod-", "team-a", "b-sync")
        );
    }

    #[test]
    fn an_explicit_name_may_not_take_the_shape_of_another_namespaces_names() {
        // Under the prefix: only this namespace's own names.
        assert!(!override_takes_derived_name(
            "prod-",
            "team",
            "prod-team.legacy"
        ));
        assert!(override_takes_derived_name(
            "prod-",
            "team",
            "prod-team-a.b-sync"
        ));
        assert!(override_takes_derived_name("prod-", "team", "prod-teamx"));
        assert!(!override_takes_derived_name(
            "prod-",
            "team",
            "hand-made-role"
        ));
        assert!(!override_takes_derived_name(
            "prod-",
            "team",
            "team-a.b-sync"
        ));
        // Without a prefix, the separator marks derived names.
        assert!(override_takes_derived_name("", "team", "team-a.b-sync"));
        assert!(!override_takes_derived_name("", "team", "team.sync"));
        assert!(!override_takes_derived_name("", "team", "hand-made-role"));
    }

    /// Finding 2 of the adversarial pass: IAM role names ignore letter case, and the
    /// check did not, so `PROD-payments.api` (from namespace `shop`) squatted
    /// `payments/api`'s `prod-payments.api`, and an upper-cased cut name another
    /// namespace's long one.
    #[test]
    fn letter_case_does_not_open_another_namespaces_names() {
        assert!(override_takes_derived_name(
            "prod-",
            "shop",
            "PROD-payments.api"
        ));
        assert!(override_takes_derived_name(
            "prod-",
            "shop",
            "Prod-Shopping.x"
        ));
        assert!(!override_takes_derived_name(
            "prod-",
            "shop",
            "PROD-SHOP.reports"
        ));
        // A namespace long enough that its cut name keeps no `.`: only the hash's shape
        // tells it is derived, and upper case must not hide that.
        let long_namespace = format!("payments-{}", "x".repeat(54));
        let victim = role_name("", &long_namespace, "settlement");
        assert!(
            !victim.contains('.') && victim.len() == MAX_ROLE_NAME_LEN,
            "{victim}"
        );
        let upper = victim.to_ascii_uppercase();
        assert!(override_takes_derived_name("", "shop", &upper), "{upper}");
        assert_eq!(
            role_identity("PROD-payments.api"),
            role_identity("prod-payments.api")
        );
    }

    #[test]
    fn a_recorded_legacy_name_is_kept_and_nothing_else_is() {
        let legacy = legacy_role_name("prod-", "shop", "orders");
        assert_eq!(legacy, "prod-shop-orders");
        assert_eq!(
            role_name_keeping_legacy("prod-", "shop", "orders", Some(&legacy)),
            legacy
        );
        assert_eq!(
            role_name_keeping_legacy("prod-", "shop", "orders", None),
            "prod-shop.orders"
        );
        // A recorded name that is not this binding's legacy spelling is not kept.
        assert_eq!(
            role_name_keeping_legacy("prod-", "shop", "orders", Some("prod-shop-payments")),
            "prod-shop.orders"
        );
        // A name recorded in the current spelling stays current.
        assert_eq!(
            role_name_keeping_legacy("prod-", "shop", "orders", Some("prod-shop.orders")),
            "prod-shop.orders"
        );
    }

    #[test]
    fn long_names_end_in_a_hash_of_the_full_name() {
        let name = role_name(
            "prod-",
            "payments-processing-eu",
            "settlement-reconciliation-exporter-v2",
        );
        assert_eq!(name.len(), 64);
        assert!(name.starts_with("prod-payments-processing-eu.settlement-reconciliation-"));
        let hash = &name[56..];
        assert_eq!(&name[55..56], "-");
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{name}");
    }

    fn dns_label() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?").expect("regex")
    }

    proptest! {
        #[test]
        fn always_valid_and_deterministic(prefix in "[a-z0-9-]{0,20}", ns in dns_label(), name in dns_label()) {
            let first = role_name(&prefix, &ns, &name);
            prop_assert!(is_valid_role_name(&first), "{}", first);
            prop_assert_eq!(first, role_name(&prefix, &ns, &name));
        }

        /// Different bindings get different names, long or short, with no exception:
        /// namespaces that share a beginning included.
        #[test]
        fn different_bindings_get_different_names(
            ns in dns_label(), a in dns_label(), other_ns in dns_label(), b in dns_label()
        ) {
            prop_assume!((&ns, &a) != (&other_ns, &b));
            prop_assert_ne!(role_name("c-", &ns, &a), role_name("c-", &other_ns, &b));
        }

        /// The squat, tried on purpose: a namespace that is the beginning of another
        /// names a binding after the rest of the other's role name (what spelled it in
        /// the legacy format), or anything else. It never spells the other's name, cut or
        /// whole.
        #[test]
        fn no_namespace_spells_the_name_of_one_it_begins(
            shared in "[a-z][a-z0-9]{0,58}",
            tail in "-[a-z0-9]{1,10}",
            victim in "[a-z0-9]([-a-z0-9.]{0,40}[a-z0-9])?",
            other in "[a-z0-9]([-a-z0-9.]{0,60}[a-z0-9])?",
            prefix in "[a-z0-9-]{0,12}",
        ) {
            let victim_ns = format!("{shared}{tail}");
            prop_assume!(victim_ns.len() <= 63);
            let target = role_name(&prefix, &victim_ns, &victim);
            let legacy_squat = format!("{}-{victim}", &tail[1..]);
            prop_assert_eq!(
                legacy_role_name(&prefix, &shared, &legacy_squat),
                legacy_role_name(&prefix, &victim_ns, &victim)
            );
            prop_assert_ne!(role_name(&prefix, &shared, &legacy_squat), target.clone());
            let rest = target.get(prefix.len() + shared.len() + 1..).unwrap_or_default();
            if !rest.is_empty() {
                prop_assert_ne!(role_name(&prefix, &shared, rest), target.clone());
            }
            prop_assert_ne!(role_name(&prefix, &shared, &other), target);
        }

        /// No name derived for a binding in another namespace is open to an explicit name
        /// (cut names included).
        #[test]
        fn derived_names_of_other_namespaces_are_closed_to_explicit_names(
            prefix in "([a-z0-9]{1,8}-)?", ns in dns_label(), other_ns in dns_label(), b in dns_label()
        ) {
            prop_assume!(ns != other_ns);
            let taken = role_name(&prefix, &other_ns, &b);
            prop_assert!(override_takes_derived_name(&prefix, &ns, &taken), "{}", taken);
            let shouted = taken.to_ascii_uppercase();
            prop_assert!(override_takes_derived_name(&prefix, &ns, &shouted), "{}", shouted);
            let own = role_name(&prefix, &ns, &b);
            prop_assert!(
                !override_takes_derived_name(&prefix, &ns, &own) || own.len() == MAX_ROLE_NAME_LEN,
                "{}", own
            );
        }

        #[test]
        fn long_names_sharing_their_head_still_differ(
            head in "[a-z]{60}", a in "[a-z0-9]{1,10}", b in "[a-z0-9]{1,10}"
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(role_name("", "ns", &format!("{head}{a}")), role_name("", "ns", &format!("{head}{b}")));
        }
    }
}
