//! Guardrails: what a namespace may ask for. Today one rule set from the operator
//! configuration applies everywhere; `Guardrails::rules_for` is where a per-namespace
//! `PodIdentityPolicy` will plug in, so callers already ask per namespace.

use podidentity_api::config::OperatorConfig;
use podidentity_api::{Effect, PodIdentityBindingSpec};

use crate::error::Violation;
use crate::glob;

/// The rules that apply to one namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSet {
    /// No Allow statement may reach these action patterns.
    pub denied_actions: Vec<String>,
    /// Managed policies must match one of these globs...
    pub allowed_managed_policy_arns: Vec<String>,
    /// ...and none of these.
    pub denied_managed_policy_arns: Vec<String>,
    /// Whether `spec.role.name` may be set.
    pub allow_name_override: bool,
}

impl RuleSet {
    pub fn from_config(config: &OperatorConfig) -> Self {
        Self {
            denied_actions: config.guardrails.denied_actions.clone(),
            allowed_managed_policy_arns: config.guardrails.allowed_managed_policy_arns.clone(),
            denied_managed_policy_arns: config.guardrails.denied_managed_policy_arns.clone(),
            allow_name_override: config.roles.allow_name_override,
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
            for (a, action) in statement.actions.iter().enumerate() {
                let reached: Vec<&str> = self
                    .denied_actions
                    .iter()
                    .filter(|denied| glob::intersects(action, denied, true))
                    .map(String::as_str)
                    .collect();
                if !reached.is_empty() {
                    violations.push(Violation::guardrail(
                        format!("spec.permissions.statements[{s}].actions[{a}]"),
                        format!(
                            "{action:?} could allow {}, which the operator's guardrails deny \
                             (guardrails.deniedActions): name the actions you need within \
                             other services, or make this a Deny statement",
                            reached.join(", ")
                        ),
                    ));
                }
            }
        }
        for (i, arn) in spec.permissions.managed_policy_arns.iter().enumerate() {
            let field = format!("spec.permissions.managedPolicyArns[{i}]");
            if let Some(denied) = self
                .denied_managed_policy_arns
                .iter()
                .find(|pattern| glob::matches(pattern, arn, false))
            {
                violations.push(Violation::guardrail(
                    field,
                    format!(
                        "{arn} is denied by the operator's guardrails \
                         (guardrails.deniedManagedPolicyArns: {denied}): attach a narrower \
                         policy or write statements"
                    ),
                ));
            } else if !self
                .allowed_managed_policy_arns
                .iter()
                .any(|pattern| glob::matches(pattern, arn, false))
            {
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
        }
        if spec
            .role
            .name
            .as_deref()
            .is_some_and(|name| !name.is_empty())
            && !self.allow_name_override
        {
            violations.push(Violation::guardrail(
                "spec.role.name",
                "explicit role names are not allowed by this operator (roles.allowNameOverride \
                 is false): remove spec.role.name to get the derived name",
            ));
        }
        violations
    }
}

/// Where the validator gets the rules for a binding's namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Guardrails {
    default_rules: RuleSet,
}

impl Guardrails {
    pub fn from_config(config: &OperatorConfig) -> Self {
        Self {
            default_rules: RuleSet::from_config(config),
        }
    }

    /// The rules for `namespace`: the configuration's, until PodIdentityPolicy selects
    /// namespaces.
    pub fn rules_for(&self, _namespace: &str) -> &RuleSet {
        &self.default_rules
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
        assert_eq!(
            fields,
            [1, 2, 3, 4].map(|a| format!("spec.permissions.statements[0].actions[{a}]"))
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
