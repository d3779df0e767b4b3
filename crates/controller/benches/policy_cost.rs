//! What PodIdentityPolicies cost the controller: a pass reads every policy from the cache
//! and judges its binding by those selecting its namespace; a policy's status surveys
//! every binding. Prints figures at 20 policies, 1,000 namespaces, 10,000 bindings.
//!
//! `cargo bench -p podidentity-controller --bench policy_cost`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use kube::core::error_boundary::DeserializeGuard;
use podidentity_api::config::{AwsConfig, OperatorConfig};
use podidentity_api::{PodIdentityBinding, PodIdentityBindingSpec, PodIdentityPolicy};
use podidentity_controller::caches::Watched;
use podidentity_controller::policy::report::survey;
use podidentity_iam::namespace_policy::NamespacePolicy;
use podidentity_iam::{BindingRef, Guardrails, desired_state};
use serde_json::json;

const POLICIES: usize = 20;
const NAMESPACES: usize = 1_000;
const PER_NAMESPACE: usize = 10;

fn main() {
    let config = OperatorConfig {
        cluster_name: "prod".into(),
        aws: AwsConfig {
            account_id: Some("111122223333".into()),
            region: Some("eu-west-1".into()),
            ..AwsConfig::default()
        },
        ..OperatorConfig::default()
    };
    // One policy for every team, and one per tier (each selecting a twentieth).
    let policies: Vec<DeserializeGuard<PodIdentityPolicy>> = (0..POLICIES)
        .map(|i| {
            let spec = if i == 0 {
                json!({
                    "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]},
                    "allowedActions": ["s3:*", "sqs:*"],
                    "allowedResources": ["arn:${partition}:s3:::${namespace}.*", "arn:${partition}:sqs:${region}:${account}:${namespace}_*"],
                    "maxBindingsPerNamespace": PER_NAMESPACE,
                })
            } else {
                json!({
                    "namespaceSelector": {"matchLabels": {"tier": format!("tier-{i}")}},
                    "deniedActions": ["s3:DeleteBucket", "sqs:DeleteQueue"],
                })
            };
            let spec = serde_json::from_value(spec).unwrap_or_else(|err| panic!("{err}"));
            DeserializeGuard(Ok(PodIdentityPolicy::new(&format!("policy-{i}"), spec)))
        })
        .collect();
    let labels: BTreeMap<String, BTreeMap<String, String>> = (0..NAMESPACES)
        .map(|n| {
            let labels = BTreeMap::from([
                ("team".to_string(), format!("team-{n}")),
                ("tier".to_string(), format!("tier-{}", n % POLICIES)),
            ]);
            (format!("team-{n}"), labels)
        })
        .collect();
    let bindings: Vec<Arc<Watched>> = (0..NAMESPACES * PER_NAMESPACE)
        .map(|b| {
            let namespace = format!("team-{}", b / PER_NAMESPACE);
            let spec: PodIdentityBindingSpec = serde_json::from_value(json!({
                "serviceAccountName": format!("app-{b}"),
                "permissions": {"statements": [{"actions": ["s3:GetObject", "s3:PutObject"],
                    "resources": [format!("arn:aws:s3:::{namespace}.data/*")]}]},
            }))
            .unwrap_or_else(|err| panic!("{err}"));
            let mut binding = PodIdentityBinding::new(&format!("app-{b}"), spec);
            binding.metadata.namespace = Some(namespace);
            Arc::new(DeserializeGuard(Ok(binding)))
        })
        .collect();
    let base = Guardrails::from_config(&config);

    // A pass: read every policy, take the namespace's labels, judge and build.
    let started = Instant::now();
    let mut refused = 0;
    for watched in &bindings {
        let Ok(binding) = &watched.0 else { continue };
        let namespace = binding.metadata.namespace.as_deref().unwrap_or_default();
        let read: Vec<NamespacePolicy> =
            policies.iter().map(NamespacePolicy::from_watched).collect();
        let one = BTreeMap::from([(
            namespace.to_string(),
            labels.get(namespace).cloned().unwrap_or_default(),
        )]);
        let guardrails = base.clone().with_policies(read, one);
        let judged = desired_state(
            BindingRef::of(namespace, binding),
            &binding.spec,
            &config,
            &guardrails,
        );
        refused += usize::from(black_box(judged).is_err());
    }
    let per_pass = started.elapsed() / bindings.len() as u32;
    assert_eq!(refused, 0, "every binding reads its own team's bucket");

    // The same judgement with the configuration's guardrails alone (no policies).
    let started = Instant::now();
    for watched in &bindings {
        let Ok(binding) = &watched.0 else { continue };
        let namespace = binding.metadata.namespace.as_deref().unwrap_or_default();
        black_box(
            desired_state(
                BindingRef::of(namespace, binding),
                &binding.spec,
                &config,
                &base,
            )
            .is_ok(),
        );
    }
    let without = started.elapsed() / bindings.len() as u32;

    // One policy's status: its namespaces, their bindings, its refusals.
    let all = base.clone().with_policies(
        policies.iter().map(NamespacePolicy::from_watched).collect(),
        labels.clone(),
    );
    let teams = NamespacePolicy::from_watched(&policies[0]);
    let started = Instant::now();
    let governed = survey(&teams, &all, &bindings);
    let survey_time = started.elapsed();
    assert_eq!(governed.bindings as usize, bindings.len());

    println!(
        "policy_cost: {POLICIES} policies, {NAMESPACES} namespaces, {} bindings",
        bindings.len()
    );
    println!(
        "  judging one binding with the policies read from the cache: {per_pass:?} (without policies: {without:?})"
    );
    println!(
        "  one policy's status over every binding: {survey_time:?} ({} namespaces, {} governed, {} refused)",
        governed.namespaces, governed.bindings, governed.refused
    );
}
