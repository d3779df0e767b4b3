//! The manifest reader and `plan`'s judge on any text: no panic, work bounded (libFuzzer's
//! -timeout and -rss_limit_mb), a plan that is consistent with itself, the same twice, and
//! agreeing with the engine's own verdict (`desired_state` under the guardrails built from
//! the same policies as the controller reads them, failing closed).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use podidentity_iam::namespace_policy::NamespacePolicy;
use podidentity_iam::{BindingRef, Guardrails, desired_state};
use podidentity_plan::manifests::{Document, read_text};
use podidentity_plan::{build_plan, render};

/// Refusals `plan` adds beside the engine's, for several bindings together (the controller
/// makes them too, from the objects it watches).
fn among_several(field: &str, reason: &str) -> bool {
    matches!(
        (field, reason),
        ("spec.serviceAccountName", "ServiceAccountConflict")
            | ("spec.role.name" | "spec.secretRef.name", "RoleConflict")
            | ("metadata.name", "GuardrailViolation" | "InvalidSpec")
    )
}

fuzz_target!(|data: &[u8]| {
    let text = podidentity_fuzz::text(data);
    let config = podidentity_fuzz::operator_config();
    let inputs = read_text("fuzz.yaml", &text);
    if !inputs.problems.is_empty() {
        return;
    }
    // The engine's view: policies read as the controller reads them, labels from the
    // Namespaces among the documents.
    let mut policies = Vec::new();
    let mut labels: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for sourced in &inputs.documents {
        match &sourced.document {
            Document::Policy(policy) => policies.push(NamespacePolicy::read(policy)),
            Document::Namespace { name, labels: l } => {
                labels.entry(name.clone()).or_default().extend(l.clone());
            }
            _ => {}
        }
    }
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    let guardrails = Guardrails::from_config(&config).with_policies(policies, labels);

    let plan_once = || {
        build_plan(
            inputs.documents.clone(),
            inputs.ignored_documents,
            "default",
            &config,
            BTreeMap::new(),
        )
    };
    let (plan, again) = (plan_once(), plan_once());
    let json = render::json(&plan);
    assert_eq!(json, render::json(&again), "plan is not deterministic");
    let _table = render::table(&plan);
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("plan JSON parses");
    assert_eq!(parsed["formatVersion"], 1);

    let mut refused = 0;
    for entry in &plan.bindings {
        assert_eq!(entry.valid, entry.problems.is_empty(), "{entry:?}");
        if entry.valid {
            assert!(entry.desired.is_some(), "a valid binding shows its role");
        } else {
            refused += 1;
            assert!(entry.desired.is_none(), "a refused binding shows no role");
        }
    }
    assert_eq!(plan.summary.refused, refused);
    assert_eq!(
        plan.summary.valid + plan.summary.refused,
        plan.summary.bindings
    );

    for sourced in &inputs.documents {
        let Document::Binding(binding) = &sourced.document else {
            continue;
        };
        let namespace = binding.metadata.namespace.as_deref().unwrap_or("default");
        let name = binding.metadata.name.as_deref().unwrap_or_default();
        let Some(entry) = plan.bindings.iter().find(|e| {
            e.kind == "PodIdentityBinding"
                && e.namespace == namespace
                && e.name == name
                && e.source == sourced.source
        }) else {
            panic!("{namespace}/{name} is missing from the plan");
        };
        let engine = desired_state(
            BindingRef::new(namespace, name),
            &binding.spec,
            &config,
            &guardrails,
        );
        if entry.valid {
            assert!(
                engine.is_ok(),
                "plan allows {namespace}/{name}, the engine refuses: {engine:?}"
            );
        } else if entry
            .problems
            .iter()
            .any(|p| !among_several(&p.field, &p.reason))
        {
            assert!(
                engine.is_err(),
                "plan refuses {namespace}/{name} for itself, the engine allows it: {:?}",
                entry.problems
            );
        }
    }
});
