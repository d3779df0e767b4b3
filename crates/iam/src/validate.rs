//! Validation of a binding, as the controller and `plan` both run it: the CRD schema's
//! rules (schemas can be bypassed by older CRD versions, and `plan` has no API server),
//! IAM's limits, and the guardrails. Every violation is collected, not just the first.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use podidentity_api::binding::{
    ACTION_PATTERN, DNS_SUBDOMAIN_PATTERN, MANAGED_POLICY_ARN_PATTERN, MAX_SESSION_SECONDS,
    MAX_TOKEN_EXPIRATION_SECONDS, MAX_USER_TAGS, MIN_SESSION_SECONDS, MIN_TOKEN_EXPIRATION_SECONDS,
    RESOURCE_PATTERN, ROLE_ARN_PATTERN, ROLE_NAME_PATTERN, SID_PATTERN, TAG_PATTERN,
    TOKEN_PATH_PATTERN,
};
use podidentity_api::config::OperatorConfig;
use podidentity_api::{KEY_PREFIX, Mechanism, PodIdentityBindingSpec, Statement};
use regex::Regex;

use crate::document::PolicyDocument;
use crate::error::{Violation, ViolationKind};
use crate::guardrails::RuleSet;
use crate::naming::MAX_ROLE_NAME_LEN;

/// IAM: an inline role policy holds at most 10,240 characters, whitespace not counted.
pub const MAX_INLINE_POLICY_CHARS: usize = 10_240;
pub const MAX_TAG_KEY_LEN: usize = 128;
pub const MAX_TAG_VALUE_LEN: usize = 256;
pub const MAX_DESCRIPTION_LEN: usize = 1000;

struct Patterns {
    dns_subdomain: Regex,
    action: Regex,
    resource: Regex,
    managed_policy_arn: Regex,
    role_name: Regex,
    role_arn: Regex,
    sid: Regex,
    tag: Regex,
    token_path: Regex,
}

/// The CRD's own patterns, compiled once. They are constants of this program, so a failure
/// to compile is a bug caught by the first test that runs.
static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let compile = |pattern: &str| {
        Regex::new(pattern).unwrap_or_else(|err| panic!("bad built-in pattern {pattern}: {err}"))
    };
    Patterns {
        dns_subdomain: compile(DNS_SUBDOMAIN_PATTERN),
        action: compile(ACTION_PATTERN),
        resource: compile(RESOURCE_PATTERN),
        managed_policy_arn: compile(MANAGED_POLICY_ARN_PATTERN),
        role_name: compile(ROLE_NAME_PATTERN),
        role_arn: compile(ROLE_ARN_PATTERN),
        sid: compile(SID_PATTERN),
        tag: compile(TAG_PATTERN),
        token_path: compile(TOKEN_PATH_PATTERN),
    }
});

/// Collects violations with their field paths.
struct Checker {
    violations: Vec<Violation>,
}

impl Checker {
    fn invalid(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.violations.push(Violation::invalid(field, message));
    }
}

/// The spec's own rules and IAM's limits (everything but guardrails and sizes of built
/// documents).
pub fn check_spec(spec: &PodIdentityBindingSpec, config: &OperatorConfig) -> Vec<Violation> {
    let p = &*PATTERNS;
    let mut c = Checker {
        violations: Vec::new(),
    };

    let sa = &spec.service_account_name;
    if sa.is_empty() || sa.len() > 253 || !p.dns_subdomain.is_match(sa) {
        c.invalid(
            "spec.serviceAccountName",
            format!(
                "{sa:?} is not a ServiceAccount name: use 1 to 253 lowercase letters, digits, \
                 '-' and '.', starting and ending with a letter or digit"
            ),
        );
    }
    if spec.audience.is_empty() || spec.audience.chars().count() > 256 {
        c.invalid(
            "spec.audience",
            "must be 1 to 256 characters; leave it out for sts.amazonaws.com",
        );
    }

    check_statements(
        &mut c,
        "spec.permissions.statements",
        &spec.permissions.statements,
    );
    check_identity(&mut c, spec, config);

    let managed = &spec.permissions.managed_policy_arns;
    let max_managed = config.roles.max_managed_policies;
    if managed.len() > max_managed {
        c.invalid(
            "spec.permissions.managedPolicyArns",
            format!(
                "{} managed policies, but a role holds at most {max_managed} \
                 (roles.maxManagedPolicies): merge some into statements",
                managed.len()
            ),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, arn) in managed.iter().enumerate() {
        let field = format!("spec.permissions.managedPolicyArns[{i}]");
        if arn.len() > 2048 || !p.managed_policy_arn.is_match(arn) {
            c.invalid(
                field,
                format!(
                    "{arn:?} is not a managed policy ARN: write \
                     arn:aws:iam::aws:policy/<name> or arn:aws:iam::<account>:policy/<name>"
                ),
            );
        } else if !seen.insert(arn) {
            c.invalid(
                field,
                format!("{arn} is listed twice: remove the duplicate"),
            );
        }
    }

    if let Some(name) = spec.role.name.as_deref().filter(|name| !name.is_empty())
        && (name.len() > MAX_ROLE_NAME_LEN || !p.role_name.is_match(name))
    {
        c.invalid(
            "spec.role.name",
            format!(
                "{name:?} is not an IAM role name: use at most {MAX_ROLE_NAME_LEN} letters, \
                 digits and +=,.@_- (or leave it out for the derived name)"
            ),
        );
    }
    if let Some(description) = &spec.role.description {
        let chars_ok = description
            .chars()
            .all(|ch| matches!(ch, '\t' | '\n' | '\r' | '\u{20}'..='\u{7e}' | '\u{a1}'..='\u{ff}'));
        if description.chars().count() > MAX_DESCRIPTION_LEN || !chars_ok {
            c.invalid(
                "spec.role.description",
                format!(
                    "must be at most {MAX_DESCRIPTION_LEN} characters of printable Latin-1 text \
                     (IAM's rule for role descriptions)"
                ),
            );
        }
    }
    let session = spec.role.max_session_duration_seconds;
    if !(MIN_SESSION_SECONDS..=MAX_SESSION_SECONDS).contains(&session) {
        c.invalid(
            "spec.role.maxSessionDurationSeconds",
            format!(
                "{session} is out of range: IAM allows {MIN_SESSION_SECONDS} to \
                 {MAX_SESSION_SECONDS} seconds (1 to 12 hours)"
            ),
        );
    }
    check_tags(&mut c, spec);

    let expiration = spec.injection.token_expiration_seconds;
    if !(MIN_TOKEN_EXPIRATION_SECONDS..=MAX_TOKEN_EXPIRATION_SECONDS).contains(&expiration) {
        c.invalid(
            "spec.injection.tokenExpirationSeconds",
            format!(
                "{expiration} is out of range: use {MIN_TOKEN_EXPIRATION_SECONDS} to \
                 {MAX_TOKEN_EXPIRATION_SECONDS} seconds (10 minutes to 24 hours)"
            ),
        );
    }
    if let Some(secret) = &spec.credentials_secret {
        if secret.name.is_empty()
            || secret.name.len() > 253
            || !p.dns_subdomain.is_match(&secret.name)
        {
            c.invalid(
                "spec.credentialsSecret.name",
                format!(
                    "{:?} is not a Secret name: use lowercase letters, digits, '-' and '.'",
                    secret.name
                ),
            );
        }
        if !p.token_path.is_match(&secret.token_path) {
            c.invalid(
                "spec.credentialsSecret.tokenPath",
                format!(
                    "{:?} must be an absolute file path of printable characters (no line \
                     breaks: it is a line of the credentials file), e.g. \
                     /var/run/secrets/openshift/serviceaccount/token",
                    secret.token_path
                ),
            );
        }
    }
    c.violations
}

/// STS: a session policy holds at most 2,048 characters, whitespace not counted.
pub const MAX_SESSION_POLICY_CHARS: usize = 2_048;

/// `spec.identity`: Pod Identity's options only under Pod Identity, a session policy only
/// without session tags (EKS's rule), a target role only where the operator allows one
/// (role chaining is a way out of the account).
fn check_identity(c: &mut Checker, spec: &PodIdentityBindingSpec, config: &OperatorConfig) {
    let identity = &spec.identity;
    let mechanism = identity.effective_mechanism(config.identity.default_mechanism);
    if !config.identity.allows(mechanism) {
        let allowed: Vec<String> = config
            .identity
            .allowed_mechanisms
            .iter()
            .map(ToString::to_string)
            .collect();
        c.violations.push(Violation::guardrail(
            "spec.identity.mechanism",
            format!(
                "{mechanism} is not allowed by this operator (identity.allowedMechanisms: {}): \
                 set spec.identity.mechanism to one of them",
                allowed.join(", ")
            ),
        ));
    }
    if mechanism == Mechanism::Irsa {
        let set = [
            ("targetRoleArn", identity.target_role_arn.is_some()),
            ("disableSessionTags", identity.disable_session_tags),
            ("policy", identity.policy.is_some()),
        ];
        for (field, _) in set.iter().filter(|(_, set)| *set) {
            c.invalid(
                format!("spec.identity.{field}"),
                "is a Pod Identity option, and this binding uses IRSA: set \
                 spec.identity.mechanism: PodIdentity, or drop it",
            );
        }
    }
    if mechanism == Mechanism::PodIdentity {
        if spec.credentials_secret.is_some() {
            c.invalid(
                "spec.credentialsSecret",
                "is a web identity login, which a Pod Identity role does not trust (and a \
                 mounted profile would win over Pod Identity's credentials): drop it, or use \
                 spec.identity.mechanism: IRSA",
            );
        }
        if config.aws.region.is_none() {
            c.invalid(
                "spec.identity.mechanism",
                "PodIdentity needs the cluster's region for the trust policy's \
                 eks-cluster-arn, and the operator knows none: set aws.region in its \
                 configuration",
            );
        }
    }
    if let Some(policy) = &identity.policy {
        if let Some(document) = crate::build::session_policy(spec) {
            let chars = document.non_whitespace_chars();
            if chars > MAX_SESSION_POLICY_CHARS {
                c.invalid(
                    "spec.identity.policy",
                    format!(
                        "the session policy is {chars} characters, over STS's limit of \
                         {MAX_SESSION_POLICY_CHARS}: use wildcards or fewer statements"
                    ),
                );
            }
        }
        if !identity.disable_session_tags {
            c.invalid(
                "spec.identity.policy",
                "needs spec.identity.disableSessionTags: true (EKS refuses a session policy \
                 while session tags are on): set it, or drop the policy",
            );
        }
        if policy.statements.is_empty() {
            c.invalid(
                "spec.identity.policy.statements",
                "needs at least one statement (or leave the policy out)",
            );
        }
        check_statements(c, "spec.identity.policy.statements", &policy.statements);
    }
    if let Some(target) = &identity.target_role_arn {
        if target.len() > 2048 || !PATTERNS.role_arn.is_match(target) {
            c.invalid(
                "spec.identity.targetRoleArn",
                format!("{target:?} is not a role ARN: write arn:aws:iam::<account>:role/<name>"),
            );
        } else {
            let allowed = &config.guardrails.allowed_target_role_arns;
            let effort = crate::effort::Effort::for_judgement();
            let fits = allowed.iter().any(|pattern| {
                crate::glob::matches(pattern, target, false, &effort).unwrap_or(false)
            });
            if !fits {
                c.violations.push(Violation::guardrail(
                    "spec.identity.targetRoleArn",
                    format!(
                        "{target} is not among the target roles the operator allows \
                         (guardrails.allowedTargetRoleArns: {}): role chaining leaves this \
                         role for another; ask the platform team to allow it",
                        if allowed.is_empty() {
                            "none".to_string()
                        } else {
                            allowed.join(", ")
                        }
                    ),
                ));
            }
        }
    }
}

fn check_statements(c: &mut Checker, field: &str, statements: &[Statement]) {
    let p = &*PATTERNS;
    if statements.len() > 100 {
        c.invalid(
            field,
            format!(
                "{} statements; at most 100: merge statements that share resources",
                statements.len()
            ),
        );
    }
    let mut sids = BTreeSet::new();
    for (s, statement) in statements.iter().enumerate() {
        let at = format!("{field}[{s}]");
        if let Some(sid) = statement.sid.as_deref().filter(|sid| !sid.is_empty()) {
            if sid.len() > 128 || !p.sid.is_match(sid) {
                c.invalid(
                    format!("{at}.sid"),
                    format!("{sid:?} must be letters and digits only (at most 128)"),
                );
            } else if !sids.insert(sid) {
                c.invalid(
                    format!("{at}.sid"),
                    format!("sid {sid:?} is used twice: statement sids must be unique"),
                );
            }
        }
        if statement.actions.is_empty() {
            c.invalid(
                format!("{at}.actions"),
                "needs at least one action, e.g. s3:GetObject",
            );
        }
        for (a, action) in statement.actions.iter().enumerate() {
            if action.len() > 128 || !p.action.is_match(action) {
                c.invalid(
                    format!("{at}.actions[{a}]"),
                    format!("{action:?} is not an IAM action: write service:Action, e.g. s3:GetObject (wildcards * and ? allowed)"),
                );
            }
        }
        if statement.resources.is_empty() {
            c.invalid(
                format!("{at}.resources"),
                "needs at least one resource ARN, or \"*\"",
            );
        }
        for (r, resource) in statement.resources.iter().enumerate() {
            // The CRD counts characters (JSON Schema's maxLength), not bytes.
            if resource.chars().count() > 2048 || !p.resource.is_match(resource) {
                c.invalid(
                    format!("{at}.resources[{r}]"),
                    format!("{resource:?} is not a resource: write an ARN (arn:...) or \"*\""),
                );
            }
        }
        for (operator, keys) in &statement.conditions {
            if keys.is_empty() {
                c.invalid(
                    format!("{at}.conditions.{operator}"),
                    "needs at least one condition key",
                );
            }
            for (key, values) in keys {
                if values.is_empty() {
                    c.invalid(
                        format!("{at}.conditions.{operator}[{key:?}]"),
                        "needs at least one value",
                    );
                }
            }
        }
    }
}

fn check_tags(c: &mut Checker, spec: &PodIdentityBindingSpec) {
    let p = &*PATTERNS;
    let tags = &spec.role.tags;
    if tags.len() > MAX_USER_TAGS {
        c.invalid(
            "spec.role.tags",
            format!(
                "{} tags; at most {MAX_USER_TAGS} (IAM allows 50 per role and the operator adds \
                 3 ownership tags): remove some",
                tags.len()
            ),
        );
    }
    for (key, value) in tags {
        let field = format!("spec.role.tags[{key:?}]");
        // IAM tag keys are case-insensitive: `PodIdentity.io/cluster` is our ownership tag.
        let lowered = key.to_ascii_lowercase();
        if lowered.starts_with(KEY_PREFIX) || lowered.starts_with("aws:") {
            c.invalid(
                field.clone(),
                format!("tag key {key:?} is reserved ({KEY_PREFIX}* and aws:* belong to the operator and AWS): rename it"),
            );
        }
        if key.is_empty() || key.chars().count() > MAX_TAG_KEY_LEN || !p.tag.is_match(key) {
            c.invalid(
                field.clone(),
                format!(
                    "tag key must be 1 to {MAX_TAG_KEY_LEN} letters, digits, spaces or _.:/=+-@"
                ),
            );
        }
        if value.chars().count() > MAX_TAG_VALUE_LEN || !p.tag.is_match(value) {
            c.invalid(
                field,
                format!("tag value must be at most {MAX_TAG_VALUE_LEN} letters, digits, spaces or _.:/=+-@"),
            );
        }
    }
}

/// Limits on the built documents: trust policy quota and inline policy size.
pub fn check_documents(
    trust_policy: &PolicyDocument,
    inline_policy: Option<&PolicyDocument>,
    config: &OperatorConfig,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let bytes = trust_policy.minified_bytes();
    let limit = config.trust_policy.max_bytes;
    if bytes > limit {
        violations.push(Violation {
            field: "spec".into(),
            kind: ViolationKind::TrustPolicyTooLarge,
            message: format!(
                "the trust policy is {bytes} bytes, over the account's quota of {limit} \
                 (trustPolicy.maxBytes): shorten the audience or ServiceAccount name, trust \
                 fewer OIDC providers, or raise the quota (up to 4096) and the setting"
            ),
        });
    }
    if let Some(inline) = inline_policy {
        let chars = inline.non_whitespace_chars();
        if chars > MAX_INLINE_POLICY_CHARS {
            violations.push(Violation::invalid(
                "spec.permissions.statements",
                format!(
                    "the inline policy is {chars} characters, over IAM's limit of \
                     {MAX_INLINE_POLICY_CHARS}: use wildcards, merge statements, or move \
                     permissions into managed policies"
                ),
            ));
        }
    }
    violations
}

/// Everything that refuses a binding: spec rules, guardrails, then document limits.
pub fn validate(
    spec: &PodIdentityBindingSpec,
    config: &OperatorConfig,
    rules: &RuleSet,
    trust_policy: &PolicyDocument,
    inline_policy: Option<&PolicyDocument>,
) -> Vec<Violation> {
    let mut violations = check_spec(spec, config);
    violations.extend(rules.check(spec));
    violations.extend(check_documents(trust_policy, inline_policy, config));
    violations
}
