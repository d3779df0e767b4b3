//! A PodIdentityPolicy's status: the namespaces it selects, the bindings there, how many
//! of those it refuses, and whether it can be applied at all. The policy reconciler is its
//! only writer; it works from the watch caches (no reads of its own) and writes only what
//! changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use podidentity_api::conditions::{Condition, READY, reason, word};
use podidentity_api::{PodIdentityBinding, PodIdentityPolicy, PodIdentityPolicyStatus};
use podidentity_iam::Guardrails;
use podidentity_iam::namespace_policy::{NamespacePolicy, over_quota};
use podidentity_iam::ownership::claim_order;

use crate::caches::Watched;
use crate::context::Context;
use crate::policy::view::WatchedPolicy;
use crate::status_patch::apply_status;

/// What a policy governs now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Governed {
    pub namespaces: i64,
    pub bindings: i64,
    pub refused: i64,
}

/// Counts what `policy` governs: the namespaces it selects, their bindings (not being
/// deleted), and those it refuses by its own rules or its quota (the oldest it allows
/// keep their places).
pub fn survey(
    policy: &NamespacePolicy,
    guardrails: &Guardrails,
    bindings: &[Arc<Watched>],
) -> Governed {
    let mut by_namespace: BTreeMap<&str, Vec<&PodIdentityBinding>> = BTreeMap::new();
    for binding in bindings.iter().filter_map(|b| b.0.as_ref().ok()) {
        if binding.metadata.deletion_timestamp.is_none()
            && let Some(namespace) = binding.metadata.namespace.as_deref()
        {
            by_namespace.entry(namespace).or_default().push(binding);
        }
    }
    let mut governed = Governed::default();
    for namespace in guardrails.namespaces() {
        let Some(applied) = guardrails.applied_to(policy, namespace) else {
            continue;
        };
        governed.namespaces += 1;
        let mut members = by_namespace.remove(namespace).unwrap_or_default();
        governed.bindings += members.len() as i64;
        members.sort_by(|a, b| claim_order(a).cmp(&claim_order(b)));
        let mut allowed = 0;
        for binding in members {
            let refused = !applied.check(&binding.spec).is_empty()
                || over_quota(std::slice::from_ref(&applied), allowed).is_some();
            if refused {
                governed.refused += 1;
            } else {
                allowed += 1;
            }
        }
    }
    governed
}

/// The status for a policy that governs `governed`.
fn next_status(
    policy: &PodIdentityPolicy,
    read: &NamespacePolicy,
    governed: &Governed,
    now: &Time,
) -> PodIdentityPolicyStatus {
    let (status, why, message) = if read.problems().is_empty() {
        (
            "True",
            "Applied",
            format!(
                "governs {} binding(s) in {} namespace(s), refusing {}",
                governed.bindings, governed.namespaces, governed.refused
            ),
        )
    } else {
        let problems: Vec<String> = read
            .problems()
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect();
        (
            "False",
            reason::INVALID_SPEC,
            format!(
                "cannot be applied, so every binding it selects is refused: {}",
                problems.join("; ")
            ),
        )
    };
    let generation = policy.metadata.generation;
    let previous = policy
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    let last_transition_time = match previous {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now.clone(),
    };
    PodIdentityPolicyStatus {
        observed_generation: generation,
        selected_namespaces: governed.namespaces,
        bindings_governed: governed.bindings,
        bindings_refused: governed.refused,
        conditions: vec![Condition {
            last_transition_time,
            message,
            observed_generation: generation,
            reason: word(why),
            status: word(status),
            type_: word(READY),
        }],
    }
}

/// What the policy reconciler reads from.
pub struct Sources {
    pub ctx: Arc<Context>,
    pub bindings: Store<Watched>,
}

/// Works out one policy's status and writes it when it changed.
pub async fn reconcile(
    policy: Arc<WatchedPolicy>,
    sources: Arc<Sources>,
) -> Result<Action, kube::Error> {
    let Ok(readable) = &policy.0 else {
        // A policy that cannot be decoded cannot be patched as one either; the bindings
        // it would select say why they are refused.
        return Ok(Action::await_change());
    };
    let read = NamespacePolicy::from_watched(&policy);
    let governed = survey(
        &read,
        &sources.ctx.policies.for_all(),
        &sources.bindings.state(),
    );
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = next_status(readable, &read, &governed, &now);
    if readable.status.as_ref() == Some(&status) {
        return Ok(Action::await_change());
    }
    let api: Api<PodIdentityPolicy> = Api::all(sources.ctx.client.clone());
    apply_status(&api, &readable.name_any(), &status).await?;
    Ok(Action::await_change())
}

pub fn error_policy(
    _policy: Arc<WatchedPolicy>,
    error: &kube::Error,
    _sources: Arc<Sources>,
) -> Action {
    tracing::warn!(%error, "PodIdentityPolicy status write failed");
    Action::requeue(Duration::from_secs(15))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use kube::core::error_boundary::DeserializeGuard;
    use podidentity_api::config::OperatorConfig;
    use podidentity_api::{PodIdentityBindingSpec, PodIdentityPolicySpec, Statement};
    use serde_json::json;

    fn policy(spec: serde_json::Value) -> PodIdentityPolicy {
        let spec: PodIdentityPolicySpec =
            serde_json::from_value(spec).unwrap_or_else(|err| panic!("{err}"));
        PodIdentityPolicy::new("teams", spec)
    }

    fn binding(namespace: &str, name: &str, second: i64, bucket: &str) -> Arc<Watched> {
        let mut spec = PodIdentityBindingSpec {
            service_account_name: name.into(),
            ..PodIdentityBindingSpec::default()
        };
        spec.permissions.statements.push(Statement {
            actions: vec!["s3:GetObject".into()],
            resources: vec![format!("arn:aws:s3:::{bucket}/*")],
            ..Statement::default()
        });
        let mut binding = PodIdentityBinding::new(name, spec);
        binding.metadata.namespace = Some(namespace.into());
        binding.metadata.creation_timestamp = Some(Time(
            Timestamp::from_second(second).unwrap_or_else(|err| panic!("{err}")),
        ));
        Arc::new(DeserializeGuard(Ok(binding)))
    }

    #[test]
    fn a_policy_counts_its_namespaces_bindings_and_refusals_with_its_quota() {
        let teams = policy(json!({
            "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]},
            "allowedResources": ["arn:aws:s3:::${namespace}.*"],
            "maxBindingsPerNamespace": 1,
        }));
        let read = NamespacePolicy::read(&teams);
        let labels: BTreeMap<String, BTreeMap<String, String>> = [
            ("shop", Some("shop")),
            ("blog", Some("blog")),
            ("kube-system", None),
        ]
        .into_iter()
        .map(|(ns, team)| {
            let labels = team
                .map(|t| BTreeMap::from([("team".to_string(), t.to_string())]))
                .unwrap_or_default();
            (ns.to_string(), labels)
        })
        .collect();
        let config = OperatorConfig {
            cluster_name: "prod".into(),
            ..OperatorConfig::default()
        };
        let guardrails =
            Guardrails::from_config(&config).with_policies(vec![read.clone()], labels.clone());
        let bindings = vec![
            binding("shop", "oldest", 1, "shop.data"),
            // Over the quota of one.
            binding("shop", "newer", 2, "shop.logs"),
            // Another team's bucket: refused; it holds no place in the quota.
            binding("blog", "reader", 1, "shop.data"),
            binding("blog", "own", 2, "blog.data"),
            binding("kube-system", "unselected", 1, "anything"),
        ];
        let governed = survey(&read, &guardrails, &bindings);
        assert_eq!(
            governed,
            Governed {
                namespaces: 2,
                bindings: 4,
                refused: 2
            }
        );
        let now = Time(Timestamp::from_second(100).unwrap_or_else(|err| panic!("{err}")));
        let status = next_status(&teams, &read, &governed, &now);
        assert_eq!(status.conditions[0].status, "True");
        assert!(status.conditions[0].message.contains("refusing 2"));
    }

    #[test]
    fn an_unusable_policy_is_not_ready_and_says_why() {
        let broken = policy(json!({
            "namespaceSelector": {},
            "allowedResources": ["arn:aws:s3:::${team}-*"],
        }));
        let read = NamespacePolicy::read(&broken);
        let now = Time(Timestamp::from_second(100).unwrap_or_else(|err| panic!("{err}")));
        let status = next_status(&broken, &read, &Governed::default(), &now);
        let ready = &status.conditions[0];
        assert_eq!((&*ready.status, &*ready.reason), ("False", "InvalidSpec"));
        assert!(
            ready.message.contains("spec.allowedResources[0]"),
            "{}",
            ready.message
        );
    }
}
