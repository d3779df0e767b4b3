//! Deterministic role names: `<prefix><namespace>-<binding>`, cut to IAM's 64 characters
//! with `-` and 8 hex characters of a SHA-256 of the full name, so that the same manifest
//! always yields the same ARN and different bindings never share a role.

use sha2::{Digest, Sha256};

pub const MAX_ROLE_NAME_LEN: usize = 64;
const HASH_HEX_LEN: usize = 8;

pub fn role_name(prefix: &str, namespace: &str, binding: &str) -> String {
    let full = format!("{prefix}{namespace}-{binding}");
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
            "prod-shop-orders-s3"
        );
        assert_eq!(
            role_arn(
                "aws",
                "111122223333",
                "/podidentity/prod/",
                "prod-shop-orders-s3"
            ),
            "arn:aws:iam::111122223333:role/podidentity/prod/prod-shop-orders-s3"
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
        assert!(name.starts_with("prod-payments-processing-eu-settlement-reconciliation-"));
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

        /// Different bindings get different names, long or short. The one exception is
        /// inherent in the contract's format: `a-b/c` and `a/b-c` both spell `a-b-c`
        /// (namespaces may hold `-`); ownership tags turn that into RoleConflict, never a
        /// shared role, and `plan` reports it.
        #[test]
        fn different_bindings_get_different_names(
            ns in dns_label(), a in dns_label(), other_ns in dns_label(), b in dns_label()
        ) {
            prop_assume!(format!("{ns}-{a}") != format!("{other_ns}-{b}"));
            prop_assert_ne!(role_name("c-", &ns, &a), role_name("c-", &other_ns, &b));
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
