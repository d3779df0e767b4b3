//! The AWS accounts the operator acts in besides its own, and the configuration as seen
//! from one of them: the same settings with that account's id, OIDC provider and request
//! budget, so everything built from a configuration (role ARNs, trust, ownership, the
//! `${account}` template) lands in the account a namespace is placed in. (The setting,
//! `AccountConfig`, is with the others in the module's root.)

use std::borrow::Cow;

use super::{AccountConfig, OperatorConfig, account_of_arn};

impl OperatorConfig {
    /// The account configured under `id` in `accounts`.
    pub fn account(&self, id: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|account| account.id == id)
    }

    /// Whether `id` is an account the operator acts in: its own or one of `accounts`.
    pub fn acts_in(&self, id: &str) -> bool {
        self.aws.account_id.as_deref() == Some(id) || self.account(id).is_some()
    }

    /// The request budget of `account` (`None`: the operator's own).
    pub fn requests_per_second_in(&self, account: Option<&str>) -> f64 {
        account
            .and_then(|id| self.account(id))
            .and_then(|account| account.max_requests_per_second)
            .unwrap_or(self.aws.max_requests_per_second)
    }

    /// These settings as they apply in `account` (`None`, or the operator's own account:
    /// unchanged): its id, the OIDC providers of the same issuers in it, the permissions
    /// boundary of the same name in it (IAM attaches only a policy of the role's own
    /// account or an AWS-managed one), and its request budget.
    pub fn in_account(&self, account: Option<&str>) -> Cow<'_, OperatorConfig> {
        let Some(id) = account.filter(|id| self.aws.account_id.as_deref() != Some(*id)) else {
            return Cow::Borrowed(self);
        };
        let mut placed = self.clone();
        placed.aws.max_requests_per_second = self.requests_per_second_in(Some(id));
        placed.aws.account_id = Some(id.to_string());
        placed.oidc.provider_arn = self.oidc.provider_arn.as_deref().map(|a| rehomed(a, id));
        placed.oidc.additional_provider_arns = self
            .oidc
            .additional_provider_arns
            .iter()
            .map(|arn| rehomed(arn, id))
            .collect();
        placed.roles.permissions_boundary_arn = self
            .roles
            .permissions_boundary_arn
            .as_deref()
            .map(|arn| rehomed(arn, id));
        Cow::Owned(placed)
    }
}

/// `arn` with its account field (an account id) replaced by `account`; an ARN of AWS's
/// own (`arn:aws:iam::aws:policy/...`) or of no account is kept as it is.
fn rehomed(arn: &str, account: &str) -> String {
    let Some(own) = account_of_arn(arn) else {
        return arn.to_string();
    };
    let mut fields: Vec<&str> = arn.splitn(6, ':').collect();
    if fields.len() == 6 && fields[4] == own {
        fields[4] = account;
    }
    fields.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OperatorConfig {
        let mut config = super::super::valid_for_tests();
        config.aws.account_id = Some("111122223333".into());
        config.oidc.provider_arn =
            Some("arn:aws:iam::111122223333:oidc-provider/oidc.example.com/prod".into());
        config.oidc.additional_provider_arns =
            vec!["arn:aws:iam::111122223333:oidc-provider/old.example.com".into()];
        config.roles.permissions_boundary_arn =
            Some("arn:aws:iam::111122223333:policy/team-boundary".into());
        config.accounts = vec![super::super::AccountConfig {
            id: "444455556666".into(),
            role_arn: "arn:aws:iam::444455556666:role/podidentity-operator".into(),
            max_requests_per_second: Some(20.0),
        }];
        config
    }

    #[test]
    fn the_settings_in_another_account_name_that_account() {
        let config = config();
        let placed = config.in_account(Some("444455556666"));
        assert_eq!(placed.aws.account_id.as_deref(), Some("444455556666"));
        assert_eq!(
            placed.provider_arn(),
            "arn:aws:iam::444455556666:oidc-provider/oidc.example.com/prod"
        );
        assert_eq!(
            placed.all_provider_arns(),
            [
                "arn:aws:iam::444455556666:oidc-provider/oidc.example.com/prod",
                "arn:aws:iam::444455556666:oidc-provider/old.example.com"
            ]
        );
        assert_eq!(
            placed.roles.permissions_boundary_arn.as_deref(),
            Some("arn:aws:iam::444455556666:policy/team-boundary")
        );
        assert_eq!(placed.aws.max_requests_per_second, 20.0);
        // The rest is the operator's.
        assert_eq!(placed.cluster_name, config.cluster_name);
        assert_eq!(placed.role_path(), config.role_path());
    }

    #[test]
    fn the_own_account_and_no_account_leave_the_settings_as_they_are() {
        let config = config();
        assert!(matches!(config.in_account(None), Cow::Borrowed(_)));
        assert!(matches!(
            config.in_account(Some("111122223333")),
            Cow::Borrowed(_)
        ));
        assert!(config.acts_in("111122223333") && config.acts_in("444455556666"));
        assert!(!config.acts_in("777788889999"));
    }

    #[test]
    fn aws_managed_boundaries_stay_aws_managed() {
        let mut config = config();
        config.roles.permissions_boundary_arn =
            Some("arn:aws:iam::aws:policy/PowerUserAccess".into());
        let placed = config.in_account(Some("444455556666"));
        assert_eq!(
            placed.roles.permissions_boundary_arn.as_deref(),
            Some("arn:aws:iam::aws:policy/PowerUserAccess")
        );
        assert_eq!(account_of_arn("arn:aws:iam::aws:policy/X"), None);
        assert_eq!(
            account_of_arn("arn:aws:iam::444455556666:role/x"),
            Some("444455556666")
        );
    }
}
