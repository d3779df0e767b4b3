//! Which AWS account a namespace's roles live in: the one its PodIdentityPolicies name
//! (`spec.account`), else the operator's own. Only platform admins write policies, so a
//! namespace owner never chooses it; an account the operator does not act in, or two
//! accounts for one namespace, refuse the namespace's bindings with the policy named.

use crate::error::Violation;

/// Where a namespace is placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The operator's own account (no selecting policy names another).
    Own,
    /// One of the configured `accounts`.
    Account(String),
    /// Placed nowhere it may be: every binding of the namespace is refused with this.
    Refused(Violation),
}

/// The placement of `namespace` by the policies that select it, as (policy name, its
/// `spec.account`). `own`: the operator's account; `configured`: the ids of `accounts`.
pub fn place(
    namespace: &str,
    selecting: &[(&str, Option<&str>)],
    own: &str,
    configured: &[&str],
) -> Placement {
    let mut named: Vec<(&str, &str)> = selecting
        .iter()
        .filter_map(|(policy, account)| account.map(|a| (*policy, a)))
        .collect();
    named.sort();
    let Some(&(first_policy, account)) = named.first() else {
        return Placement::Own;
    };
    if let Some(&(other_policy, other)) = named.iter().find(|(_, a)| *a != account) {
        return Placement::Refused(Violation::guardrail(
            format!("PodIdentityPolicy {first_policy} (spec.account)"),
            format!(
                "PodIdentityPolicies {first_policy} (account {account}) and {other_policy} \
                 (account {other}) both select namespace {namespace}, which can live in one \
                 account only: name the same account in both, or select the namespace in one"
            ),
        ));
    }
    if account == own {
        Placement::Own
    } else if configured.contains(&account) {
        Placement::Account(account.to_string())
    } else {
        Placement::Refused(Violation::guardrail(
            format!("PodIdentityPolicy {first_policy} (spec.account)"),
            format!(
                "places namespace {namespace} in account {account}, which is not among the \
                 operator's accounts: add it to the configuration's accounts (with the role \
                 the operator assumes there), or name a configured account"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "111122223333";
    const TEAM: &str = "444455556666";

    #[test]
    fn a_policy_places_its_namespaces_in_a_configured_account() {
        let placed = place(
            "shop",
            &[("teams", Some(TEAM)), ("base", None)],
            OWN,
            &[TEAM],
        );
        assert_eq!(placed, Placement::Account(TEAM.into()));
        // Two policies naming the same account agree.
        let placed = place(
            "shop",
            &[("teams", Some(TEAM)), ("shop", Some(TEAM))],
            OWN,
            &[TEAM],
        );
        assert_eq!(placed, Placement::Account(TEAM.into()));
    }

    #[test]
    fn no_account_named_or_the_own_one_is_the_operators_account() {
        assert_eq!(
            place("shop", &[("base", None)], OWN, &[TEAM]),
            Placement::Own
        );
        assert_eq!(place("shop", &[], OWN, &[TEAM]), Placement::Own);
        assert_eq!(
            place("shop", &[("own", Some(OWN))], OWN, &[]),
            Placement::Own
        );
    }

    #[test]
    fn an_unknown_account_is_refused_naming_the_policy_and_the_setting() {
        let Placement::Refused(refusal) =
            place("shop", &[("teams", Some("777788889999"))], OWN, &[TEAM])
        else {
            panic!("an account the operator does not act in was accepted");
        };
        assert_eq!(refusal.field, "PodIdentityPolicy teams (spec.account)");
        assert!(
            refusal
                .message
                .contains("account 777788889999, which is not among the operator's accounts"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn two_accounts_for_one_namespace_are_refused_naming_both_policies() {
        let Placement::Refused(refusal) = place(
            "shop",
            &[("b-policy", Some(TEAM)), ("a-policy", Some("777788889999"))],
            OWN,
            &[TEAM, "777788889999"],
        ) else {
            panic!("two accounts for one namespace were accepted");
        };
        assert!(
            refusal
                .message
                .contains("a-policy (account 777788889999) and b-policy (account 444455556666)"),
            "{}",
            refusal.message
        );
    }
}
