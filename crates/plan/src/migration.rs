//! `plan --migrate-to MECHANISM`: which bindings of a repository would change mechanism
//! if each were set to MECHANISM, and what each step of the operator's migration changes
//! (the trust at every step, the association, the ServiceAccount's annotations, the pods
//! waited for). Offline, from the same judgement as `plan`: a binding the target would
//! refuse (a policy forbidding the mechanism, a credentials Secret under Pod Identity) is
//! shown refused with its problems.

use std::collections::BTreeMap;
use std::fmt::Write;

use podidentity_api::Mechanism;
use podidentity_api::annotations::SHORT_FORM_MECHANISM;
use podidentity_api::config::OperatorConfig;
use podidentity_iam::DesiredState;
use serde::Serialize;
use serde_json::Value;

use crate::manifests::{Document, Source, SourcedDocument};
use crate::{PLAN_FORMAT_VERSION, Problem, build_plan};

/// The migration plan of a repository.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationPlan {
    pub format_version: u32,
    pub to: Mechanism,
    /// Bindings that would move, each with its steps (or the target's refusal).
    pub moves: Vec<Move>,
    /// Valid bindings already on the target (and CredentialsRequests, IRSA's only).
    pub staying: usize,
    /// Bindings refused as they are: `plan` says why; they move nowhere.
    pub refused_now: usize,
}

/// One binding that would change mechanism.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Move {
    #[serde(flatten)]
    pub source: Source,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub from: Mechanism,
    pub to: Mechanism,
    /// Whether the target is allowed; if not, `problems` says why and nothing moves.
    pub valid: bool,
    pub problems: Vec<Problem>,
    pub steps: Vec<Step>,
}

/// One step of a migration, as the operator takes it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub title: String,
    pub changes: Vec<String>,
    /// The role's trust policy once this step is done (when it changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_policy: Option<Value>,
}

/// The documents as they would be with every binding set to `to`.
fn moved_to(documents: &[SourcedDocument], to: Mechanism) -> Vec<SourcedDocument> {
    documents
        .iter()
        .cloned()
        .map(|mut sourced| {
            match &mut sourced.document {
                Document::Binding(binding) => {
                    let identity = &mut binding.spec.identity;
                    identity.mechanism = Some(to);
                    if to == Mechanism::Irsa {
                        // Pod Identity's options mean nothing under IRSA (and are refused).
                        identity.target_role_arn = None;
                        identity.disable_session_tags = false;
                        identity.policy = None;
                    }
                }
                Document::ServiceAccount(sa) => {
                    sa.annotations
                        .insert(SHORT_FORM_MECHANISM.into(), to.to_string());
                }
                _ => {}
            }
            sourced
        })
        .collect()
}

/// Judges the documents as they are and as they would be on `to`, and pairs the two.
pub fn build_migration_plan(
    documents: Vec<SourcedDocument>,
    ignored_documents: usize,
    default_namespace: &str,
    config: &OperatorConfig,
    namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    to: Mechanism,
) -> MigrationPlan {
    let after_documents = moved_to(&documents, to);
    let now = build_plan(
        documents,
        ignored_documents,
        default_namespace,
        config,
        namespace_labels.clone(),
    );
    let after = build_plan(
        after_documents,
        ignored_documents,
        default_namespace,
        config,
        namespace_labels,
    );
    let mut plan = MigrationPlan {
        format_version: PLAN_FORMAT_VERSION,
        to,
        moves: Vec::new(),
        staying: 0,
        refused_now: 0,
    };
    // One entry per document, in the same order: the change of mechanism adds or drops
    // none.
    for (before, after) in now.bindings.iter().zip(after.bindings) {
        let same = before.kind == after.kind
            && before.namespace == after.namespace
            && before.name == after.name;
        let Some(current) = before.desired.as_ref().filter(|_| same) else {
            plan.refused_now += 1;
            continue;
        };
        if current.mechanism == to || before.kind == "CredentialsRequest" {
            plan.staying += 1;
            continue;
        }
        let steps = after
            .desired
            .as_ref()
            .map(|target| steps(current, target))
            .unwrap_or_default();
        plan.moves.push(Move {
            source: after.source,
            kind: after.kind,
            namespace: after.namespace,
            name: after.name,
            from: current.mechanism,
            to,
            valid: after.valid,
            problems: after.problems,
            steps,
        });
    }
    plan
}

/// The operator's steps from `current` to `target` (see the controller's
/// `binding::migration`).
fn steps(current: &DesiredState, target: &DesiredState) -> Vec<Step> {
    let (from, to) = (current.mechanism, target.mechanism);
    let account = &target.service_account.name;
    let namespace = target
        .association
        .as_ref()
        .map(|a| a.namespace.clone())
        .or_else(|| current.association.as_ref().map(|a| a.namespace.clone()));
    let qualified = match &namespace {
        Some(ns) => format!("{ns}/{account}"),
        None => account.clone(),
    };
    let mut both = target.clone();
    both.trusting_also(current.role.trust_policy.clone());
    let mut first = vec![format!(
        "role {}: trust policy gets {to}'s statement beside {from}'s ({} bytes)",
        target.role.name, both.trust_policy_size.bytes
    )];
    if current.role.inline_policy != target.role.inline_policy {
        first.push(format!(
            "role {}: inline policy changes (role chaining for targetRoleArn)",
            target.role.name
        ));
    }
    let mut steps = vec![Step {
        title: "1. trust both".into(),
        changes: first,
        trust_policy: Some(both.role.trust_policy.to_value()),
    }];
    let annotations = |desired: &DesiredState| -> Vec<String> {
        desired
            .service_account
            .annotations
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect()
    };
    match (from, &target.association) {
        (Mechanism::Irsa, Some(association)) => {
            steps.push(Step {
                title: "2. deliver Pod Identity".into(),
                changes: vec![format!(
                    "EKS Pod Identity association made: cluster {}, {}/{} -> {}",
                    association.cluster,
                    association.namespace,
                    association.service_account,
                    target.role.arn
                )],
                trust_policy: None,
            });
            steps.push(Step {
                title: "3. take IRSA from new pods".into(),
                changes: annotations(current)
                    .into_iter()
                    .map(|a| {
                        format!(
                            "ServiceAccount {qualified}: annotation removed once the association exists ({a})"
                        )
                    })
                    .collect(),
                trust_policy: None,
            });
        }
        _ => {
            steps.push(Step {
                title: "2. deliver IRSA".into(),
                changes: annotations(target)
                    .into_iter()
                    .map(|a| format!("ServiceAccount {qualified}: annotation added ({a})"))
                    .collect(),
                trust_policy: None,
            });
            steps.push(Step {
                title: "3. keep Pod Identity for running pods".into(),
                changes: vec![
                    "the association stays (removing it would cut the credentials of pods \
                     using it); new pods get IRSA's variables, which the SDKs prefer"
                        .into(),
                ],
                trust_policy: None,
            });
        }
    }
    let using = match from {
        Mechanism::Irsa => format!("AWS_ROLE_ARN={}", current.role.arn),
        Mechanism::PodIdentity => {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI without IRSA's variables".into()
        }
    };
    steps.push(Step {
        title: format!("4. wait for pods on {from}"),
        changes: vec![format!(
            "running pods of ServiceAccount {qualified} with {using} are counted \
             (status.migration.podsRemaining); with spec.injection.restartPods their \
             Deployments, StatefulSets and DaemonSets are rolled once"
        )],
        trust_policy: None,
    });
    let mut last = vec![format!(
        "role {}: {from}'s trust statement removed",
        target.role.name
    )];
    if from == Mechanism::PodIdentity
        && let Some(association) = &current.association
    {
        last.push(format!(
            "EKS Pod Identity association of {}/{} deleted",
            association.namespace, association.service_account
        ));
    }
    steps.push(Step {
        title: "5. finish when none remain".into(),
        changes: last,
        trust_policy: Some(target.role.trust_policy.to_value()),
    });
    steps
}

pub fn json(plan: &MigrationPlan) -> String {
    // Plain data: serialization cannot fail.
    let mut text = serde_json::to_string_pretty(plan).unwrap_or_default();
    text.push('\n');
    text
}

pub fn table(plan: &MigrationPlan) -> String {
    let mut out = String::new();
    for moving in &plan.moves {
        let verdict = if moving.valid { "MOVES" } else { "REFUSED" };
        let _ = writeln!(
            out,
            "{}/{}  {} -> {}  {verdict}  {}",
            moving.namespace, moving.name, moving.from, moving.to, moving.source
        );
        for problem in &moving.problems {
            let _ = writeln!(
                out,
                "  {:<20} {}: {}",
                problem.reason, problem.field, problem.message
            );
        }
        for step in &moving.steps {
            let _ = writeln!(out, "  {}", step.title);
            for change in &step.changes {
                let _ = writeln!(out, "     {change}");
            }
            if let Some(trust) = &step.trust_policy {
                let text = serde_json::to_string_pretty(trust).unwrap_or_default();
                for line in text.lines() {
                    let _ = writeln!(out, "       {line}");
                }
            }
        }
        out.push('\n');
    }
    let refused = plan.moves.iter().filter(|m| !m.valid).count();
    let _ = writeln!(
        out,
        "{} binding(s) would move to {} ({} refused there), {} stay, {} refused as they are",
        plan.moves.len(),
        plan.to,
        refused,
        plan.staying,
        plan.refused_now
    );
    out
}
