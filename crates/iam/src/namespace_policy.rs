//! PodIdentityPolicies as rules: which policies select a namespace, their patterns with
//! the namespace's values put in, and what each one refuses in a binding. Every policy that
//! selects a namespace applies on its own, so the most restrictive wins: a statement must
//! pass every policy's allow-lists (allows intersect) and none's deny-lists (denies
//! unite), and the lowest quota counts.

use std::collections::BTreeMap;

use kube::core::{Selector, SelectorExt};
use podidentity_api::policy::TEMPLATE_VARIABLES;
use podidentity_api::{Effect, PodIdentityBindingSpec, PodIdentityPolicy};

use crate::error::Violation;
use crate::glob;
use crate::guardrails::{ArnVerdict, few, judge_arn, reached};

/// A policy as the engine reads it: its name, its selector, its spec.
#[derive(Clone, Debug)]
pub struct NamespacePolicy {
    pub name: String,
    /// `None`: the policy selects no namespace.
    selector: Option<Selector>,
    spec: podidentity_api::PodIdentityPolicySpec,
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

impl NamespacePolicy {
    /// Reads a policy; what makes it unusable is reported against its own fields.
    pub fn from_resource(policy: &PodIdentityPolicy) -> Result<Self, Vec<Violation>> {
        let name = policy.metadata.name.clone().unwrap_or_default();
        let spec = policy.spec.clone();
        let mut problems = Vec::new();
        let selector = match spec.namespace_selector.clone().map(Selector::try_from) {
            None => None,
            Some(Ok(selector)) => Some(selector),
            Some(Err(err)) => {
                problems.push(Violation::invalid(
                    "spec.namespaceSelector",
                    format!("{err}: use matchLabels, or matchExpressions with In, NotIn, Exists or DoesNotExist"),
                ));
                None
            }
        };
        let templated = [
            ("spec.allowedResources", &spec.allowed_resources),
            ("spec.roleNameOverride", &spec.role_name_override),
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
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            name,
            selector,
            spec,
        })
    }

    /// Whether the policy governs a namespace with these labels.
    pub fn selects(&self, namespace_labels: &BTreeMap<String, String>) -> bool {
        self.selector
            .as_ref()
            .is_some_and(|selector| selector.matches(namespace_labels))
    }

    /// The policy with one namespace's values put in.
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
            max_bindings_per_namespace: spec.max_bindings_per_namespace,
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
    pub max_bindings_per_namespace: Option<u32>,
}

impl AppliedPolicy {
    fn field(&self, setting: &str) -> String {
        format!("PodIdentityPolicy {} ({setting})", self.name)
    }

    /// Everything in the spec this policy refuses.
    pub fn check(&self, spec: &PodIdentityBindingSpec) -> Vec<Violation> {
        let mut violations = Vec::new();
        for (s, statement) in spec.permissions.statements.iter().enumerate() {
            if statement.effect == Effect::Deny {
                continue;
            }
            for (a, action) in statement.actions.iter().enumerate() {
                let field = format!("spec.permissions.statements[{s}].actions[{a}]");
                let outside = !self.allowed_actions.is_empty()
                    && !self
                        .allowed_actions
                        .iter()
                        .any(|allowed| glob::covers(allowed, action, true));
                if outside {
                    violations.push(Violation::guardrail(
                        field.clone(),
                        format!(
                            "{action:?} reaches beyond the actions {} allows ({}): name \
                             actions within them",
                            self.field("allowedActions"),
                            few(&self.allowed_actions)
                        ),
                    ));
                }
                let reached = reached(action, &self.denied_actions);
                if !reached.is_empty() {
                    violations.push(Violation::guardrail(
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
                let inside = self
                    .allowed_resources
                    .iter()
                    .any(|allowed| glob::covers(allowed, resource, false));
                if !inside {
                    violations.push(Violation::guardrail(
                        format!("spec.permissions.statements[{s}].resources[{r}]"),
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
        for (i, arn) in spec.permissions.managed_policy_arns.iter().enumerate() {
            let field = format!("spec.permissions.managedPolicyArns[{i}]");
            let allowed = &self.allowed_managed_policy_arns;
            let verdict = judge_arn(
                arn,
                (!allowed.is_empty()).then_some(allowed.as_slice()),
                &self.denied_managed_policy_arns,
            );
            match verdict {
                ArnVerdict::Denied(denied) => {
                    violations.push(Violation::guardrail(
                        field,
                        format!(
                            "{arn} is denied by {}: {denied}",
                            self.field("deniedManagedPolicyArns")
                        ),
                    ));
                }
                ArnVerdict::NotAllowed => {
                    violations.push(Violation::guardrail(
                        field,
                        format!(
                            "{arn} is not among the managed policies {} allows ({})",
                            self.field("allowedManagedPolicyArns"),
                            self.allowed_managed_policy_arns.join(", ")
                        ),
                    ));
                }
                ArnVerdict::Passes => {}
            }
        }
        if let Some(name) = spec.role.name.as_deref().filter(|n| !n.is_empty())
            && !self.role_name_override.is_empty()
            && !self
                .role_name_override
                .iter()
                .any(|pattern| glob::matches(pattern, name, false))
        {
            violations.push(Violation::guardrail(
                "spec.role.name",
                format!(
                    "{name:?} matches none of the role names {} allows here ({})",
                    self.field("roleNameOverride"),
                    self.role_name_override.join(", ")
                ),
            ));
        }
        violations
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
