//! Managed policies judged by what they grant, not by their ARN: the document of a
//! policy's default version (read from IAM by the controller) goes through the same
//! action and resource guardrails as the spec's own statements. An allow-list of
//! `arn:aws:iam::aws:policy/*` would otherwise pass `AWSOrganizationsFullAccess`.
//!
//! `NotAction` in an Allow statement allows every action but those it lists (how AWS's
//! broadest policies are written): denied patterns it covers are left out, the rest
//! count. `NotResource` is read as `"*"`.

use serde_json::Value;

use crate::compare::parse_document;
use crate::document::{statements, strings};
use crate::effort::{Effort, Judgement};
use crate::error::Violation;
use crate::glob;
use crate::guardrails::{RuleSet, few};
use crate::namespace_policy::AppliedPolicy;

/// A managed policy version as read from IAM.
#[derive(Clone, Copy, Debug)]
pub struct ManagedPolicy<'a> {
    pub arn: &'a str,
    pub version_id: &'a str,
    /// The version's document, URL-decoded.
    pub document: &'a str,
}

/// One Allow statement: its actions and resources (`"*"` for a `NotAction` or
/// `NotResource`), and the actions a `NotAction` leaves out.
struct Allow {
    actions: Vec<String>,
    resources: Vec<String>,
    except_actions: Vec<String>,
}

/// The Allow statements of a document.
fn allow_statements(document: &Value) -> Option<Vec<Allow>> {
    let statements = statements(document)?;
    let everything = || vec!["*".to_string()];
    Some(
        statements
            .into_iter()
            .filter(|s| s.get("Effect").and_then(Value::as_str) == Some("Allow"))
            .map(|s| {
                let except_actions = strings(s.get("NotAction"));
                let actions = if s.get("NotAction").is_some() {
                    everything()
                } else {
                    strings(s.get("Action"))
                };
                let resources = if s.get("NotResource").is_some() {
                    everything()
                } else {
                    strings(s.get("Resource"))
                };
                Allow {
                    actions,
                    resources,
                    except_actions,
                }
            })
            .collect(),
    )
}

impl RuleSet {
    /// What attaching `policy` would grant beyond the rules, reported at `field` (the
    /// ARN's place in the spec). A document that cannot be read is refused: what it
    /// grants is unknown. Bounded like [`RuleSet::check`], one allowance per document.
    pub fn check_managed_policy(&self, field: &str, policy: ManagedPolicy<'_>) -> Vec<Violation> {
        let ManagedPolicy {
            arn, version_id, ..
        } = policy;
        let statements = parse_document(policy.document)
            .ok()
            .as_ref()
            .and_then(allow_statements);
        let Some(statements) = statements else {
            return vec![Violation::guardrail(
                field,
                format!(
                    "{arn} (version {version_id}) has a document the operator cannot read, so \
                     what it grants is unknown: write statements instead"
                ),
            )];
        };
        let effort = Effort::for_judgement();
        let mut judgement = Judgement::new(&effort);
        let mut denied: Vec<&str> = Vec::new();
        let mut secret_reads: Vec<&str> = Vec::new();
        let mut protected: Vec<&str> = Vec::new();
        for statement in &statements {
            let reach = self.reach(
                &statement.actions,
                &statement.resources,
                field,
                &mut judgement,
            );
            for (_, reached) in reach.denied {
                denied.extend(
                    reached
                        .into_iter()
                        .filter(|p| !statement.leaves_out(p, field, &mut judgement)),
                );
            }
            protected.extend(
                reach
                    .protected
                    .iter()
                    .map(|r| statement.resources[*r].as_str()),
            );
            for (_, reads) in reach.every_resource {
                secret_reads.extend(
                    reads
                        .into_iter()
                        .filter(|p| !statement.leaves_out(p, field, &mut judgement)),
                );
            }
        }
        // Once each, in the configuration's order (its first entries are the gravest).
        let mut seen = std::collections::BTreeSet::new();
        denied.retain(|pattern| seen.insert(*pattern));
        seen.clear();
        secret_reads.retain(|pattern| seen.insert(*pattern));
        if !denied.is_empty() {
            judgement.refuse(Violation::guardrail(
                field,
                format!(
                    "{arn} (version {version_id}) grants {}, which the operator's guardrails \
                     deny (guardrails.deniedActions): attach a narrower policy or write \
                     statements",
                    few(&denied)
                ),
            ));
        }
        if !secret_reads.is_empty() {
            judgement.refuse(Violation::guardrail(
                field,
                format!(
                    "{arn} (version {version_id}) grants {} on resources of any name, every \
                     such secret in the account (guardrails.actionsNeedingNamedResources): \
                     write statements that name the resources",
                    few(&secret_reads)
                ),
            ));
        }
        if let Some(resource) = protected.first() {
            judgement.refuse(Violation::guardrail(
                field,
                format!(
                    "{arn} (version {version_id}): {}",
                    crate::guardrails::protected_message(resource)
                ),
            ));
        }
        for namespace_policy in &self.policies {
            beyond_policy(namespace_policy, field, policy, &statements, &mut judgement);
        }
        judgement.violations
    }
}

impl Allow {
    /// Whether a `NotAction` of this statement leaves out everything `pattern` reaches (so
    /// the statement does not grant it). Unjudged is not left out.
    fn leaves_out(&self, pattern: &str, field: &str, judgement: &mut Judgement<'_>) -> bool {
        let effort = judgement.effort;
        self.except_actions.iter().any(|except| {
            judgement.answer(field, glob::covers(except, pattern, true, effort)) == Some(true)
        })
    }
}

/// What a managed policy's Allow statements grant beyond one PodIdentityPolicy's limits:
/// actions outside its allowed actions, actions it denies, resources outside its allowed
/// resources (a `NotAction` reaches every action, a `NotResource` every resource).
fn beyond_policy(
    limits: &AppliedPolicy,
    field: &str,
    policy: ManagedPolicy<'_>,
    statements: &[Allow],
    judgement: &mut Judgement<'_>,
) {
    let ManagedPolicy {
        arn, version_id, ..
    } = policy;
    let effort = judgement.effort;
    let mut outside_actions: Vec<&str> = Vec::new();
    let mut denied: Vec<&str> = Vec::new();
    let mut outside_resources: Vec<&str> = Vec::new();
    for statement in statements {
        for action in &statement.actions {
            let within = limits.allowed_actions.is_empty()
                || limits.allowed_actions.iter().any(|allowed| {
                    judgement.answer(field, glob::covers(allowed, action, true, effort))
                        == Some(true)
                });
            if !within && !judgement.out_of_bound() {
                outside_actions.push(action);
            }
            let reached =
                crate::guardrails::reached(action, &limits.denied_actions, field, judgement);
            denied.extend(
                reached
                    .into_iter()
                    .filter(|pattern| !statement.leaves_out(pattern, field, judgement)),
            );
        }
        if !limits.allowed_resources.is_empty() {
            for resource in &statement.resources {
                let inside = limits.allowed_resources.iter().any(|allowed| {
                    judgement.answer(field, glob::covers(allowed, resource, false, effort))
                        == Some(true)
                });
                if !inside && !judgement.out_of_bound() {
                    outside_resources.push(resource);
                }
            }
        }
    }
    let setting = |name: &str| format!("PodIdentityPolicy {} ({name})", limits.name);
    for list in [&mut outside_actions, &mut denied, &mut outside_resources] {
        let mut seen = std::collections::BTreeSet::new();
        list.retain(|item| seen.insert(*item));
    }
    if !outside_actions.is_empty() {
        judgement.refuse(Violation::guardrail(
            field,
            format!(
                "{arn} (version {version_id}) grants {}, beyond the actions {} allows ({}): \
                 attach a narrower policy or write statements",
                few(&outside_actions),
                setting("allowedActions"),
                few(&limits.allowed_actions)
            ),
        ));
    }
    if !denied.is_empty() {
        judgement.refuse(Violation::guardrail(
            field,
            format!(
                "{arn} (version {version_id}) grants {}, which {} denies: attach a narrower \
                 policy or write statements",
                few(&denied),
                setting("deniedActions")
            ),
        ));
    }
    if !outside_resources.is_empty() {
        judgement.refuse(Violation::guardrail(
            field,
            format!(
                "{arn} (version {version_id}) reaches {}, beyond the resources {} allows here \
                 ({}): write statements that name resources within them",
                few(&outside_resources),
                setting("allowedResources"),
                few(&limits.allowed_resources)
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podidentity_api::config::OperatorConfig;

    fn rules() -> RuleSet {
        RuleSet::from_config(&OperatorConfig {
            cluster_name: "prod".into(),
            ..OperatorConfig::default()
        })
    }

    fn judge(document: &str) -> Vec<Violation> {
        rules().check_managed_policy(
            "spec.permissions.managedPolicyArns[0]",
            ManagedPolicy {
                arn: "arn:aws:iam::aws:policy/Example",
                version_id: "v3",
                document,
            },
        )
    }

    #[test]
    fn a_policy_granting_a_denied_action_is_refused_by_what_it_grants() {
        // AWSOrganizationsFullAccess, as AWS publishes it (abridged).
        let organizations = r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"AWSOrganizationsFullAccess","Effect":"Allow","Action":"organizations:*","Resource":"*"},
            {"Sid":"AWSOrganizationsFullAccessAccount","Effect":"Allow","Action":["account:PutAlternateContact","account:ListRegions"],"Resource":"*"}]}"#;
        let violations = judge(organizations);
        assert_eq!(violations.len(), 1, "{violations:?}");
        let message = &violations[0].message;
        assert!(
            message.contains("organizations:*")
                && message.contains("account:*")
                && message.contains("version v3")
                && message.contains("guardrails.deniedActions"),
            "{message}"
        );
        assert_eq!(violations[0].field, "spec.permissions.managedPolicyArns[0]");
    }

    #[test]
    fn not_action_allows_everything_else_and_is_judged_so() {
        // PowerUserAccess: everything but IAM, Organizations and Account.
        let power_user = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","NotAction":["iam:*","organizations:*","account:*"],"Resource":"*"}]}"#;
        let violations = judge(power_user);
        assert_eq!(violations.len(), 2, "{violations:?}");
        let more = podidentity_api::config::DEFAULT_DENIED_ACTIONS.len() - 6;
        assert!(
            violations[0]
                .message
                .contains(&format!("sts:AssumeRole, sts:AssumeRoleWithSAML, sts:AssumeRoleWithWebIdentity and {more} more")),
            "{}",
            violations[0].message
        );
        assert!(
            violations[1]
                .message
                .contains("secretsmanager:GetSecretValue")
        );
    }

    #[test]
    fn secret_reads_on_every_resource_are_refused_and_named_ones_pass() {
        let every =
            r#"{"Statement":{"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"}}"#;
        let violations = judge(every);
        // secretsmanager:* also reaches PutResourcePolicy, denied by default.
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(
            violations[1]
                .message
                .contains("guardrails.actionsNeedingNamedResources")
        );
        let named = r#"{"Statement":{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"arn:aws:secretsmanager:*:*:secret:shop/*"}}"#;
        assert_eq!(judge(named), vec![]);
    }

    #[test]
    fn everyday_policies_pass_and_deny_statements_are_fine() {
        // AmazonS3ReadOnlyAccess and AmazonSQSReadOnlyAccess, as AWS publishes them.
        let s3 = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*","s3:List*","s3:Describe*","s3-object-lambda:Get*","s3-object-lambda:List*"],"Resource":"*"}]}"#;
        let sqs = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sqs:GetQueueAttributes","sqs:GetQueueUrl","sqs:ListDeadLetterSourceQueues","sqs:ListQueues","sqs:ListMessageMoveTasks","sqs:ListQueueTags"],"Resource":"*"}]}"#;
        let deny = r#"{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#;
        for document in [s3, sqs, deny] {
            assert_eq!(judge(document), vec![], "{document}");
        }
    }

    #[test]
    fn an_unreadable_document_is_refused() {
        for document in ["not json", r#"{"Version":"2012-10-17"}"#] {
            let violations = judge(document);
            assert_eq!(violations.len(), 1, "{document}");
            assert!(violations[0].message.contains("cannot read"));
        }
    }

    #[test]
    fn a_namespaces_policies_judge_what_a_managed_policy_grants_too() {
        use crate::namespace_policy::NamespacePolicy;
        use podidentity_api::PodIdentityPolicy;
        let spec = serde_json::from_value(serde_json::json!({
            "namespaceSelector": {},
            "allowedActions": ["s3:*", "sqs:*"],
            "deniedActions": ["s3:DeleteBucket"],
            "allowedResources": ["arn:aws:s3:::${namespace}.*"],
        }))
        .unwrap_or_else(|err| panic!("{err}"));
        let teams = NamespacePolicy::from_resource(&PodIdentityPolicy::new("teams", spec))
            .unwrap_or_else(|problems| panic!("{problems:?}"));
        let config = OperatorConfig {
            cluster_name: "prod".into(),
            ..OperatorConfig::default()
        };
        let rules = crate::Guardrails::from_config(&config)
            .with_policies(vec![teams], Default::default())
            .rules_for("shop");
        let judge = |document: &str| {
            rules.check_managed_policy(
                "spec.permissions.managedPolicyArns[0]",
                ManagedPolicy {
                    arn: "arn:aws:iam::111122223333:policy/p",
                    version_id: "v1",
                    document,
                },
            )
        };
        // AmazonS3ReadOnlyAccess (as AWS publishes it): every bucket, and another service.
        let read_only = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
            "Action":["s3:Get*","s3:List*","s3:Describe*","s3-object-lambda:Get*"],"Resource":"*"}]}"#;
        let messages: Vec<String> = judge(read_only).into_iter().map(|v| v.message).collect();
        assert_eq!(messages.len(), 2, "{messages:#?}");
        assert!(
            messages[0].contains("s3-object-lambda:Get*")
                && messages[0].contains("PodIdentityPolicy teams (allowedActions)"),
            "{}",
            messages[0]
        );
        assert!(messages[1].contains("reaches *,"), "{}", messages[1]);
        assert!(
            messages[1].contains("arn:aws:s3:::shop.*"),
            "{}",
            messages[1]
        );
        // Within the team's own buckets, but a denied action.
        let deletes = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
            "Action":"s3:*","Resource":"arn:aws:s3:::shop.data"}]}"#;
        let messages: Vec<String> = judge(deletes).into_iter().map(|v| v.message).collect();
        assert_eq!(messages.len(), 1, "{messages:#?}");
        assert!(messages[0].contains("s3:DeleteBucket"), "{}", messages[0]);
        // Named actions on the team's own objects: passes.
        let narrow = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
            "Action":["s3:GetObject","sqs:SendMessage"],"Resource":["arn:aws:s3:::shop.data/*"]}]}"#;
        assert_eq!(judge(narrow), Vec::new());
        // Another namespace's buckets: refused.
        let other = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
            "Action":"s3:GetObject","Resource":"arn:aws:s3:::blog.data/*"}]}"#;
        assert_eq!(judge(other).len(), 1);
    }
}
