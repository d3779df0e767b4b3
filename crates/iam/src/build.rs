//! The desired state of one binding: the IAM role with its documents, the ServiceAccount
//! annotations and the credentials Secret. `desired_state` is the one function that both
//! the controller and `plan` call, so the two can never disagree.

use std::collections::BTreeMap;

use podidentity_api::annotations::{
    self, DEFAULT_AUDIENCE, DEFAULT_STS_REGIONAL_ENDPOINTS, DEFAULT_TOKEN_EXPIRATION_SECONDS,
};
use podidentity_api::binding::is_dns_name;
use podidentity_api::config::OperatorConfig;
use podidentity_api::{DeletionPolicy, Mechanism, PodIdentityBindingSpec, TrustPolicySize};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::document::{OneOrMany, PolicyDocument, PolicyStatement};
use crate::error::{Error, Violation};
use crate::guardrails::{Guardrails, RuleSet};
use crate::naming;
use crate::trust::{PodIdentitySubject, pod_identity_statement, trust_policy_for};
use crate::validate::validate;

/// Name of the role's one inline policy.
pub const INLINE_POLICY_NAME: &str = "podidentity-permissions";

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredRole {
    pub name: String,
    pub path: String,
    pub arn: String,
    pub description: String,
    pub max_session_duration_seconds: i64,
    pub trust_policy: PolicyDocument,
    /// The one inline policy ([`INLINE_POLICY_NAME`]), or none.
    pub inline_policy: Option<PolicyDocument>,
    pub managed_policy_arns: Vec<String>,
    pub permissions_boundary_arn: Option<String>,
    /// Ownership tags and the user's tags.
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredServiceAccount {
    pub name: String,
    pub create: bool,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredSecret {
    pub name: String,
    /// The `credentials` key, in the ccoctl format.
    pub credentials: String,
}

/// The EKS Pod Identity association a binding in Pod Identity mode keeps.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredAssociation {
    pub cluster: String,
    pub namespace: String,
    pub service_account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_role_arn: Option<String>,
    pub disable_session_tags: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyDocument>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredState {
    pub mechanism: Mechanism,
    /// Pod Identity only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub association: Option<DesiredAssociation>,
    pub role: DesiredRole,
    pub trust_policy_size: TrustPolicySize,
    pub service_account: DesiredServiceAccount,
    pub credentials_secret: Option<DesiredSecret>,
    pub deletion_policy: DeletionPolicy,
    /// The account the role lives in, when not the operator's own (the namespace's
    /// PodIdentityPolicies place it in one of the configured `accounts`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// Identifies a binding: where it lives and what it is called.
#[derive(Clone, Copy, Debug)]
pub struct BindingRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// The role name its status records, if any: a role made before revision 3 keeps its
    /// legacy name (see [`naming::role_name_keeping_legacy`]).
    pub recorded_role_name: Option<&'a str>,
    /// The `podidentity.io/binding` tag when it is not the name: a role made for a
    /// CredentialsRequest is tagged with the request, so a binding of the same name is a
    /// conflict rather than a second owner.
    pub owner_tag: Option<&'a str>,
}

impl<'a> BindingRef<'a> {
    /// A binding with no status (a manifest, or one never reconciled).
    pub fn new(namespace: &'a str, name: &'a str) -> Self {
        Self {
            namespace,
            name,
            recorded_role_name: None,
            owner_tag: None,
        }
    }

    /// A binding as the API server has it, status included.
    pub fn of(namespace: &'a str, binding: &'a podidentity_api::PodIdentityBinding) -> Self {
        Self {
            namespace,
            name: binding.metadata.name.as_deref().unwrap_or_default(),
            recorded_role_name: binding
                .status
                .as_ref()
                .and_then(|status| status.role_name.as_deref()),
            owner_tag: None,
        }
    }

    /// The role name the operator derives for this binding (no `spec.role.name`).
    pub fn derived_role_name(&self, config: &OperatorConfig) -> String {
        naming::role_name_keeping_legacy(
            &config.role_name_prefix(),
            self.namespace,
            self.name,
            self.recorded_role_name,
        )
    }
}

impl BindingRef<'_> {
    /// The API server guarantees these for real objects; files read by `plan` may hold
    /// anything, and role names are derived from them.
    fn problems(&self) -> Vec<Violation> {
        let mut problems = Vec::new();
        if !is_dns_name(self.namespace, 63, false) {
            problems.push(Violation::invalid(
                "metadata.namespace",
                format!(
                    "{:?} is not a namespace name: use 1 to 63 lowercase letters, digits and '-'",
                    self.namespace
                ),
            ));
        }
        if !is_dns_name(self.name, 253, true) {
            problems.push(Violation::invalid(
                "metadata.name",
                format!(
                    "{:?} is not an object name: use lowercase letters, digits, '-' and '.'",
                    self.name
                ),
            ));
        }
        problems
    }
}

/// Validates a binding and, if nothing refuses it, builds what it should produce.
pub fn desired_state(
    binding: BindingRef<'_>,
    spec: &PodIdentityBindingSpec,
    config: &OperatorConfig,
    guardrails: &Guardrails,
) -> Result<DesiredState, Error> {
    desired_state_under(
        binding,
        spec,
        config,
        &guardrails.rules_for(binding.namespace),
    )
}

/// [`desired_state`] under the rule set of the binding's namespace, already built (a
/// caller that needs the rules itself builds them once).
pub fn desired_state_under(
    binding: BindingRef<'_>,
    spec: &PodIdentityBindingSpec,
    config: &OperatorConfig,
    rules: &RuleSet,
) -> Result<DesiredState, Error> {
    desired_state_trusting(
        binding,
        spec,
        config,
        rules,
        std::slice::from_ref(&spec.service_account_name),
    )
}

/// [`desired_state_under`] for a role that `service_accounts` (all in the binding's
/// namespace) may assume: a CredentialsRequest's list.
pub fn desired_state_trusting(
    binding: BindingRef<'_>,
    spec: &PodIdentityBindingSpec,
    config: &OperatorConfig,
    rules: &RuleSet,
    service_accounts: &[String],
) -> Result<DesiredState, Error> {
    // Everything is built as the namespace's account sees it: its ARNs, its provider.
    let config = &*config.in_account(rules.account.as_deref());
    let mechanism = spec
        .identity
        .effective_mechanism(config.identity.default_mechanism);
    let trust = match (mechanism, service_accounts) {
        (Mechanism::PodIdentity, [service_account]) => mechanism_trust(
            binding.namespace,
            spec,
            config,
            MechanismTrust::PodIdentity {
                service_account,
                session_tags: !spec.identity.disable_session_tags,
            },
        ),
        // A CredentialsRequest (several ServiceAccounts) is IRSA's.
        _ => trust_policy_for(
            &config.all_provider_arns(),
            binding.namespace,
            service_accounts,
            &spec.audience,
        ),
    };
    let inline = with_role_chaining(inline_policy(spec), spec, mechanism);
    let mut violations: Vec<Violation> = binding.problems();
    let prefix = config.role_name_prefix();
    if let Some(name) = spec.role.name.as_deref().filter(|name| !name.is_empty())
        && naming::override_takes_derived_name(&prefix, binding.namespace, name)
    {
        violations.push(Violation::guardrail(
            "spec.role.name",
            format!(
                "{name:?} has the shape of the names the operator derives for bindings in other \
                 namespaces (beginning {prefix:?}, or holding '.'): an explicit name here must \
                 begin with \"{prefix}{}{}\" or not look derived at all",
                binding.namespace,
                naming::NAMESPACE_SEPARATOR
            ),
        ));
    }
    if mechanism == Mechanism::PodIdentity
        && let Some(account) = &rules.account
    {
        violations.push(Violation::guardrail(
            "spec.identity.mechanism",
            format!(
                "PodIdentity needs the role in the cluster's own account, and this namespace's \
                 roles live in account {account} (its PodIdentityPolicy's spec.account): use \
                 IRSA here, or a role in the cluster's account with identity.targetRoleArn"
            ),
        ));
    }
    violations.extend(validate(spec, config, rules, &trust, inline.as_ref()));
    if !violations.is_empty() {
        return Err(Error::Refused(violations));
    }
    // Policies requiring different boundaries were refused by the check above.
    let boundary = rules.permissions_boundary().unwrap_or_default();
    let mut desired = build(binding, spec, config, trust, inline, boundary);
    desired.account = rules.account.clone();
    Ok(desired)
}

/// What one mechanism's trust admits: the ServiceAccount, and for Pod Identity whether
/// its sessions are tagged.
#[derive(Clone, Copy, Debug)]
pub enum MechanismTrust<'a> {
    Irsa {
        service_account: &'a str,
    },
    PodIdentity {
        service_account: &'a str,
        session_tags: bool,
    },
}

/// The trust statements of one mechanism for one ServiceAccount of `namespace`.
pub fn mechanism_trust(
    namespace: &str,
    spec: &PodIdentityBindingSpec,
    config: &OperatorConfig,
    trust: MechanismTrust<'_>,
) -> PolicyDocument {
    match trust {
        MechanismTrust::Irsa { service_account } => trust_policy_for(
            &config.all_provider_arns(),
            namespace,
            &[service_account.to_string()],
            &spec.audience,
        ),
        MechanismTrust::PodIdentity {
            service_account,
            session_tags,
        } => PolicyDocument::new(vec![pod_identity_statement(PodIdentitySubject {
            account_id: config.account_id_or_placeholder(),
            cluster_arn: &config.eks_cluster_arn(),
            namespace,
            service_account,
            session_tags,
        })]),
    }
}

impl DesiredState {
    /// Keeps trusting what `also` admits besides the mechanism in force (a migration
    /// waiting for pods of the old one): its statements are added to the trust policy.
    pub fn trusting_also(&mut self, also: PolicyDocument) {
        for statement in also.statement {
            if !self.role.trust_policy.statement.contains(&statement) {
                self.role.trust_policy.statement.push(statement);
            }
        }
        self.trust_policy_size.bytes =
            i64::try_from(self.role.trust_policy.minified_bytes()).unwrap_or(i64::MAX);
    }
}

fn build(
    binding: BindingRef<'_>,
    spec: &PodIdentityBindingSpec,
    config: &OperatorConfig,
    trust: PolicyDocument,
    inline: Option<PolicyDocument>,
    permissions_boundary_arn: Option<String>,
) -> DesiredState {
    let name = match spec.role.name.as_deref().filter(|name| !name.is_empty()) {
        Some(name) => name.to_string(),
        None => binding.derived_role_name(config),
    };
    let path = config.role_path();
    let arn = naming::role_arn(
        &config.partition(),
        config.account_id_or_placeholder(),
        &path,
        &name,
    );
    let description = spec.role.description.clone().unwrap_or_else(|| {
        format!(
            "pod-identity-operator: {}/{} in cluster {}",
            binding.namespace, binding.name, config.cluster_name
        )
    });
    let mut tags = spec.role.tags.clone();
    tags.extend(ownership_tags(config, binding));

    let trust_policy_size = TrustPolicySize {
        bytes: i64::try_from(trust.minified_bytes()).unwrap_or(i64::MAX),
        limit: i64::try_from(config.trust_policy.max_bytes).unwrap_or(i64::MAX),
    };
    let mechanism = spec
        .identity
        .effective_mechanism(config.identity.default_mechanism);
    // Under Pod Identity no IRSA annotation: the IRSA webhook would inject variables
    // the SDKs prefer over Pod Identity's.
    let annotations = match mechanism {
        Mechanism::Irsa => service_account_annotations(spec, &arn),
        Mechanism::PodIdentity => BTreeMap::new(),
    };
    let association = (mechanism == Mechanism::PodIdentity).then(|| DesiredAssociation {
        cluster: config.eks_cluster_name().to_string(),
        namespace: binding.namespace.to_string(),
        service_account: spec.service_account_name.clone(),
        target_role_arn: spec.identity.target_role_arn.clone(),
        disable_session_tags: spec.identity.disable_session_tags,
        policy: session_policy(spec),
    });
    let service_account = DesiredServiceAccount {
        name: spec.service_account_name.clone(),
        create: spec.create_service_account,
        annotations,
    };
    let credentials_secret = spec
        .credentials_secret
        .as_ref()
        .map(|secret| DesiredSecret {
            name: secret.name.clone(),
            credentials: credentials_file(
                &arn,
                &secret.token_path,
                spec.injection.sts_regional_endpoints,
            ),
        });
    DesiredState {
        mechanism,
        association,
        role: DesiredRole {
            name,
            path,
            arn,
            description,
            max_session_duration_seconds: spec.role.max_session_duration_seconds,
            trust_policy: trust,
            inline_policy: inline,
            managed_policy_arns: spec.permissions.managed_policy_arns.clone(),
            permissions_boundary_arn,
            tags,
        },
        trust_policy_size,
        service_account,
        credentials_secret,
        deletion_policy: spec.effective_deletion_policy(config.deletion_policy),
        account: None,
    }
}

/// The tags that make a role this binding's own: cluster, namespace and binding, and the
/// cluster's uid where known.
pub fn ownership_tags(
    config: &OperatorConfig,
    binding: BindingRef<'_>,
) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::from([
        (
            annotations::TAG_CLUSTER.to_string(),
            config.cluster_name.clone(),
        ),
        (
            annotations::TAG_NAMESPACE.to_string(),
            binding.namespace.to_string(),
        ),
        (
            annotations::TAG_BINDING.to_string(),
            binding.owner_tag.unwrap_or(binding.name).to_string(),
        ),
    ]);
    if let Some(uid) = &config.cluster_uid {
        tags.insert(annotations::TAG_CLUSTER_UID.to_string(), uid.clone());
    }
    tags
}

/// The inline policy from `permissions.statements`, or none when there are none.
pub fn inline_policy(spec: &PodIdentityBindingSpec) -> Option<PolicyDocument> {
    policy_of(&spec.permissions.statements)
}

/// Role chaining (`identity.targetRoleArn`) needs the binding's role to assume and tag
/// the target: the operator adds that one statement, for exactly that role, once the
/// guardrail has allowed the target.
fn with_role_chaining(
    inline: Option<PolicyDocument>,
    spec: &PodIdentityBindingSpec,
    mechanism: Mechanism,
) -> Option<PolicyDocument> {
    let target = match (&spec.identity.target_role_arn, mechanism) {
        (Some(target), Mechanism::PodIdentity) => target,
        _ => return inline,
    };
    let mut document = inline.unwrap_or_else(|| PolicyDocument::new(Vec::new()));
    document.statement.push(chaining_statement(target));
    Some(document)
}

/// The statement letting the role chain into `target` (EKS assumes it as the role).
fn chaining_statement(target: &str) -> PolicyStatement {
    PolicyStatement {
        sid: None,
        effect: podidentity_api::Effect::Allow,
        principal: None,
        action: OneOrMany::Many(vec![
            crate::trust::ASSUME_ROLE.into(),
            crate::trust::TAG_SESSION.into(),
        ]),
        resource: Some(OneOrMany::One(target.to_string())),
        condition: None,
    }
}

impl DesiredState {
    /// Keeps the role able to chain into `target` (a migration away from Pod Identity
    /// whose association, still naming that target, waits for its pods).
    pub fn chaining_also(&mut self, target: &str) {
        let statement = chaining_statement(target);
        let document = self
            .role
            .inline_policy
            .get_or_insert_with(|| PolicyDocument::new(Vec::new()));
        if !document.statement.contains(&statement) {
            document.statement.push(statement);
        }
    }
}

/// The Pod Identity session policy, or none.
pub fn session_policy(spec: &PodIdentityBindingSpec) -> Option<PolicyDocument> {
    policy_of(&spec.identity.policy.as_ref()?.statements)
}

fn policy_of(statements: &[podidentity_api::Statement]) -> Option<PolicyDocument> {
    if statements.is_empty() {
        return None;
    }
    let statements = statements
        .iter()
        .map(|statement| PolicyStatement {
            sid: statement.sid.clone().filter(|sid| !sid.is_empty()),
            effect: statement.effect,
            principal: None,
            action: OneOrMany::Many(statement.actions.clone()),
            resource: Some(OneOrMany::Many(statement.resources.clone())),
            condition: (!statement.conditions.is_empty()).then(|| {
                statement
                    .conditions
                    .iter()
                    .map(|(operator, keys)| {
                        let keys: Map<String, Value> = keys
                            .iter()
                            .map(|(key, values)| {
                                let values = values.iter().cloned().map(Value::String).collect();
                                (key.clone(), Value::Array(values))
                            })
                            .collect();
                        (operator.clone(), Value::Object(keys))
                    })
                    .collect()
            }),
        })
        .collect();
    Some(PolicyDocument::new(statements))
}

/// `eks.amazonaws.com/role-arn`, plus the other webhook annotations where the spec differs
/// from the webhook's defaults.
pub fn service_account_annotations(
    spec: &PodIdentityBindingSpec,
    role_arn: &str,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::from([(annotations::ROLE_ARN.to_string(), role_arn.to_string())]);
    if spec.audience != DEFAULT_AUDIENCE {
        out.insert(annotations::AUDIENCE.into(), spec.audience.clone());
    }
    if spec.injection.sts_regional_endpoints != DEFAULT_STS_REGIONAL_ENDPOINTS {
        out.insert(
            annotations::STS_REGIONAL_ENDPOINTS.into(),
            spec.injection.sts_regional_endpoints.to_string(),
        );
    }
    if spec.injection.token_expiration_seconds != DEFAULT_TOKEN_EXPIRATION_SECONDS {
        out.insert(
            annotations::TOKEN_EXPIRATION.into(),
            spec.injection.token_expiration_seconds.to_string(),
        );
    }
    out
}

/// The `credentials` file in OpenShift ccoctl's format.
pub fn credentials_file(role_arn: &str, token_path: &str, sts_regional_endpoints: bool) -> String {
    let mut lines = vec!["[default]".to_string()];
    if sts_regional_endpoints {
        lines.push("sts_regional_endpoints = regional".into());
    }
    lines.push(format!("role_arn = {role_arn}"));
    lines.push(format!("web_identity_token_file = {token_path}"));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ViolationKind;
    use podidentity_api::config::{AwsConfig, GuardrailsConfig};
    use podidentity_api::{IdentitySpec, SessionPolicy, Statement};

    fn config(allowed_targets: &[&str]) -> OperatorConfig {
        OperatorConfig {
            cluster_name: "prod".into(),
            aws: AwsConfig {
                region: Some("eu-west-1".into()),
                account_id: Some("111122223333".into()),
                ..Default::default()
            },
            guardrails: GuardrailsConfig {
                allowed_target_role_arns: allowed_targets.iter().map(ToString::to_string).collect(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn spec(identity: IdentitySpec) -> PodIdentityBindingSpec {
        let mut spec = PodIdentityBindingSpec {
            service_account_name: "orders".into(),
            identity,
            ..Default::default()
        };
        spec.permissions.statements.push(Statement {
            actions: vec!["s3:GetObject".into()],
            resources: vec!["arn:aws:s3:::shop-orders/*".into()],
            ..Default::default()
        });
        spec
    }

    fn pod_identity() -> IdentitySpec {
        IdentitySpec {
            mechanism: Some(Mechanism::PodIdentity),
            ..Default::default()
        }
    }

    fn build_for(
        spec: &PodIdentityBindingSpec,
        config: &OperatorConfig,
    ) -> Result<DesiredState, Error> {
        let rules = RuleSet::from_config(config);
        desired_state_under(BindingRef::new("shop", "orders"), spec, config, &rules)
    }

    fn refusals(result: Result<DesiredState, Error>) -> Vec<(String, ViolationKind)> {
        match result {
            Err(Error::Refused(violations)) => {
                violations.into_iter().map(|v| (v.field, v.kind)).collect()
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn pod_identity_trusts_the_service_keeps_an_association_and_annotates_nothing() {
        let desired =
            build_for(&spec(pod_identity()), &config(&[])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(desired.mechanism, Mechanism::PodIdentity);
        assert!(desired.service_account.annotations.is_empty());
        let association = desired
            .association
            .unwrap_or_else(|| panic!("no association"));
        assert_eq!(
            (
                association.cluster.as_str(),
                association.namespace.as_str(),
                association.service_account.as_str()
            ),
            ("prod", "shop", "orders")
        );
        let trust = desired.role.trust_policy.minified();
        assert!(
            trust.contains(r#""Service":"pods.eks.amazonaws.com""#),
            "{trust}"
        );
        assert!(trust.contains(r#""aws:RequestTag/eks-cluster-arn":"arn:aws:eks:eu-west-1:111122223333:cluster/prod""#), "{trust}");
        assert!(!trust.contains("Federated"), "{trust}");
    }

    #[test]
    fn the_default_mechanism_is_irsa_and_the_configuration_can_change_it() {
        let irsa = build_for(&spec(IdentitySpec::default()), &config(&[]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(irsa.mechanism, Mechanism::Irsa);
        assert!(irsa.association.is_none());
        assert!(
            irsa.service_account
                .annotations
                .contains_key("eks.amazonaws.com/role-arn")
        );
        let mut by_default = config(&[]);
        by_default.identity.default_mechanism = Mechanism::PodIdentity;
        let pod = build_for(&spec(IdentitySpec::default()), &by_default)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pod.mechanism, Mechanism::PodIdentity);
    }

    /// The configuration can forbid a mechanism everywhere: refused with the setting named,
    /// and the default must be one it allows.
    #[test]
    fn the_configuration_can_allow_one_mechanism_only() {
        let mut only_pod_identity = config(&[]);
        only_pod_identity.identity.allowed_mechanisms = vec![Mechanism::PodIdentity];
        let refused = refusals(build_for(
            &spec(IdentitySpec {
                mechanism: Some(Mechanism::Irsa),
                ..IdentitySpec::default()
            }),
            &only_pod_identity,
        ));
        assert_eq!(
            refused,
            [(
                "spec.identity.mechanism".to_string(),
                ViolationKind::GuardrailViolation
            )]
        );
        assert!(build_for(&spec(pod_identity()), &only_pod_identity).is_ok());
        let problems: Vec<_> = only_pod_identity
            .problems()
            .iter()
            .map(|p| p.setting)
            .collect();
        assert!(
            problems.contains(&"identity.defaultMechanism"),
            "{problems:?}"
        );
        only_pod_identity.identity.default_mechanism = Mechanism::PodIdentity;
        assert!(only_pod_identity.problems().is_empty());
    }

    #[test]
    fn a_session_policy_needs_session_tags_off_and_irsa_takes_no_pod_identity_options() {
        let mut identity = pod_identity();
        identity.policy = Some(SessionPolicy {
            statements: spec(IdentitySpec::default()).permissions.statements,
        });
        let refused = refusals(build_for(&spec(identity.clone()), &config(&[])));
        assert_eq!(
            refused,
            [(
                "spec.identity.policy".to_string(),
                ViolationKind::InvalidSpec
            )]
        );
        identity.disable_session_tags = true;
        let allowed = build_for(&spec(identity), &config(&[])).unwrap_or_else(|e| panic!("{e}"));
        let association = allowed
            .association
            .unwrap_or_else(|| panic!("no association"));
        assert!(association.policy.is_some() && association.disable_session_tags);
        assert!(!allowed.role.trust_policy.minified().contains("RequestTag"));

        let irsa = IdentitySpec {
            mechanism: Some(Mechanism::Irsa),
            target_role_arn: Some("arn:aws:iam::111122223333:role/x".into()),
            ..Default::default()
        };
        let refused = refusals(build_for(
            &spec(irsa),
            &config(&["arn:aws:iam::111122223333:role/*"]),
        ));
        assert_eq!(
            refused,
            [(
                "spec.identity.targetRoleArn".to_string(),
                ViolationKind::InvalidSpec
            )]
        );
    }

    #[test]
    fn role_chaining_only_into_allowed_roles_and_then_the_role_may_assume_exactly_that_one() {
        let mut identity = pod_identity();
        identity.target_role_arn = Some("arn:aws:iam::444455556666:role/reports-reader".into());
        let refused = refusals(build_for(&spec(identity.clone()), &config(&[])));
        assert_eq!(
            refused,
            [(
                "spec.identity.targetRoleArn".to_string(),
                ViolationKind::GuardrailViolation
            )]
        );
        // A pattern for another account's roles does not reach it, whatever its shape.
        let refused = refusals(build_for(
            &spec(identity.clone()),
            &config(&["arn:aws:iam::111122223333:role/*"]),
        ));
        assert_eq!(refused.len(), 1);
        let allowed = build_for(
            &spec(identity),
            &config(&["arn:aws:iam::444455556666:role/reports-*"]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let inline = allowed
            .role
            .inline_policy
            .unwrap_or_else(|| panic!("no inline policy"))
            .minified();
        assert!(
            inline.contains(r#"{"Effect":"Allow","Action":["sts:AssumeRole","sts:TagSession"],"Resource":"arn:aws:iam::444455556666:role/reports-reader"}"#),
            "{inline}"
        );
    }

    #[test]
    fn pod_identity_refuses_a_credentials_secret_a_missing_region_and_a_long_session_policy() {
        let mut with_secret = spec(pod_identity());
        with_secret.credentials_secret = Some(podidentity_api::CredentialsSecretSpec {
            name: "creds".into(),
            token_path: "/var/run/token".into(),
        });
        let refused = refusals(build_for(&with_secret, &config(&[])));
        assert_eq!(
            refused,
            [(
                "spec.credentialsSecret".to_string(),
                ViolationKind::InvalidSpec
            )]
        );

        let mut no_region = config(&[]);
        no_region.aws.region = None;
        let refused = refusals(build_for(&spec(pod_identity()), &no_region));
        assert_eq!(
            refused,
            [(
                "spec.identity.mechanism".to_string(),
                ViolationKind::InvalidSpec
            )]
        );

        let mut identity = pod_identity();
        identity.disable_session_tags = true;
        identity.policy = Some(SessionPolicy {
            statements: (0..60)
                .map(|i| Statement {
                    actions: vec!["s3:GetObject".into()],
                    resources: vec![format!("arn:aws:s3:::bucket-{i}/*")],
                    ..Default::default()
                })
                .collect(),
        });
        let refused = refusals(build_for(&spec(identity), &config(&[])));
        assert_eq!(
            refused,
            [(
                "spec.identity.policy".to_string(),
                ViolationKind::InvalidSpec
            )]
        );
    }
}
