//! PodIdentityPolicies as rules: which policies select a namespace, their patterns with
//! the namespace's values put in, and what each one refuses in a binding. Every policy that
//! selects a namespace applies on its own, so the most restrictive wins: a statement must
//! pass every policy's allow-lists (allows intersect) and none's deny-lists (denies
//! unite), and the lowest quota counts.

use std::collections::BTreeMap;

use kube::core::error_boundary::DeserializeGuard;
use kube::core::{Selector, SelectorExt};
use podidentity_api::policy::TEMPLATE_VARIABLES;
use podidentity_api::{Effect, PodIdentityBindingSpec, PodIdentityPolicy};

use crate::effort::{Effort, Judgement};
use crate::error::Violation;
use crate::glob;
use crate::guardrails::{ArnVerdict, few, judge_arn, reached};

/// A policy as the engine reads it: its name, what it selects, its spec, and what makes it
/// unusable.
#[derive(Clone, Debug)]
pub struct NamespacePolicy {
    pub name: String,
    selection: Selection,
    spec: podidentity_api::PodIdentityPolicySpec,
    /// What is wrong with it as written. An unusable policy refuses every binding it
    /// selects: a policy nobody can read must never widen what a namespace may do.
    problems: Vec<Violation>,
}

#[derive(Clone, Debug)]
enum Selection {
    /// No selector: no namespace.
    Nothing,
    Matching(Selector),
    /// A selector that cannot be read: every namespace (failing closed).
    Everything,
}

/// What one namespace's patterns are filled in with.
#[derive(Clone, Debug)]
pub struct TemplateValues<'a> {
    pub namespace: &'a str,
    pub cluster: &'a str,
    pub account: &'a str,
    pub partition: &'a str,
    pub region: &'a str,
}

fn expand(pattern: &str, values: &TemplateValues<'_>) -> String {
    pattern
        .replace("${namespace}", values.namespace)
        .replace("${cluster}", values.cluster)
        .replace("${account}", values.account)
        .replace("${partition}", values.partition)
        .replace("${region}", values.region)
}

/// `${...}` names in a pattern that are not template variables.
fn unknown_variables(pattern: &str) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut rest = pattern;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            unknown.push(after.to_string());
            break;
        };
        let name = &after[..end];
        if !TEMPLATE_VARIABLES.contains(&name) {
            unknown.push(name.to_string());
        }
        rest = &after[end + 1..];
    }
    unknown
}

const NAMESPACE_VARIABLE: &str = "${namespace}";

/// Whether a namespace's name could go on with this character (or a wildcard, or another
/// variable, could): namespace names hold letters, digits and `-` (and role names compare
/// without case, so upper-case letters count too).
fn continues_a_namespace(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '*' | '?' | '$')
}

/// How a pattern lets `${namespace}` reach what belongs to another namespace, if it does.
/// Closed, a namespace's expansion of the pattern can never match what another's does:
/// `${namespace}` is followed by a character no namespace name holds (or ends the
/// pattern), so where the name ends is plain; and no `*` comes before it in its ARN field,
/// so where it starts is plain too.
pub fn open_namespace(pattern: &str) -> Option<String> {
    let mut from = 0;
    while let Some(found) = pattern
        .get(from..)
        .and_then(|rest| rest.find(NAMESPACE_VARIABLE))
    {
        let at = from + found;
        let end = at + NAMESPACE_VARIABLE.len();
        if let Some(next) = pattern.get(end..).and_then(|rest| rest.chars().next())
            && continues_a_namespace(next)
        {
            return Some(format!(
                "${{namespace}} is followed by {next:?}, so namespace \"team\" would reach what \
                 belongs to \"team-a\": follow it with a character no namespace name holds, \
                 such as '.', '_', '/' or ':' (arn:aws:s3:::${{namespace}}.*, \
                 arn:aws:sqs:*:*:${{namespace}}_*), or end the pattern with it"
            ));
        }
        let field_start = pattern
            .get(..at)
            .and_then(|head| head.rfind(':'))
            .map_or(0, |i| i + 1);
        if pattern
            .get(field_start..at)
            .is_some_and(|head| head.contains('*'))
        {
            return Some(
                "a * comes before ${namespace} in its field, so namespace \"team\" would reach \
                 what belongs to \"a-team\": start the field with ${namespace}, or put only \
                 fixed text before it"
                    .to_string(),
            );
        }
        from = end;
    }
    None
}

/// Two patterns of one list that could give two namespaces one name: each closed on its
/// own, but `${namespace}` stands after different text in them. With `${namespace}/*`
/// beside `shared/${namespace}/*`, namespace `shared` gets `shared/*`: every team's folder.
/// Patterns whose `${namespace}` stands after the same text keep namespaces apart (as each
/// one alone does); patterns that can never meet (another service, another account) are
/// fine whatever their text.
fn namespaces_meeting(field: &str, patterns: &[String]) -> Vec<Violation> {
    let effort = Effort::for_judgement();
    let before = |p: &str| p.find(NAMESPACE_VARIABLE).map(|at| p[..at].to_string());
    // Every variable may be anything, here: the check holds for every namespace's values.
    let any_values = |p: &str| {
        let mut out = p.to_string();
        for variable in TEMPLATE_VARIABLES {
            out = out.replace(&format!("${{{variable}}}"), "*");
        }
        out
    };
    let mut problems = Vec::new();
    for (j, later) in patterns.iter().enumerate() {
        let Some(later_before) = before(later) else {
            continue;
        };
        for (i, earlier) in patterns.iter().enumerate().take(j) {
            let Some(earlier_before) = before(earlier) else {
                continue;
            };
            if earlier_before == later_before {
                continue;
            }
            // Unjudged (past the bound) is refused too.
            let meet =
                glob::arns_meet(&any_values(earlier), &any_values(later), &effort).unwrap_or(true);
            if meet {
                problems.push(Violation::invalid(
                    format!("{field}[{j}]"),
                    format!(
                        "{later:?} and {earlier:?} ({field}[{i}]) can give two namespaces one \
                         name: ${{namespace}} stands after other text in each (with \
                         ${{namespace}}/* beside shared/${{namespace}}/*, namespace shared gets \
                         every team's folder): put the same text before ${{namespace}} in \
                         both (shared/${{namespace}}/* and shared/${{namespace}}.*, say)"
                    ),
                ));
            }
        }
    }
    problems
}

impl NamespacePolicy {
    /// Reads a policy; what makes it unusable is reported against its own fields (`plan`
    /// refuses such input).
    pub fn from_resource(policy: &PodIdentityPolicy) -> Result<Self, Vec<Violation>> {
        let read = Self::read(policy);
        if read.problems.is_empty() {
            Ok(read)
        } else {
            Err(read.problems)
        }
    }

    /// Reads a policy as a cluster holds it: an unusable one refuses what it selects (and
    /// selects every namespace when its selector cannot be read).
    pub fn read(policy: &PodIdentityPolicy) -> Self {
        let name = policy.metadata.name.clone().unwrap_or_default();
        let spec = policy.spec.clone();
        let mut problems = Vec::new();
        let expressions = spec
            .namespace_selector
            .iter()
            .flat_map(|selector| selector.match_expressions.iter().flatten());
        for (i, expression) in expressions.enumerate() {
            let has_values = expression.values.as_ref().is_some_and(|v| !v.is_empty());
            let needs_values = match expression.operator.as_str() {
                "In" | "NotIn" => true,
                "Exists" | "DoesNotExist" => false,
                // Reported below, by the selector's own reading.
                _ => continue,
            };
            if has_values != needs_values {
                problems.push(Violation::invalid(
                    format!("spec.namespaceSelector.matchExpressions[{i}].values"),
                    "In and NotIn need values; Exists and DoesNotExist take none",
                ));
            }
        }
        let values_wrong = !problems.is_empty();
        let selection = match spec.namespace_selector.clone().map(Selector::try_from) {
            None => Selection::Nothing,
            Some(Ok(selector)) => Selection::Matching(selector),
            // Said already, more precisely.
            Some(Err(_)) if values_wrong => Selection::Everything,
            Some(Err(err)) => {
                problems.push(Violation::invalid(
                    "spec.namespaceSelector",
                    format!("{err}: use matchLabels, or matchExpressions with In, NotIn, Exists or DoesNotExist"),
                ));
                Selection::Everything
            }
        };
        let templated = [
            ("spec.allowedResources", &spec.allowed_resources),
            ("spec.roleNameOverride", &spec.role_name_override),
            ("spec.allowedTargetRoleArns", &spec.allowed_target_role_arns),
        ];
        for (field, patterns) in templated {
            for (i, pattern) in patterns.iter().enumerate() {
                let unknown = unknown_variables(pattern);
                if !unknown.is_empty() {
                    problems.push(Violation::invalid(
                        format!("{field}[{i}]"),
                        format!(
                            "{pattern:?} uses ${{{}}}, which is not a template variable: use {}",
                            unknown.join("}, ${"),
                            TEMPLATE_VARIABLES.map(|v| format!("${{{v}}}")).join(", ")
                        ),
                    ));
                }
                if let Some(opening) = open_namespace(pattern) {
                    problems.push(Violation::invalid(
                        format!("{field}[{i}]"),
                        format!("{pattern:?} does not end the namespace where no other namespace's name can go on: {opening}"),
                    ));
                }
            }
        }
        for (field, patterns) in templated {
            problems.extend(namespaces_meeting(field, patterns));
        }
        Self {
            name,
            selection,
            spec,
            problems,
        }
    }

    /// A stored policy the operator cannot even decode (a field from a newer schema): it
    /// refuses bindings in every namespace until it is fixed (failing closed).
    pub fn unreadable(name: &str, error: &str) -> Self {
        Self {
            name: name.to_string(),
            selection: Selection::Everything,
            spec: podidentity_api::PodIdentityPolicySpec::default(),
            problems: vec![Violation::invalid(
                "spec",
                format!(
                    "the operator cannot read it ({error}): fix it, or run the operator release that matches the CRD"
                ),
            )],
        }
    }

    /// A policy as a watch delivers it: readable, or not (then it refuses everywhere).
    pub fn from_watched(policy: &DeserializeGuard<PodIdentityPolicy>) -> Self {
        match &policy.0 {
            Ok(policy) => Self::read(policy),
            Err(invalid) => Self::unreadable(
                invalid.metadata.name.as_deref().unwrap_or_default(),
                &invalid.error,
            ),
        }
    }

    /// Every policy a watch holds, in name order (so messages list them alike whatever
    /// the cache's order).
    pub fn read_all<'a>(
        policies: impl IntoIterator<Item = &'a DeserializeGuard<PodIdentityPolicy>>,
    ) -> Vec<Self> {
        let mut read: Vec<Self> = policies.into_iter().map(Self::from_watched).collect();
        read.sort_by(|a, b| a.name.cmp(&b.name));
        read
    }

    /// What makes the policy unusable (empty: nothing).
    pub fn problems(&self) -> &[Violation] {
        &self.problems
    }

    /// Whether the policy governs a namespace with these labels.
    pub fn selects(&self, namespace_labels: &BTreeMap<String, String>) -> bool {
        match &self.selection {
            Selection::Nothing => false,
            Selection::Matching(selector) => selector.matches(namespace_labels),
            Selection::Everything => true,
        }
    }

    /// What a refusal does to a role that exists.
    pub fn on_violation(&self) -> podidentity_api::OnViolation {
        self.spec.on_violation
    }

    /// The policy with one namespace's values put in.
    /// The account it places its namespaces in (`spec.account`).
    pub fn account(&self) -> Option<&str> {
        self.spec.account.as_deref()
    }

    pub fn for_namespace(&self, values: &TemplateValues<'_>) -> AppliedPolicy {
        let spec = &self.spec;
        let expand_all = |patterns: &[String]| patterns.iter().map(|p| expand(p, values)).collect();
        AppliedPolicy {
            name: self.name.clone(),
            allowed_actions: spec.allowed_actions.clone(),
            denied_actions: spec.denied_actions.clone(),
            allowed_resources: expand_all(&spec.allowed_resources),
            allowed_managed_policy_arns: spec.allowed_managed_policy_arns.clone(),
            denied_managed_policy_arns: spec.denied_managed_policy_arns.clone(),
            permissions_boundary_arn: spec.permissions_boundary_arn.clone(),
            role_name_override: expand_all(&spec.role_name_override),
            mechanisms: spec.mechanisms.clone(),
            allowed_target_role_arns: expand_all(&spec.allowed_target_role_arns),
            max_bindings_per_namespace: spec.max_bindings_per_namespace,
            on_violation: spec.on_violation,
            unusable: (!self.problems.is_empty()).then(|| {
                self.problems
                    .iter()
                    .map(|p| format!("{}: {}", p.field, p.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
        }
    }
}

/// One policy as it applies to one namespace (templates filled in).
#[derive(Clone, Debug, PartialEq)]
pub struct AppliedPolicy {
    pub name: String,
    pub allowed_actions: Vec<String>,
    pub denied_actions: Vec<String>,
    pub allowed_resources: Vec<String>,
    pub allowed_managed_policy_arns: Vec<String>,
    pub denied_managed_policy_arns: Vec<String>,
    pub permissions_boundary_arn: Option<String>,
    pub role_name_override: Vec<String>,
    pub mechanisms: Vec<podidentity_api::Mechanism>,
    pub allowed_target_role_arns: Vec<String>,
    pub max_bindings_per_namespace: Option<u32>,
    pub on_violation: podidentity_api::OnViolation,
    /// Why the policy cannot be applied, when it cannot: it then refuses every binding.
    pub unusable: Option<String>,
}

impl AppliedPolicy {
    fn field(&self, setting: &str) -> String {
        format!("PodIdentityPolicy {} ({setting})", self.name)
    }

    /// Everything in the spec this policy refuses (bounded, as [`RuleSet::check`] is).
    ///
    /// [`RuleSet::check`]: crate::guardrails::RuleSet::check
    pub fn check(&self, spec: &PodIdentityBindingSpec) -> Vec<Violation> {
        let effort = Effort::for_judgement();
        let mut judgement = Judgement::new(&effort);
        self.judge(spec, &mut judgement);
        judgement.violations
    }

    /// Whether its refusals may take a role's permissions away: it asks for that, and it
    /// can be read (a policy nobody can read refuses, but must never revoke: a field from
    /// a newer schema, or a template the operator now refuses, is no reason to break
    /// running workloads).
    pub fn revokes(&self) -> bool {
        self.on_violation == podidentity_api::OnViolation::Revoke && self.unusable.is_none()
    }

    /// The allowed and denied actions and the allowed resources, on `statements` at
    /// `prefix`.
    fn judge_statements(
        &self,
        prefix: &str,
        statements: &[podidentity_api::Statement],
        judgement: &mut Judgement<'_>,
    ) {
        let effort = judgement.effort;
        for (s, statement) in statements.iter().enumerate() {
            if statement.effect == Effect::Deny {
                continue;
            }
            for (a, action) in statement.actions.iter().enumerate() {
                let field = format!("{prefix}[{s}].actions[{a}]");
                let within = self.allowed_actions.is_empty()
                    || self.allowed_actions.iter().any(|allowed| {
                        judgement.answer(&field, glob::covers(allowed, action, true, effort))
                            == Some(true)
                    });
                if !within && !judgement.out_of_bound() {
                    judgement.refuse(Violation::guardrail(
                        field.clone(),
                        format!(
                            "{action:?} reaches beyond the actions {} allows ({}): name \
                             actions within them",
                            self.field("allowedActions"),
                            few(&self.allowed_actions)
                        ),
                    ));
                }
                let reached = reached(action, &self.denied_actions, &field, judgement);
                if !reached.is_empty() {
                    judgement.refuse(Violation::guardrail(
                        field,
                        format!(
                            "{action:?} could allow {}, which {} denies: name the actions you \
                             need within other services, or make this a Deny statement",
                            few(&reached),
                            self.field("deniedActions")
                        ),
                    ));
                }
            }
            if self.allowed_resources.is_empty() {
                continue;
            }
            for (r, resource) in statement.resources.iter().enumerate() {
                let field = format!("{prefix}[{s}].resources[{r}]");
                let inside = self.allowed_resources.iter().any(|allowed| {
                    judgement.answer(&field, glob::covers(allowed, resource, false, effort))
                        == Some(true)
                });
                if !inside && !judgement.out_of_bound() {
                    judgement.refuse(Violation::guardrail(
                        field,
                        format!(
                            "{resource:?} could reach beyond the resources {} allows here \
                             ({}): name resources within them",
                            self.field("allowedResources"),
                            few(&self.allowed_resources)
                        ),
                    ));
                }
            }
        }
    }

    pub(crate) fn judge(&self, spec: &PodIdentityBindingSpec, judgement: &mut Judgement<'_>) {
        if let Some(problems) = &self.unusable {
            judgement.refuse(Violation::guardrail(
                "metadata.namespace",
                format!(
                    "PodIdentityPolicy {} selects this namespace but cannot be applied \
                     ({problems}): its bindings are refused until the platform team fixes it",
                    self.name
                ),
            ));
            return;
        }
        let effort = judgement.effort;
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
        for (i, arn) in spec.permissions.managed_policy_arns.iter().enumerate() {
            let field = format!("spec.permissions.managedPolicyArns[{i}]");
            let allowed = &self.allowed_managed_policy_arns;
            let verdict = judge_arn(
                arn,
                (!allowed.is_empty()).then_some(allowed.as_slice()),
                &self.denied_managed_policy_arns,
                &field,
                judgement,
            );
            match verdict {
                ArnVerdict::Denied(denied) => {
                    judgement.refuse(Violation::guardrail(
                        field,
                        format!(
                            "{arn} is denied by {}: {denied}",
                            self.field("deniedManagedPolicyArns")
                        ),
                    ));
                }
                ArnVerdict::NotAllowed => {
                    judgement.refuse(Violation::guardrail(
                        field,
                        format!(
                            "{arn} is not among the managed policies {} allows ({})",
                            self.field("allowedManagedPolicyArns"),
                            self.allowed_managed_policy_arns.join(", ")
                        ),
                    ));
                }
                ArnVerdict::Passes | ArnVerdict::Unjudged => {}
            }
        }
        // Role names are IAM names: unique whatever their letter case, so matched without
        // it (`TEAM.x` is the name `team.x`).
        if let Some(name) = spec.role.name.as_deref().filter(|n| !n.is_empty())
            && !self.role_name_override.is_empty()
        {
            let mut matched = Some(false);
            for pattern in &self.role_name_override {
                matched =
                    judgement.answer("spec.role.name", glob::matches(pattern, name, true, effort));
                if matched != Some(false) {
                    break;
                }
            }
            if matched == Some(false) {
                judgement.refuse(Violation::guardrail(
                    "spec.role.name",
                    format!(
                        "{name:?} matches none of the role names {} allows here ({})",
                        self.field("roleNameOverride"),
                        self.role_name_override.join(", ")
                    ),
                ));
            }
        }
    }
}

impl AppliedPolicy {
    /// The identity the binding asks for (`mechanism`: the one in force, the spec's or
    /// the configuration's default) against this policy's mechanisms and target roles.
    pub(crate) fn judge_identity(
        &self,
        spec: &PodIdentityBindingSpec,
        mechanism: podidentity_api::Mechanism,
        judgement: &mut Judgement<'_>,
    ) {
        if self.unusable.is_some() {
            return;
        }
        if !self.mechanisms.is_empty() && !self.mechanisms.contains(&mechanism) {
            let allowed: Vec<String> = self.mechanisms.iter().map(ToString::to_string).collect();
            judgement.refuse(Violation::guardrail(
                "spec.identity.mechanism",
                format!(
                    "{mechanism} is not a mechanism {} allows here ({}): set \
                     spec.identity.mechanism to {}",
                    self.field("mechanisms"),
                    allowed.join(", "),
                    allowed.join(" or ")
                ),
            ));
        }
        let Some(target) = spec.identity.target_role_arn.as_deref() else {
            return;
        };
        if self.allowed_target_role_arns.is_empty() {
            return;
        }
        let field = "spec.identity.targetRoleArn";
        let effort = judgement.effort;
        // ARNs compare with their letter case: a target written otherwise is refused, never
        // let through.
        let mut matched = Some(false);
        for pattern in &self.allowed_target_role_arns {
            matched = judgement.answer(field, glob::matches(pattern, target, false, effort));
            if matched != Some(false) {
                break;
            }
        }
        if matched == Some(false) {
            judgement.refuse(Violation::guardrail(
                field,
                format!(
                    "{target} matches none of the target roles {} allows here ({})",
                    self.field("allowedTargetRoleArns"),
                    few(&self.allowed_target_role_arns)
                ),
            ));
        }
    }
}

/// The order bindings of one namespace claim its quota in: older first, then by name (as
/// the ServiceAccount ownership rule orders them).
pub fn over_quota(policies: &[AppliedPolicy], rank: usize) -> Option<Violation> {
    let (name, limit) = policies
        .iter()
        .filter_map(|p| p.max_bindings_per_namespace.map(|max| (&p.name, max)))
        .min_by_key(|(_, max)| *max)?;
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    (rank >= limit_usize).then(|| {
        Violation::guardrail(
            "metadata.name",
            format!(
                "this namespace may have {limit} binding(s) (PodIdentityPolicy {name} \
                 (maxBindingsPerNamespace)) and this one is number {} by age: delete an older \
                 binding, or ask the platform team for more",
                rank + 1
            ),
        )
    })
}

/// The one boundary the policies require, or a problem when they require different ones.
pub fn required_boundary(policies: &[AppliedPolicy]) -> Result<Option<&str>, Violation> {
    let mut required: Vec<(&str, &str)> = policies
        .iter()
        .filter_map(|p| {
            p.permissions_boundary_arn
                .as_deref()
                .map(|arn| (p.name.as_str(), arn))
        })
        .collect();
    required.sort_by_key(|(_, arn)| *arn);
    required.dedup_by_key(|(_, arn)| *arn);
    match required.as_slice() {
        [] => Ok(None),
        [(_, arn)] => Ok(Some(arn)),
        several => Err(Violation::guardrail(
            "metadata.namespace",
            format!(
                "the PodIdentityPolicies selecting this namespace require different \
                 permissions boundaries ({}); a role has one: the platform team must make \
                 them agree",
                several
                    .iter()
                    .map(|(policy, arn)| format!("{policy}: {arn}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests;
