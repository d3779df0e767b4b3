//! Guardrails: what a namespace may ask for. The operator configuration's rules apply
//! everywhere; the PodIdentityPolicies that select a namespace add theirs
//! (`Guardrails::rules_for`), and the most restrictive wins.

use std::collections::BTreeMap;

use podidentity_api::config::OperatorConfig;
use podidentity_api::{Effect, PodIdentityBindingSpec};

use crate::error::Violation;
use crate::glob;
use crate::namespace_policy::{AppliedPolicy, NamespacePolicy, TemplateValues, required_boundary};

/// The rules that apply to one namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSet {
    /// No Allow statement may reach these action patterns.
    pub denied_actions: Vec<String>,
    /// An Allow statement reaching these action patterns may not name `"*"` as resource.
    pub actions_needing_named_resources: Vec<String>,
    /// Managed policies must match one of these globs...
    pub allowed_managed_policy_arns: Vec<String>,
    /// ...and none of these.
    pub denied_managed_policy_arns: Vec<String>,
    /// Whether `spec.role.name` may be set.
    pub allow_name_override: bool,
    /// The configuration's boundary for every role.
    pub permissions_boundary_arn: Option<String>,
    /// The PodIdentityPolicies that select this namespace, templates filled in.
    pub policies: Vec<AppliedPolicy>,
    /// Set when no policy selects the namespace and the configuration requires one.
    pub unpoliced: Option<String>,
}

impl RuleSet {
    pub fn from_config(config: &OperatorConfig) -> Self {
        Self {
            denied_actions: config.guardrails.denied_actions.clone(),
            actions_needing_named_resources: config
                .guardrails
                .actions_needing_named_resources
                .clone(),
            allowed_managed_policy_arns: config.guardrails.allowed_managed_policy_arns.clone(),
            denied_managed_policy_arns: config.guardrails.denied_managed_policy_arns.clone(),
            allow_name_override: config.roles.allow_name_override,
            permissions_boundary_arn: config.roles.permissions_boundary_arn.clone(),
            policies: Vec::new(),
            unpoliced: None,
        }
    }

    /// The boundary a role of this namespace gets: the one its policies require, else
    /// the configuration's.
    pub fn permissions_boundary(&self) -> Result<Option<String>, Violation> {
        Ok(required_boundary(&self.policies)?
            .map(str::to_string)
            .or_else(|| self.permissions_boundary_arn.clone()))
    }

    /// What an Allow statement of these actions and resources reaches that these rules
    /// forbid. Statements of the spec and of managed policies are judged alike.
    pub(crate) fn reach<'a>(&'a self, actions: &[String], resources: &[String]) -> Reach<'a> {
        let denied = actions
            .iter()
            .enumerate()
            .filter_map(|(a, action)| {
                let reached = reached(action, &self.denied_actions);
                (!reached.is_empty()).then_some((a, reached))
            })
            .collect();
        let secret_reads: Vec<&str> = self
            .actions_needing_named_resources
            .iter()
            .filter(|pattern| {
                actions
                    .iter()
                    .any(|action| glob::intersects(action, pattern, true))
            })
            .map(String::as_str)
            .collect();
        let every_resource = if secret_reads.is_empty() {
            Vec::new()
        } else {
            resources
                .iter()
                .enumerate()
                .filter(|(_, resource)| *resource == "*")
                .map(|(r, _)| r)
                .collect()
        };
        Reach {
            denied,
            secret_reads,
            every_resource,
        }
    }

    /// Every guardrail the spec breaks. Deny statements are always fine: they only take
    /// permissions away.
    pub fn check(&self, spec: &PodIdentityBindingSpec) -> Vec<Violation> {
        let mut violations = Vec::new();
        for (s, statement) in spec.permissions.statements.iter().enumerate() {
            if statement.effect == Effect::Deny {
                continue;
            }
            let reach = self.reach(&statement.actions, &statement.resources);
            for (a, reached) in &reach.denied {
                violations.push(Violation::guardrail(
                    format!("spec.permissions.statements[{s}].actions[{a}]"),
                    format!(
                        "{:?} could allow {}, which the operator's guardrails deny \
                         (guardrails.deniedActions): name the actions you need within \
                         other services, or make this a Deny statement",
                        statement.actions[*a],
                        few(reached)
                    ),
                ));
            }
            for r in &reach.every_resource {
                violations.push(Violation::guardrail(
                    format!("spec.permissions.statements[{s}].resources[{r}]"),
                    format!(
                        "\"*\" with {} would read every such secret in the account \
                         (guardrails.actionsNeedingNamedResources): name the resources' \
                         ARNs (a prefix ending in * is fine)",
                        few(&reach.secret_reads)
                    ),
                ));
            }
        }
        for (i, arn) in spec.permissions.managed_policy_arns.iter().enumerate() {
            let field = format!("spec.permissions.managedPolicyArns[{i}]");
            let verdict = judge_arn(
                arn,
                Some(&self.allowed_managed_policy_arns),
                &self.denied_managed_policy_arns,
            );
            match verdict {
                ArnVerdict::Denied(denied) => {
                    violations.push(Violation::guardrail(
                        field,
                        format!(
                            "{arn} is denied by the operator's guardrails \
                         (guardrails.deniedManagedPolicyArns: {denied}): attach a narrower \
                         policy or write statements"
                        ),
                    ));
                }
                ArnVerdict::NotAllowed => {
                    violations.push(Violation::guardrail(
                        field,
                        format!(
                            "{arn} is not in the operator's allow-list \
                         (guardrails.allowedManagedPolicyArns: {}): ask the platform team to \
                         allow it, or write statements instead",
                            self.allowed_managed_policy_arns.join(", ")
                        ),
                    ));
                }
                ArnVerdict::Passes => {}
            }
        }
        let named_by_policy = self
            .policies
            .iter()
            .any(|p| !p.role_name_override.is_empty());
        if spec
            .role
            .name
            .as_deref()
            .is_some_and(|name| !name.is_empty())
            && !self.allow_name_override
            && !named_by_policy
        {
            violations.push(Violation::guardrail(
                "spec.role.name",
                "explicit role names are not allowed by this operator (roles.allowNameOverride \
                 is false): remove spec.role.name to get the derived name",
            ));
        }
        if let Some(namespace) = &self.unpoliced {
            violations.push(Violation::guardrail(
                "metadata.namespace",
                format!(
                    "no PodIdentityPolicy selects namespace {namespace}, and the operator \
                     requires one (guardrails.requirePolicy): ask the platform team for a \
                     policy that selects it"
                ),
            ));
        }
        if let Err(conflict) = required_boundary(&self.policies) {
            violations.push(conflict);
        }
        for policy in &self.policies {
            violations.extend(policy.check(spec));
        }
        violations
    }
}

/// The patterns among `denied` that `action` could reach (glob intersection; action names
/// compare case-insensitively).
pub(crate) fn reached<'a>(action: &str, denied: &'a [String]) -> Vec<&'a str> {
    denied
        .iter()
        .filter(|pattern| glob::intersects(action, pattern, true))
        .map(String::as_str)
        .collect()
}

/// How a managed policy ARN fares against a deny-list and an allow-list (`None`: no
/// allow-list, anything not denied passes).
#[derive(Debug)]
pub(crate) enum ArnVerdict<'a> {
    Denied(&'a str),
    NotAllowed,
    Passes,
}

pub(crate) fn judge_arn<'a>(
    arn: &str,
    allowed: Option<&[String]>,
    denied: &'a [String],
) -> ArnVerdict<'a> {
    if let Some(pattern) = denied.iter().find(|p| glob::matches(p, arn, false)) {
        return ArnVerdict::Denied(pattern);
    }
    match allowed {
        Some(allowed) if !allowed.iter().any(|p| glob::matches(p, arn, false)) => {
            ArnVerdict::NotAllowed
        }
        _ => ArnVerdict::Passes,
    }
}

/// What one Allow statement reaches that the rules forbid.
pub(crate) struct Reach<'a> {
    /// By action index: the denied patterns that action could allow.
    pub denied: Vec<(usize, Vec<&'a str>)>,
    /// The secret reads among its actions...
    pub secret_reads: Vec<&'a str>,
    /// ...and the indexes of its `"*"` resources, where there are secret reads.
    pub every_resource: Vec<usize>,
}

/// The first three of `patterns`, and how many more: a wildcard can reach every denied
/// pattern, and the message must stay readable.
pub(crate) fn few<S: AsRef<str>>(patterns: &[S]) -> String {
    let shown: Vec<&str> = patterns.iter().take(3).map(AsRef::as_ref).collect();
    match patterns.len() {
        0..=3 => shown.join(", "),
        n => format!("{} and {} more", shown.join(", "), n - 3),
    }
}

/// Where the validator gets the rules for a binding's namespace.
#[derive(Clone, Debug)]
pub struct Guardrails {
    default_rules: RuleSet,
    policies: Vec<NamespacePolicy>,
    /// Namespace labels by name; a namespace not here has only the label Kubernetes gives
    /// every namespace, `kubernetes.io/metadata.name`.
    namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    require_policy: bool,
    cluster: String,
    account: String,
    partition: String,
    region: String,
}

/// The label every namespace carries (Kubernetes sets it).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A namespace's labels as selectors see them: with its name as a label, which
/// Kubernetes sets (and older objects or manifests may lack).
pub fn selectable_labels(
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut labels = labels.cloned().unwrap_or_default();
    labels.insert(NAMESPACE_NAME_LABEL.to_string(), namespace.to_string());
    labels
}

impl Guardrails {
    pub fn from_config(config: &OperatorConfig) -> Self {
        Self {
            default_rules: RuleSet::from_config(config),
            policies: Vec::new(),
            namespace_labels: BTreeMap::new(),
            require_policy: config.guardrails.require_policy,
            cluster: config.cluster_name.clone(),
            account: config.account_id_or_placeholder().to_string(),
            partition: config.partition(),
            region: config
                .aws
                .region
                .clone()
                .unwrap_or_else(|| "<region>".to_string()),
        }
    }

    /// With these PodIdentityPolicies and namespace labels.
    pub fn with_policies(
        mut self,
        policies: Vec<NamespacePolicy>,
        namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    ) -> Self {
        self.policies = policies;
        self.namespace_labels = namespace_labels;
        self
    }

    fn labels_of(&self, namespace: &str) -> BTreeMap<String, String> {
        selectable_labels(namespace, self.namespace_labels.get(namespace))
    }

    /// The namespaces whose labels these guardrails hold.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespace_labels.keys().map(String::as_str)
    }

    fn values_for<'a>(&'a self, namespace: &'a str) -> TemplateValues<'a> {
        TemplateValues {
            namespace,
            cluster: &self.cluster,
            account: &self.account,
            partition: &self.partition,
            region: &self.region,
        }
    }

    /// One policy as it applies to `namespace`, if it selects it (without building the
    /// others': a policy's status asks this for every namespace).
    pub fn applied_to(&self, policy: &NamespacePolicy, namespace: &str) -> Option<AppliedPolicy> {
        policy
            .selects(&self.labels_of(namespace))
            .then(|| policy.for_namespace(&self.values_for(namespace)))
    }

    /// The rules for `namespace`: the configuration's, and those of every policy that
    /// selects it.
    pub fn rules_for(&self, namespace: &str) -> RuleSet {
        let labels = self.labels_of(namespace);
        let values = self.values_for(namespace);
        let mut rules = self.default_rules.clone();
        rules.policies = self
            .policies
            .iter()
            .filter(|policy| policy.selects(&labels))
            .map(|policy| policy.for_namespace(&values))
            .collect();
        if self.require_policy && rules.policies.is_empty() {
            rules.unpoliced = Some(namespace.to_string());
        }
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podidentity_api::Statement;

    fn spec_with(effect: Effect, actions: &[&str], managed: &[&str]) -> PodIdentityBindingSpec {
        let mut spec = PodIdentityBindingSpec {
            service_account_name: "orders".into(),
            ..Default::default()
        };
        spec.permissions.statements.push(Statement {
            effect,
            actions: actions.iter().map(ToString::to_string).collect(),
            resources: vec!["*".into()],
            ..Default::default()
        });
        spec.permissions.managed_policy_arns = managed.iter().map(ToString::to_string).collect();
        spec
    }

    fn rules() -> RuleSet {
        RuleSet::from_config(&OperatorConfig {
            cluster_name: "prod".into(),
            ..OperatorConfig::default()
        })
    }

    #[test]
    fn allow_statements_that_could_reach_a_denied_action_are_refused() {
        let spec = spec_with(
            Effect::Allow,
            &[
                "s3:GetObject",
                "*",
                "i*:*",
                "iam:Pass*",
                "ORGANIZATIONS:List*",
            ],
            &[],
        );
        let fields: Vec<_> = rules().check(&spec).into_iter().map(|v| v.field).collect();
        let mut expected = [1, 2, 3, 4]
            .map(|a| format!("spec.permissions.statements[0].actions[{a}]"))
            .to_vec();
        // `*` on `*` also reads every secret.
        expected.push("spec.permissions.statements[0].resources[0]".into());
        assert_eq!(fields, expected);
    }

    #[test]
    fn the_default_rules_refuse_each_way_out_of_the_namespace() {
        // (an action a namespace owner might write, the escape it opens)
        let escapes = [
            ("sts:AssumeRole", "any role that trusts the account"),
            ("sts:Assume*", "any role that trusts the account"),
            ("eks:CreateAccessEntry", "cluster admin"),
            ("eks:AssociateAccessPolicy", "cluster admin"),
            ("eks:*", "cluster admin"),
            ("ssm:SendCommand", "the nodes"),
            ("ssm:Start*", "the nodes"),
            ("ec2-instance-connect:SendSSHPublicKey", "the nodes"),
            ("lambda:UpdateFunctionCode", "another role's code"),
            ("organizations:*", "the organization"),
        ];
        for (action, escape) in escapes {
            let violations = rules().check(&spec_with(Effect::Allow, &[action], &[]));
            assert_eq!(
                violations
                    .iter()
                    .map(|v| v.field.as_str())
                    .collect::<Vec<_>>(),
                ["spec.permissions.statements[0].actions[0]"],
                "{action} reaches {escape} and must be refused"
            );
            assert!(violations[0].message.contains("guardrails.deniedActions"));
        }
        // What workloads ask for every day stays allowed.
        for action in [
            "s3:GetObject",
            "sqs:SendMessage",
            "dynamodb:*",
            "eks:DescribeCluster",
        ] {
            let mut spec = spec_with(Effect::Allow, &[action], &[]);
            spec.permissions.statements[0].resources = vec!["arn:aws:s3:::shop-*".into()];
            assert_eq!(rules().check(&spec), vec![], "{action}");
        }
    }

    #[test]
    fn secret_reads_need_named_resources() {
        let mut spec = spec_with(Effect::Allow, &["s3:GetObject", "secretsmanager:Get*"], &[]);
        spec.permissions.statements[0].resources = vec!["arn:aws:s3:::shop/*".into(), "*".into()];
        let violations = rules().check(&spec);
        assert_eq!(
            violations
                .iter()
                .map(|v| v.field.as_str())
                .collect::<Vec<_>>(),
            ["spec.permissions.statements[0].resources[1]"]
        );
        assert!(
            violations[0]
                .message
                .contains("secretsmanager:GetSecretValue")
                && violations[0]
                    .message
                    .contains("guardrails.actionsNeedingNamedResources"),
            "{}",
            violations[0]
        );
        // Named (a prefix is fine), or a Deny: allowed.
        spec.permissions.statements[0].resources =
            vec!["arn:aws:secretsmanager:eu-west-1:111122223333:secret:shop/*".into()];
        assert_eq!(rules().check(&spec), vec![]);
        assert_eq!(
            rules().check(&spec_with(Effect::Deny, &["secretsmanager:*"], &[])),
            vec![]
        );
    }

    #[test]
    fn a_wildcard_names_a_few_of_the_denied_patterns_and_counts_the_rest() {
        let violations = rules().check(&spec_with(Effect::Allow, &["*"], &[]));
        let more = podidentity_api::config::DEFAULT_DENIED_ACTIONS.len() - 3;
        assert!(
            violations[0].message.contains(&format!(
                "iam:*, organizations:*, account:* and {more} more"
            )),
            "{}",
            violations[0]
        );
    }

    #[test]
    fn deny_statements_are_always_fine() {
        assert_eq!(
            rules().check(&spec_with(Effect::Deny, &["*", "iam:*"], &[])),
            vec![]
        );
    }

    #[test]
    fn managed_policies_pass_the_allow_list_and_the_deny_list_wins() {
        let spec = spec_with(
            Effect::Allow,
            &["s3:GetObject"],
            &[
                "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
                "arn:aws:iam::aws:policy/AdministratorAccess",
                "arn:aws:iam::111122223333:policy/team-policy",
            ],
        );
        let violations = rules().check(&spec);
        assert_eq!(violations.len(), 2);
        assert!(
            violations[0].message.contains("deniedManagedPolicyArns"),
            "{}",
            violations[0]
        );
        assert_eq!(violations[1].field, "spec.permissions.managedPolicyArns[2]");
        assert!(
            violations[1]
                .message
                .contains("not in the operator's allow-list")
        );
    }

    #[test]
    fn name_override_needs_permission() {
        let mut spec = spec_with(Effect::Allow, &["s3:GetObject"], &[]);
        spec.role.name = Some("custom".into());
        assert_eq!(rules().check(&spec)[0].field, "spec.role.name");
        let mut permissive = rules();
        permissive.allow_name_override = true;
        assert_eq!(permissive.check(&spec), vec![]);
    }
}
