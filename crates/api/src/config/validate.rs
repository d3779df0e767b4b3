//! The checks of the settings: every bad value found at once, each naming its setting
//! and the fix, so a bad file is refused whole before anything is made.

use std::time::Duration;

use super::problem::{ConfigProblem, Problems};
use super::{MAX_MANAGED_POLICIES_CEILING, OperatorConfig, TRUST_POLICY_MAX_BYTES_CEILING};

impl OperatorConfig {
    /// Every problem with these settings, each naming the setting and the fix.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Problems::default();
        self.cluster_problems(&mut problems);
        self.role_problems(&mut problems);
        self.oidc_problems(&mut problems);
        self.oidc_management_problems(&mut problems);
        self.guardrail_problems(&mut problems);
        self.limit_problems(&mut problems);
        self.aws_problems(&mut problems);
        self.account_problems(&mut problems);
        self.short_form_problems(&mut problems);
        self.credentials_request_problems(&mut problems);
        problems.0
    }

    /// `shortForm.*`.
    fn short_form_problems(&self, problems: &mut Problems) {
        if !self.short_form.enabled && !self.short_form.namespaces.is_empty() {
            problems.bad(
                "shortForm.namespaces",
                "names namespaces, but shortForm.enabled is false: set it to true to turn \
                 the short form on there"
                    .into(),
            );
        }
        for namespace in &self.short_form.namespaces {
            if !crate::binding::is_dns_name(namespace, 63, false) {
                problems.bad(
                    "shortForm.namespaces",
                    format!(
                        "{namespace:?} is not a namespace name (lower-case letters, digits \
                         and '-', at most 63)"
                    ),
                );
            }
        }
    }

    /// `credentialsRequests.*`.
    fn credentials_request_problems(&self, problems: &mut Problems) {
        let namespaces = &self.credentials_requests.namespaces;
        if self.credentials_requests.enabled && namespaces.is_empty() {
            problems.bad(
                "credentialsRequests.namespaces",
                "is empty, so no request would be honoured: name the namespace the platform \
                 keeps them in (openshift-cloud-credential-operator)"
                    .into(),
            );
        }
        for namespace in namespaces {
            if !crate::binding::is_dns_name(namespace, 63, false) {
                problems.bad(
                    "credentialsRequests.namespaces",
                    format!("{namespace:?} is not a namespace name"),
                );
            }
        }
    }

    /// `clusterName`.
    fn cluster_problems(&self, problems: &mut Problems) {
        let cluster_name_ok = |name: &str| {
            !name.is_empty()
                && name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        };
        if self.cluster_name.is_empty() {
            problems.bad(
                "clusterName",
                "is required: set clusterName in the config file, or pass --cluster-name".into(),
            );
        } else if !cluster_name_ok(&self.cluster_name) {
            problems.bad(
                "clusterName",
                format!(
                    "{:?} must be 1 to 63 characters of letters, digits and +=,.@_-",
                    self.cluster_name
                ),
            );
        }
    }

    /// `roles.*`.
    fn role_problems(&self, problems: &mut Problems) {
        if let Some(prefix) = &self.roles.name_prefix {
            let chars_ok = prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
            if !chars_ok || prefix.len() > 32 {
                problems.bad(
                    "roles.namePrefix",
                    format!(
                        "{prefix:?} must be at most 32 characters of letters, digits and +=,.@_- \
                         (it starts every role name)"
                    ),
                );
            }
        }
        if let Some(path) = &self.roles.path {
            let chars_ok = path.chars().all(|c| ('\u{21}'..='\u{7e}').contains(&c));
            if !path.starts_with('/') || !path.ends_with('/') || path.len() > 512 || !chars_ok {
                problems.bad(
                    "roles.path",
                    format!(
                        "{path:?} must start and end with / and be at most 512 printable ASCII \
                         characters, e.g. /podidentity/prod/"
                    ),
                );
            }
        }
        if let Some(arn) = &self.roles.permissions_boundary_arn
            && !is_policy_arn(arn)
        {
            problems.bad(
                "roles.permissionsBoundaryArn",
                format!(
                    "{arn:?} is not a managed policy ARN (arn:aws:iam::<account>:policy/<name>)"
                ),
            );
        }
        if !(1..=MAX_MANAGED_POLICIES_CEILING).contains(&self.roles.max_managed_policies) {
            problems.bad(
                "roles.maxManagedPolicies",
                format!(
                    "{} is out of range: IAM allows 1 to {MAX_MANAGED_POLICIES_CEILING} managed \
                     policies per role (10 unless the quota was raised)",
                    self.roles.max_managed_policies
                ),
            );
        }
    }

    /// `oidc.*`.
    fn oidc_problems(&self, problems: &mut Problems) {
        if let Some(url) = &self.oidc.issuer_url
            && (!url.starts_with("https://") || url.len() <= "https://".len())
        {
            problems.bad(
                "oidc.issuerUrl",
                format!("{url:?} must be an https:// URL, e.g. https://oidc.example.com/id/ABC"),
            );
        }
        if let Some(arn) = &self.oidc.provider_arn
            && !is_oidc_provider_arn(arn)
        {
            problems.bad(
                "oidc.providerArn",
                format!(
                    "{arn:?} is not an OIDC provider ARN \
                     (arn:aws:iam::<12-digit account>:oidc-provider/<issuer host/path>)"
                ),
            );
        }
        for arn in &self.oidc.additional_provider_arns {
            if !is_oidc_provider_arn(arn) {
                problems.bad(
                    "oidc.additionalProviderArns",
                    format!(
                        "{arn:?} is not an OIDC provider ARN \
                         (arn:aws:iam::<12-digit account>:oidc-provider/<issuer host/path>)"
                    ),
                );
            }
        }
    }

    /// `guardrails.*`.
    fn guardrail_problems(&self, problems: &mut Problems) {
        if !self.identity.allows(self.identity.default_mechanism) {
            problems.bad(
                "identity.defaultMechanism",
                format!(
                    "{} is not among identity.allowedMechanisms, so every binding that does \
                     not say would be refused: make the default one of them",
                    self.identity.default_mechanism
                ),
            );
        }
        if self.guardrails.require_boundary
            && self
                .roles
                .permissions_boundary_arn
                .as_deref()
                .is_none_or(|arn| arn.trim().is_empty())
        {
            problems.bad(
                "guardrails.requireBoundary",
                "is true, but roles.permissionsBoundaryArn is not set: set the boundary \
                 every role must carry"
                    .into(),
            );
        }
        for (setting, patterns) in [
            ("guardrails.deniedActions", &self.guardrails.denied_actions),
            (
                "guardrails.actionsNeedingNamedResources",
                &self.guardrails.actions_needing_named_resources,
            ),
        ] {
            for pattern in patterns {
                let ok = pattern == "*"
                    || pattern.split_once(':').is_some_and(|(service, action)| {
                        !service.is_empty() && !action.is_empty() && !action.contains(':')
                    });
                if !ok {
                    problems.bad(
                        setting,
                        format!(
                            "{pattern:?} is not an action pattern: write service:Action, e.g. iam:*"
                        ),
                    );
                }
            }
        }
        for (setting, patterns) in [
            (
                "guardrails.allowedManagedPolicyArns",
                &self.guardrails.allowed_managed_policy_arns,
            ),
            (
                "guardrails.deniedManagedPolicyArns",
                &self.guardrails.denied_managed_policy_arns,
            ),
        ] {
            for pattern in patterns {
                if !pattern.starts_with("arn:") && pattern != "*" {
                    problems.bad(
                        setting,
                        format!(
                            "{pattern:?} must be a policy ARN glob starting with arn:, \
                             e.g. arn:aws:iam::aws:policy/*"
                        ),
                    );
                }
            }
        }
    }

    /// `trustPolicy.maxBytes` and `driftInterval`.
    fn limit_problems(&self, problems: &mut Problems) {
        let max_bytes = self.trust_policy.max_bytes;
        if !(256..=TRUST_POLICY_MAX_BYTES_CEILING).contains(&max_bytes) {
            problems.bad(
                "trustPolicy.maxBytes",
                format!(
                    "{max_bytes} is out of range: use the account's quota, from 256 to \
                     {TRUST_POLICY_MAX_BYTES_CEILING} (2048 unless it was raised)"
                ),
            );
        }
        match self.drift_interval() {
            Err(problem) => problems.0.push(problem),
            Ok(interval) if interval < Duration::from_secs(10) => problems.bad(
                "driftInterval",
                format!(
                    "{} is too short: use 10s or more (every sweep reads IAM)",
                    self.drift_interval
                ),
            ),
            Ok(_) => {}
        }
        let associations = self.eks_max_associations();
        if !(1..=super::EKS_ASSOCIATIONS_QUOTA).contains(&associations) {
            problems.bad(
                "eks.maxAssociations",
                format!(
                    "{associations} is out of range: use 1 to {} (EKS's quota per cluster, \
                     which it does not raise)",
                    super::EKS_ASSOCIATIONS_QUOTA
                ),
            );
        }
    }

    /// `aws.*`.
    fn aws_problems(&self, problems: &mut Problems) {
        let rps = self.aws.max_requests_per_second;
        if !(rps.is_finite() && rps > 0.0) {
            problems.bad(
                "aws.maxRequestsPerSecond",
                format!("{rps} must be a number above 0, e.g. 10"),
            );
        }
        if let Some(account) = &self.aws.account_id
            && (account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()))
        {
            problems.bad(
                "aws.accountId",
                format!("{account:?} must be a 12-digit AWS account id"),
            );
        }
        if let Some(url) = &self.aws.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            problems.bad(
                "aws.endpointUrl",
                format!("{url:?} must be an http:// or https:// URL"),
            );
        }
        if let Some(partition) = &self.aws.partition
            && !["aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b"]
                .contains(&partition.as_str())
        {
            problems.bad(
                "aws.partition",
                format!("{partition:?} is not an AWS partition: use aws, aws-cn or aws-us-gov"),
            );
        }
    }
}

impl OperatorConfig {
    /// `accounts[*]`.
    fn account_problems(&self, problems: &mut Problems) {
        let mut seen = std::collections::BTreeSet::new();
        for account in &self.accounts {
            let id = &account.id;
            if !is_account_id(id) {
                problems.bad(
                    "accounts[].id",
                    format!("{id:?} must be a 12-digit AWS account id"),
                );
            } else if !seen.insert(id.as_str()) {
                problems.bad(
                    "accounts[].id",
                    format!("{id} is listed twice: keep one entry per account"),
                );
            } else if self.aws.account_id.as_deref() == Some(id) {
                problems.bad(
                    "accounts[].id",
                    format!(
                        "{id} is the operator's own account (aws.accountId), which needs no \
                         entry: remove it"
                    ),
                );
            }
            match arn_parts(&account.role_arn, "role/") {
                Some((owner, name)) if is_account_id(owner) && !name.is_empty() => {
                    if owner != id {
                        problems.bad(
                            "accounts[].roleArn",
                            format!(
                                "{} is a role of account {owner}, not of {id}: name the role \
                                 the operator assumes in account {id}",
                                account.role_arn
                            ),
                        );
                    }
                }
                _ => problems.bad(
                    "accounts[].roleArn",
                    format!(
                        "{:?} is not a role ARN: write arn:aws:iam::{id}:role/<name>",
                        account.role_arn
                    ),
                ),
            }
            if let Some(rps) = account.max_requests_per_second
                && !(rps.is_finite() && rps > 0.0)
            {
                problems.bad(
                    "accounts[].maxRequestsPerSecond",
                    format!("{rps} must be a number above 0, e.g. 10"),
                );
            }
        }
    }
}

fn is_policy_arn(arn: &str) -> bool {
    arn_parts(arn, "policy/").is_some_and(|(account, name)| {
        (account == "aws" || is_account_id(account)) && !name.is_empty()
    })
}

fn is_oidc_provider_arn(arn: &str) -> bool {
    arn_parts(arn, "oidc-provider/")
        .is_some_and(|(account, host_path)| is_account_id(account) && host_path.contains('.'))
}

/// `arn:<partition>:iam::<account>:<resource_prefix><rest>` → (account, rest).
fn arn_parts<'a>(arn: &'a str, resource_prefix: &str) -> Option<(&'a str, &'a str)> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    if !partition.starts_with("aws") {
        return None;
    }
    let rest = rest.strip_prefix("iam::")?;
    let (account, resource) = rest.split_once(':')?;
    Some((account, resource.strip_prefix(resource_prefix)?))
}

fn is_account_id(account: &str) -> bool {
    account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> OperatorConfig {
        super::super::valid_for_tests()
    }

    #[test]
    fn a_required_boundary_must_be_set() {
        let mut config = valid();
        config.guardrails.require_boundary = true;
        let problems = config.problems();
        assert_eq!(
            problems.iter().map(|p| p.setting).collect::<Vec<_>>(),
            ["guardrails.requireBoundary"]
        );
        assert!(problems[0].message.contains("roles.permissionsBoundaryArn"));
        config.roles.permissions_boundary_arn =
            Some("arn:aws:iam::111122223333:policy/podidentity-boundary".into());
        assert_eq!(config.problems(), vec![]);
    }

    #[test]
    fn the_short_form_is_off_unless_turned_on_and_then_where_named() {
        let mut config = valid();
        assert!(!config.short_form_allowed("shop"));
        config.short_form.namespaces = vec!["shop".into()];
        assert_eq!(
            config
                .problems()
                .iter()
                .map(|p| p.setting)
                .collect::<Vec<_>>(),
            ["shortForm.namespaces"],
            "namespaces without enabled is a mistake, said"
        );
        config.short_form.enabled = true;
        assert_eq!(config.problems(), vec![]);
        assert!(config.short_form_allowed("shop"));
        assert!(!config.short_form_allowed("blog"));
        config.short_form.namespaces = vec![];
        assert!(config.short_form_allowed("blog"));
        config.short_form.namespaces = vec!["Shop_1".into()];
        assert!(
            config.problems()[0]
                .message
                .contains("\"Shop_1\" is not a namespace name")
        );
    }

    #[test]
    fn every_bad_setting_is_named_with_a_fix() {
        let mut config = OperatorConfig::default();
        config.trust_policy.max_bytes = 5000;
        config.roles.max_managed_policies = 25;
        config.roles.path = Some("podidentity".into());
        config.oidc.issuer_url = Some("http://insecure".into());
        config.drift_interval = "soon".into();
        config.aws.account_id = Some("12345".into());
        config.eks.max_associations = Some(6000);
        let settings: Vec<_> = config.problems().iter().map(|p| p.setting).collect();
        assert_eq!(
            settings,
            [
                "clusterName",
                "roles.path",
                "roles.maxManagedPolicies",
                "oidc.issuerUrl",
                "trustPolicy.maxBytes",
                "driftInterval",
                "eks.maxAssociations",
                "aws.accountId"
            ]
        );
        let text = config
            .problems()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            text.contains("trustPolicy.maxBytes: 5000 is out of range"),
            "{text}"
        );
        assert!(text.contains("write it like 10m"), "{text}");
        assert!(
            text.contains("eks.maxAssociations: 6000 is out of range: use 1 to 5000"),
            "{text}"
        );
    }

    #[test]
    fn each_bad_account_is_named_by_its_setting() {
        use super::super::AccountConfig;
        let account = |id: &str, role: &str, rps: Option<f64>| AccountConfig {
            id: id.into(),
            role_arn: role.into(),
            max_requests_per_second: rps,
        };
        let mut config = valid();
        config.aws.account_id = Some("111122223333".into());
        config.accounts = vec![
            account(
                "444455556666",
                "arn:aws:iam::444455556666:role/ops",
                Some(20.0),
            ),
            account("444455556666", "arn:aws:iam::444455556666:role/ops", None),
            account("111122223333", "arn:aws:iam::111122223333:role/ops", None),
            account("12345", "arn:aws:iam::12345:role/ops", None),
            account("777788889999", "arn:aws:iam::444455556666:role/ops", None),
            account("555566667777", "ops", Some(0.0)),
        ];
        let problems = config.problems();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems.iter().map(|p| p.setting).collect::<Vec<_>>(),
            [
                "accounts[].id",
                "accounts[].id",
                "accounts[].id",
                "accounts[].roleArn",
                "accounts[].roleArn",
                "accounts[].roleArn",
                "accounts[].maxRequestsPerSecond"
            ],
            "{text:#?}"
        );
        assert!(
            text[0].contains("444455556666 is listed twice"),
            "{text:#?}"
        );
        assert!(text[1].contains("the operator's own account"), "{text:#?}");
        assert!(
            text[2].contains("\"12345\" must be a 12-digit"),
            "{text:#?}"
        );
        assert!(
            text[4].contains("a role of account 444455556666, not of 777788889999"),
            "{text:#?}"
        );
        assert!(text[5].contains("is not a role ARN"), "{text:#?}");
        // The good one alone passes.
        config.accounts.truncate(1);
        assert_eq!(config.problems(), []);
    }
}
