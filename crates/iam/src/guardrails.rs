//! Guardrails: what a namespace may ask for. The operator configuration's rules apply
//! everywhere; the PodIdentityPolicies that select a namespace add theirs
//! (`Guardrails::rules_for`), and the most restrictive wins.

use std::collections::BTreeMap;

use podidentity_api::config::OperatorConfig;
use podidentity_api::{Effect, PodIdentityBindingSpec};

use crate::effort::{Effort, Judgement, TooComplex};
use crate::error::Violation;
use crate::glob::{self, Shape};
use crate::namespace_policy::{AppliedPolicy, NamespacePolicy, TemplateValues, required_boundary};
use crate::placement::{Placement, place};

/// The rules that apply to one namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSet {
    /// No Allow statement may reach these action patterns.
    pub denied_actions: Vec<String>,
    /// An Allow statement reaching these action patterns may not name a resource that
    /// matches every name (`"*"`, `arn:*`, `...:secret:*`).
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
    /// ARN patterns of what no binding may change: the bucket the operator publishes the
    /// cluster's signing keys to (`oidc.publish.s3Bucket`). Whoever writes there signs
    /// tokens for every ServiceAccount, and assumes every role the operator made.
    pub protected_resources: Vec<String>,
    /// Tag keys a role may not carry from a binding (`guardrails.deniedTagKeys`).
    pub denied_tag_keys: Vec<String>,
    /// The mechanism of bindings that do not name one (`identity.defaultMechanism`).
    pub default_mechanism: podidentity_api::Mechanism,
    /// The account the namespace's roles live in, when its policies place it in one of
    /// the configured `accounts` (`None`: the operator's own).
    pub account: Option<String>,
    /// Set when the namespace's policies place it nowhere the operator acts (an account
    /// not configured, or two accounts): every binding is refused with it.
    pub misplaced: Option<Violation>,
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
            protected_resources: config
                .oidc
                .publish
                .s3_bucket
                .iter()
                .flat_map(|bucket| {
                    [
                        format!("arn:*:s3:::{bucket}"),
                        format!("arn:*:s3:::{bucket}/*"),
                    ]
                })
                .collect(),
            denied_tag_keys: config.guardrails.denied_tag_keys.clone(),
            default_mechanism: config.identity.default_mechanism,
            account: None,
            misplaced: None,
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
    /// forbid. Statements of the spec and of managed policies are judged alike; `field`
    /// is where a judgement that runs out of its bound is refused.
    pub(crate) fn reach<'a>(
        &'a self,
        actions: &[String],
        resources: &[String],
        field: &str,
        judgement: &mut Judgement<'_>,
    ) -> Reach<'a> {
        let denied = actions
            .iter()
            .enumerate()
            .filter_map(|(a, action)| {
                let reached = reached(action, &self.denied_actions, field, judgement);
                (!reached.is_empty()).then_some((a, reached))
            })
            .collect();
        let effort = judgement.effort;
        // A read of a path returns every parameter below it: judged as the path and more.
        let by_path = actions.iter().any(|action| {
            judgement.answer(
                field,
                glob::intersects(action, GET_PARAMETERS_BY_PATH, true, effort),
            ) == Some(true)
        });
        let secret_reads: Vec<&str> = self
            .actions_needing_named_resources
            .iter()
            .filter(|pattern| {
                actions.iter().any(|action| {
                    judgement.answer(field, glob::intersects(action, pattern, true, effort))
                        == Some(true)
                })
            })
            .map(String::as_str)
            .collect();
        let every_resource = resources
            .iter()
            .enumerate()
            .filter_map(|(r, resource)| {
                let reads: Vec<&str> = secret_reads
                    .iter()
                    .copied()
                    .filter(|read| {
                        judgement.answer(field, reads_any_name(resource, read, by_path, effort))
                            == Some(true)
                    })
                    .collect();
                (!reads.is_empty()).then_some((r, reads))
            })
            .collect();
        let changes_s3 = actions.iter().any(|action| {
            judgement.answer(field, glob::intersects(action, "s3:*", true, effort)) == Some(true)
                && !S3_READS.iter().any(|read| {
                    judgement.answer(field, glob::covers(read, action, true, effort)) == Some(true)
                })
        });
        let protected = if changes_s3 {
            resources
                .iter()
                .enumerate()
                .filter(|(_, resource)| {
                    // Every wildcard at its widest: IAM lets a `*` that ends an ARN
                    // field match beyond its colons (`arn:*:prod-oidc/*`).
                    self.protected_resources.iter().any(|p| {
                        judgement.answer(field, glob::reaches_arn(resource, p, effort))
                            == Some(true)
                    })
                })
                .map(|(r, _)| r)
                .collect()
        } else {
            Vec::new()
        };
        Reach {
            denied,
            every_resource,
            protected,
        }
    }

    /// Every guardrail the spec breaks. Deny statements are always fine: they only take
    /// permissions away. Bounded: what cannot be judged within [`Effort::for_judgement`]
    /// is refused.
    pub fn check(&self, spec: &PodIdentityBindingSpec) -> Vec<Violation> {
        let effort = Effort::for_judgement();
        let mut judgement = Judgement::new(&effort);
        self.judge(spec, &mut judgement);
        judgement.violations
    }

    fn judge(&self, spec: &PodIdentityBindingSpec, judgement: &mut Judgement<'_>) {
        self.judge_statements(
            "spec.permissions.statements",
            &spec.permissions.statements,
            judgement,
        );
        // A session policy is judged like the role's own statements.
        if let Some(policy) = &spec.identity.policy {
            self.judge_statements(
                "spec.identity.policy.statements",
                &policy.statements,
                judgement,
            );
        }
        self.judge_rest(spec, judgement);
    }

    /// The configuration's denied actions, protected resources and named-resource rule, on
    /// `statements` at `prefix`.
    fn judge_statements(
        &self,
        prefix: &str,
        statements: &[podidentity_api::Statement],
        judgement: &mut Judgement<'_>,
    ) {
        for (s, statement) in statements.iter().enumerate() {
            if statement.effect == Effect::Deny {
                continue;
            }
            let at = format!("{prefix}[{s}]");
            let reach = self.reach(&statement.actions, &statement.resources, &at, judgement);
            for (a, reached) in &reach.denied {
                judgement.refuse(Violation::guardrail(
                    format!("{at}.actions[{a}]"),
                    format!(
                        "{:?} could allow {}, which the operator's guardrails deny \
                         (guardrails.deniedActions): name the actions you need within \
                         other services, or make this a Deny statement",
                        statement.actions[*a],
                        few(reached)
                    ),
                ));
            }
            for r in &reach.protected {
                judgement.refuse(Violation::guardrail(
                    format!("{at}.resources[{r}]"),
                    protected_message(&statement.resources[*r]),
                ));
            }
            for (r, reads) in &reach.every_resource {
                judgement.refuse(Violation::guardrail(
                    format!("{at}.resources[{r}]"),
                    format!(
                        "{:?} with {} could read every such secret in the account, whatever \
                         its name (guardrails.actionsNeedingNamedResources): name them (the \
                         beginning of a name after its type is fine: ...:secret:shop/*, \
                         ...:key/1234abcd-*, ...:parameter/shop/*)",
                        statement.resources[*r],
                        few(reads)
                    ),
                ));
            }
        }
    }

    /// Everything but the statements.
    fn judge_rest(&self, spec: &PodIdentityBindingSpec, judgement: &mut Judgement<'_>) {
        for (i, arn) in spec.permissions.managed_policy_arns.iter().enumerate() {
            let field = format!("spec.permissions.managedPolicyArns[{i}]");
            let verdict = judge_arn(
                arn,
                Some(&self.allowed_managed_policy_arns),
                &self.denied_managed_policy_arns,
                &field,
                judgement,
            );
            match verdict {
                ArnVerdict::Denied(denied) => {
                    judgement.refuse(Violation::guardrail(
                        field,
                        format!(
                            "{arn} is denied by the operator's guardrails \
                         (guardrails.deniedManagedPolicyArns: {denied}): attach a narrower \
                         policy or write statements"
                        ),
                    ));
                }
                ArnVerdict::NotAllowed => {
                    judgement.refuse(Violation::guardrail(
                        field,
                        format!(
                            "{arn} is not in the operator's allow-list \
                         (guardrails.allowedManagedPolicyArns: {}): ask the platform team to \
                         allow it, or write statements instead",
                            self.allowed_managed_policy_arns.join(", ")
                        ),
                    ));
                }
                ArnVerdict::Passes | ArnVerdict::Unjudged => {}
            }
        }
        for key in spec.role.tags.keys() {
            let effort = judgement.effort;
            let field = format!("spec.role.tags[{key:?}]");
            let denied = self.denied_tag_keys.iter().find(|pattern| {
                judgement.answer(&field, glob::matches(pattern, key, true, effort)) == Some(true)
            });
            if let Some(pattern) = denied {
                judgement.refuse(Violation::guardrail(
                    field,
                    format!(
                        "tag key {key:?} is the platform's (guardrails.deniedTagKeys: \
                         {pattern}): where access is granted by principal tags, it would give \
                         this role what the tag names. Remove it"
                    ),
                ));
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
            judgement.refuse(Violation::guardrail(
                "spec.role.name",
                "explicit role names are not allowed by this operator (roles.allowNameOverride \
                 is false): remove spec.role.name to get the derived name",
            ));
        }
        if let Some(namespace) = &self.unpoliced {
            judgement.refuse(Violation::guardrail(
                "metadata.namespace",
                format!(
                    "no PodIdentityPolicy selects namespace {namespace}, and the operator \
                     requires one (guardrails.requirePolicy): ask the platform team for a \
                     policy that selects it"
                ),
            ));
        }
        if let Some(misplaced) = &self.misplaced {
            judgement.refuse(misplaced.clone());
        }
        if let Err(conflict) = required_boundary(&self.policies) {
            judgement.refuse(conflict);
        }
        let mechanism = spec.identity.effective_mechanism(self.default_mechanism);
        for policy in &self.policies {
            policy.judge(spec, judgement);
            policy.judge_identity(spec, mechanism, judgement);
        }
    }
}

/// Services whose resources have no type before their name (`arn:aws:s3:::bucket/key`,
/// `arn:aws:sqs:eu-west-1:111122223333:queue`): their name starts the resource part.
const TYPELESS_SERVICES: &[&str] = &["s3", "sqs", "sns"];

/// Returns every parameter below a path, authorised against the path alone.
const GET_PARAMETERS_BY_PATH: &str = "ssm:GetParametersByPath";

/// Where AWS, not a namespace, writes the rest of a name (service, resource part):
/// multi-Region keys. A name nobody wrote after one of these is every such key.
const OWNED_BY_AWS: &[(&str, &str)] = &[("kms", "key/mrk-")];

/// Secrets that AWS services keep for themselves are named `<service>!<what AWS writes>`
/// (`rds!db-<uuid>`, `rds!cluster-<uuid>`, `events!connection/...`); anything after the
/// `!` is AWS's, fixed parts included, so a pattern that leaves any of it unwritten
/// (`rds!db-*`) reads every such secret. The services that keep secrets so (AWS's
/// "secrets managed by other services").
const AWS_MANAGED_SECRET_PREFIXES: &[&str] = &[
    "rds!",
    "redshift!",
    "events!",
    "appflow!",
    "sqlworkbench!",
    "ecs-sc!",
    "opsworks-cm!",
    "marketplace-deployment!",
    "directconnect!",
];

/// Whether `resource` can match a resource of the service this action pattern acts on
/// whatever its name: in any partition, region and account, of any type (`secret:`,
/// `key/`, `parameter/`), followed by a name nobody wrote (one that begins with a
/// character the pattern does not name), or by a name AWS writes after a fixed part
/// (`secret:rds!db-*`, `secret:appflow!*`, `key/mrk-*`). This judges what a pattern can match, not how it is
/// spelled: `*`, `arn:*`, `arn:?*`, `arn:aws:kms:*:*:key/*`, `...:secret:*shop*` all can;
/// a name that begins with fixed text (`...:secret:shop/*`) is named. With `by_path`
/// (`ssm:GetParametersByPath`) the resource is a path, and reads what lies below it too.
fn reads_any_name(
    resource: &str,
    pattern: &str,
    by_path: bool,
    effort: &Effort,
) -> Result<bool, TooComplex> {
    let service = pattern.split_once(':').map_or("*", |(service, _)| service);
    let start = |service: &str| {
        Shape::new()
            .literal("arn:")
            .field()
            .literal(":")
            .field_like(service)
            .literal(":")
            .field()
            .literal(":")
            .field()
            .literal(":")
    };
    let mut shapes = Vec::new();
    if TYPELESS_SERVICES.contains(&service.to_ascii_lowercase().as_str()) {
        shapes.push(start(service).unnamed());
    } else {
        for end in [":", "/"] {
            shapes.push(start(service).word().literal(end).unnamed());
        }
    }
    for (owner, prefix) in OWNED_BY_AWS {
        if glob::intersects(service, owner, true, effort)? {
            shapes.push(start(owner).literal(prefix).unnamed());
        }
    }
    if glob::intersects(service, "secretsmanager", true, effort)? {
        for prefix in AWS_MANAGED_SECRET_PREFIXES {
            shapes.push(
                start("secretsmanager")
                    .literal("secret:")
                    .literal(prefix)
                    .field()
                    .unnamed(),
            );
        }
    }
    let below = format!("{resource}*");
    let resources: &[&str] = if by_path && glob::intersects(service, "ssm", true, effort)? {
        &[resource, &below]
    } else {
        &[resource]
    };
    for resource in resources {
        for shape in &shapes {
            if glob::meets_shape(resource, shape, true, effort)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The patterns among `denied` that `action` could reach (glob intersection; action names
/// compare case-insensitively).
pub(crate) fn reached<'a>(
    action: &str,
    denied: &'a [String],
    field: &str,
    judgement: &mut Judgement<'_>,
) -> Vec<&'a str> {
    let effort = judgement.effort;
    denied
        .iter()
        .filter(|pattern| {
            judgement.answer(field, glob::intersects(action, pattern, true, effort)) == Some(true)
        })
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
    /// The bound ran out (the judgement refuses for that).
    Unjudged,
}

/// IAM names (policies' among them) are unique whatever their letter case, so a deny-list
/// matches without case: `.../administratoraccess` is denied as `.../AdministratorAccess`
/// is. An allow-list matches as written (the narrower reading).
pub(crate) fn judge_arn<'a>(
    arn: &str,
    allowed: Option<&[String]>,
    denied: &'a [String],
    field: &str,
    judgement: &mut Judgement<'_>,
) -> ArnVerdict<'a> {
    let effort = judgement.effort;
    for pattern in denied {
        match judgement.answer(field, glob::matches(pattern, arn, true, effort)) {
            Some(true) => return ArnVerdict::Denied(pattern),
            Some(false) => {}
            None => return ArnVerdict::Unjudged,
        }
    }
    let Some(allowed) = allowed else {
        return ArnVerdict::Passes;
    };
    for pattern in allowed {
        match judgement.answer(field, glob::matches(pattern, arn, false, effort)) {
            Some(true) => return ArnVerdict::Passes,
            Some(false) => {}
            None => return ArnVerdict::Unjudged,
        }
    }
    ArnVerdict::NotAllowed
}

/// What one Allow statement reaches that the rules forbid.
pub(crate) struct Reach<'a> {
    /// By action index: the denied patterns that action could allow.
    pub denied: Vec<(usize, Vec<&'a str>)>,
    /// By resource index: the secret reads (`actionsNeedingNamedResources`) of its actions
    /// for which that resource matches any name.
    pub every_resource: Vec<(usize, Vec<&'a str>)>,
    /// By resource index: those that meet a protected resource, for actions that change S3.
    pub protected: Vec<usize>,
}

/// What only reads S3 (the published keys are public anyway).
const S3_READS: &[&str] = &["s3:Get*", "s3:List*", "s3:Describe*"];

/// The refusal of changes to a protected resource.
pub(crate) fn protected_message(resource: &str) -> String {
    format!(
        "{resource:?} reaches the bucket the operator publishes this cluster's signing keys \
         to (oidc.publish.s3Bucket), and these actions change S3: whoever writes there can \
         sign tokens for any ServiceAccount. Name other buckets"
    )
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
    /// The ids of the configured `accounts` (a policy may place namespaces there).
    configured_accounts: Vec<String>,
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
            configured_accounts: config.accounts.iter().map(|a| a.id.clone()).collect(),
            partition: config.partition(),
            region: config
                .aws
                .region
                .clone()
                .unwrap_or_else(|| podidentity_api::config::REGION_PLACEHOLDER.to_string()),
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

    /// `${account}` is the account the namespace's roles live in.
    fn values_for<'a>(
        &'a self,
        namespace: &'a str,
        placement: &'a Placement,
    ) -> TemplateValues<'a> {
        TemplateValues {
            namespace,
            cluster: &self.cluster,
            account: match placement {
                Placement::Account(account) => account,
                Placement::Own | Placement::Refused(_) => &self.account,
            },
            partition: &self.partition,
            region: &self.region,
        }
    }

    /// Where the policies selecting a namespace (of those with `labels`) place it.
    fn placement(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Placement {
        let selecting: Vec<(&str, Option<&str>)> = self
            .policies
            .iter()
            .filter(|policy| policy.selects(labels))
            .map(|policy| (policy.name.as_str(), policy.account()))
            .collect();
        let configured: Vec<&str> = self
            .configured_accounts
            .iter()
            .map(String::as_str)
            .collect();
        place(namespace, &selecting, &self.account, &configured)
    }

    /// The account `namespace`'s roles live in (`None`: the operator's own, or placed
    /// nowhere it may be).
    pub fn account_for(&self, namespace: &str) -> Option<String> {
        match self.placement(namespace, &self.labels_of(namespace)) {
            Placement::Account(account) => Some(account),
            Placement::Own | Placement::Refused(_) => None,
        }
    }

    /// One policy as it applies to `namespace`, if it selects it (without building the
    /// others': a policy's status asks this for every namespace).
    pub fn applied_to(&self, policy: &NamespacePolicy, namespace: &str) -> Option<AppliedPolicy> {
        let labels = self.labels_of(namespace);
        policy.selects(&labels).then(|| {
            let placement = self.placement(namespace, &labels);
            policy.for_namespace(&self.values_for(namespace, &placement))
        })
    }

    /// The rules for `namespace`: the configuration's, those of every policy that
    /// selects it, and the account they place it in.
    pub fn rules_for(&self, namespace: &str) -> RuleSet {
        let labels = self.labels_of(namespace);
        let placement = self.placement(namespace, &labels);
        let values = self.values_for(namespace, &placement);
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
        match placement {
            Placement::Own => {}
            Placement::Account(account) => rules.account = Some(account),
            Placement::Refused(refusal) => rules.misplaced = Some(refusal),
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

    /// Finding 1 of the adversarial pass: the rule refused only the spelling `"*"`, so
    /// `arn:*` read every secret. A resource is judged by what it can match.
    #[test]
    fn every_secret_through_any_spelling_of_everything_is_refused() {
        let every = [
            "*",
            "arn:*",
            "arn:*:*",
            "arn:?*",
            "arn:aws:*",
            "arn:*:secretsmanager:*:*:secret:*",
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:*",
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:?*",
            "arn:aws:secretsmanager:eu-west-1:111122223333:*",
            "ARN:*",
            "arn:aws:kms:*:*:key/*",
            "arn:aws:kms:eu-west-1:111122223333:*",
            "arn:aws:ssm:eu-west-1:111122223333:parameter/*",
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:*-AbCdEf",
            // Names AWS writes after a fixed part: every RDS master password, every
            // multi-Region key.
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:rds!*",
            "arn:aws:kms:eu-west-1:111122223333:key/mrk-*",
            // The third pass: what AWS writes after `<service>!` begins with fixed text
            // too (`db-`, `cluster-`, `connection/`), and every service has its own mark.
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:rds!db-*",
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:rds!cluster-*",
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:events!connection/*",
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:appflow!*",
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:sqlworkbench!?*",
        ];
        for (actions, resources) in [
            (&["secretsmanager:GetSecretValue"][..], &every[..]),
            (&["kms:Decrypt"][..], &every[..]),
            (&["ssm:GetParameters"][..], &every[..]),
            (&["secretsmanager:Get*"][..], &every[..2]),
        ] {
            for resource in resources {
                let mut spec = spec_with(Effect::Allow, actions, &[]);
                spec.permissions.statements[0].resources = vec![resource.to_string()];
                let violations = rules().check(&spec);
                // kms keys and ssm parameters are not secrets of secretsmanager: only the
                // patterns reaching kms (or ssm) must be refused for them.
                let service = actions[0].split(':').next().unwrap_or_default();
                let reaches_service = !resource.contains("secretsmanager")
                    && !resource.contains("kms")
                    && !resource.contains("ssm")
                    || resource.contains(service);
                assert_eq!(
                    violations
                        .iter()
                        .map(|v| v.field.as_str())
                        .collect::<Vec<_>>(),
                    if reaches_service {
                        vec!["spec.permissions.statements[0].resources[0]"]
                    } else {
                        vec![]
                    },
                    "{actions:?} on {resource}"
                );
                if reaches_service {
                    assert!(
                        violations[0]
                            .message
                            .contains("guardrails.actionsNeedingNamedResources")
                            && violations[0].message.contains(resource),
                        "{}",
                        violations[0]
                    );
                }
            }
        }
        // Named secrets, keys and parameters (a name's beginning is a name) pass.
        for (action, named) in [
            (
                "secretsmanager:GetSecretValue",
                "arn:aws:secretsmanager:eu-west-1:111122223333:secret:shop/*",
            ),
            (
                "secretsmanager:GetSecretValue",
                "arn:aws:secretsmanager:*:111122223333:secret:shop-db-??????",
            ),
            (
                "kms:Decrypt",
                "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-*",
            ),
            (
                "ssm:GetParameter",
                "arn:aws:ssm:eu-west-1:111122223333:parameter/shop/*",
            ),
            // Another service's resources: no secret there.
            ("kms:Decrypt", "arn:aws:s3:::shop.orders/*"),
            // One AWS-managed secret, named whole.
            (
                "secretsmanager:GetSecretValue",
                "arn:aws:secretsmanager:eu-west-1:111122223333:secret:rds!db-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-AbCdEf",
            ),
        ] {
            let mut spec = spec_with(Effect::Allow, &[action], &[]);
            spec.permissions.statements[0].resources = vec![named.to_string()];
            assert_eq!(rules().check(&spec), vec![], "{action} on {named}");
        }
    }

    /// The second adversarial pass: a path read returns every parameter below the path,
    /// and a path names nothing; other ways to another's secret are refused by default.
    #[test]
    fn a_path_read_is_judged_with_what_lies_below_and_secret_writes_need_names() {
        let judge = |actions: &[&str], resource: &str| {
            let mut spec = spec_with(Effect::Allow, actions, &[]);
            spec.permissions.statements[0].resources = vec![resource.to_string()];
            rules().check(&spec)
        };
        let root = "arn:aws:ssm:eu-west-1:111122223333:parameter/";
        assert_eq!(judge(&["ssm:GetParametersByPath"], root).len(), 1);
        assert_eq!(judge(&["ssm:GetParameter*"], root).len(), 1);
        assert_eq!(
            judge(
                &["ssm:GetParametersByPath"],
                "arn:aws:ssm:eu-west-1:111122223333:parameter/shop"
            ),
            vec![]
        );
        // One parameter read by its name: the path alone is no wildcard.
        assert_eq!(judge(&["ssm:GetParameter"], root), vec![]);
        for (action, every) in [
            ("secretsmanager:PutSecretValue", "*"),
            ("ssm:PutParameter", "arn:aws:ssm:*:*:parameter/*"),
            ("kms:CreateGrant", "arn:aws:kms:*:*:key/*"),
            ("kms:ReEncryptFrom", "*"),
        ] {
            assert_eq!(judge(&[action], every).len(), 1, "{action} on {every}");
        }
        for denied in [
            "secretsmanager:PutResourcePolicy",
            "kms:PutKeyPolicy",
            "ecs:ExecuteCommand",
        ] {
            assert_eq!(
                judge(
                    &[denied],
                    "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-5678"
                )[0]
                .field,
                "spec.permissions.statements[0].actions[0]",
                "{denied}"
            );
        }
    }

    /// The second adversarial pass: `s3:PutObject` on the bucket the operator publishes
    /// the signing keys to let a namespace sign tokens for any ServiceAccount.
    #[test]
    fn the_bucket_of_the_signing_keys_is_out_of_reach() {
        let mut config = OperatorConfig {
            cluster_name: "prod".into(),
            ..OperatorConfig::default()
        };
        config.oidc.publish.s3_bucket = Some("prod-oidc".into());
        let rules = RuleSet::from_config(&config);
        let judge = |actions: &[&str], resource: &str| {
            let mut spec = spec_with(Effect::Allow, actions, &[]);
            spec.permissions.statements[0].resources = vec![resource.to_string()];
            rules.check(&spec)
        };
        for (actions, resource) in [
            (&["s3:PutObject"][..], "arn:aws:s3:::prod-oidc/*"),
            (&["s3:*"][..], "*"),
            (&["s3:Delete*"][..], "arn:aws:s3:::prod-*"),
            (
                &["s3:GetObject", "s3:PutBucketPolicy"][..],
                "arn:*:s3:::prod-oidc",
            ),
            // The third pass: a `*` that ends an ARN field may match across its colons
            // (IAM's Resource documentation), so these reach the bucket too.
            (&["s3:PutObject"][..], "arn:aws:s3:*:prod-oidc/*"),
            (&["s3:PutObject"][..], "arn:aws:*:prod-oidc/*"),
            (&["s3:PutObject"][..], "arn:aws:s*:prod-oidc/*"),
            (&["s3:PutObject"][..], "arn:*:prod-oidc/*"),
        ] {
            let violations = judge(actions, resource);
            assert_eq!(
                violations.len(),
                1,
                "{actions:?} on {resource}: {violations:?}"
            );
            assert!(
                violations[0].message.contains("oidc.publish.s3Bucket"),
                "{}",
                violations[0]
            );
        }
        // Reading it, and writing other buckets: fine.
        assert_eq!(judge(&["s3:GetObject", "s3:List*"], "*"), vec![]);
        assert_eq!(
            judge(&["s3:PutObject"], "arn:aws:s3:::shop.orders/*"),
            vec![]
        );
    }

    /// The second adversarial pass: role tags are principal tags, and in an account that
    /// grants by tag (ABAC) `team=payments` made a role payments'.
    #[test]
    fn tag_keys_the_platform_keeps_are_refused_in_any_case() {
        let mut config = OperatorConfig {
            cluster_name: "prod".into(),
            ..OperatorConfig::default()
        };
        config.guardrails.denied_tag_keys = vec!["team".into(), "kubernetes-*".into()];
        let rules = RuleSet::from_config(&config);
        let mut spec = spec_with(Effect::Allow, &["s3:GetObject"], &[]);
        spec.permissions.statements[0].resources = vec!["arn:aws:s3:::shop.x/*".into()];
        spec.role.tags = [
            ("TEAM", "payments"),
            ("kubernetes-namespace", "payments"),
            ("cost-center", "42"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        let fields: Vec<String> = rules.check(&spec).into_iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            [
                "spec.role.tags[\"TEAM\"]",
                "spec.role.tags[\"kubernetes-namespace\"]"
            ]
        );
    }

    /// Finding 6: a deny-list of managed policy ARNs compared letter case, and IAM's
    /// names do not.
    #[test]
    fn a_denied_managed_policy_is_denied_in_any_letter_case() {
        for arn in [
            "arn:aws:iam::aws:policy/administratoraccess",
            "arn:aws:iam::aws:policy/ADMINISTRATORACCESS",
            // In every partition.
            "arn:aws-us-gov:iam::aws:policy/AdministratorAccess",
        ] {
            let violations = rules().check(&spec_with(Effect::Allow, &["s3:GetObject"], &[arn]));
            assert_eq!(violations.len(), 1, "{arn}: {violations:?}");
            assert!(
                violations[0]
                    .message
                    .contains("guardrails.deniedManagedPolicyArns"),
                "{}",
                violations[0]
            );
        }
    }

    /// Finding 4: one binding kept the engine busy for minutes. Whatever it writes, the
    /// judgement ends within its bound, and what exceeds the bound is refused, naming it.
    #[test]
    fn a_binding_too_complex_to_judge_is_refused_within_the_bound() {
        let mut teams = rules();
        let policy = crate::namespace_policy::NamespacePolicy::from_resource(
            &podidentity_api::PodIdentityPolicy::new(
                "teams",
                serde_json::from_value(serde_json::json!({
                    "namespaceSelector": {},
                    "allowedResources": ["arn:aws:s3:::${namespace}.*"],
                }))
                .unwrap_or_else(|err| panic!("{err}")),
            ),
        )
        .unwrap_or_else(|problems| panic!("{problems:?}"));
        teams.policies = vec![
            policy.for_namespace(&crate::namespace_policy::TemplateValues {
                namespace: "team",
                cluster: "prod",
                account: "111122223333",
                partition: "aws",
                region: "eu-west-1",
            }),
        ];
        // The worst cases the adversarial pass found: judged exactly, and cheaply.
        let distinct: String = (0..1000u32)
            .filter_map(|n| char::from_u32(0x4e00 + n))
            .flat_map(|ch| ['*', ch])
            .collect();
        for resource in [
            format!("arn:aws:s3:::team.{}", "*?".repeat(400)),
            format!("arn:aws:s3:::team.{distinct}"),
        ] {
            let mut spec = spec_with(Effect::Allow, &["s3:GetObject"], &[]);
            spec.permissions.statements[0].resources = vec![resource];
            assert_eq!(teams.check(&spec), vec![]);
        }
        // A hundred statements of a hundred such resources each: more than one judgement
        // may do. Refused at the first field past the bound, once.
        let mut spec = spec_with(Effect::Allow, &["s3:GetObject"], &[]);
        let heavy: Vec<String> = (0..100)
            .map(|i| format!("arn:aws:s3:::team.{i}{}", "*a".repeat(1000)))
            .collect();
        spec.permissions.statements = (0..100)
            .map(|_| podidentity_api::Statement {
                actions: vec!["s3:GetObject".into()],
                resources: heavy.clone(),
                ..Default::default()
            })
            .collect();
        let violations = teams.check(&spec);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0]
                .field
                .starts_with("spec.permissions.statements[")
                && violations[0]
                    .message
                    .contains("could not judge this within the operator's bound"),
            "{}",
            violations[0]
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
