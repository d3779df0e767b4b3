//! IAM policy documents as the operator reads them (managed policies' versions, the short
//! form's inline policy): no panic, judged within the bound and the same twice, and the
//! semantic comparison drift uses is an equivalence.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use podidentity_api::annotations::SHORT_FORM_INLINE_POLICY;
use podidentity_iam::compare::{equivalent, normalize, parse_document};
use podidentity_iam::managed::ManagedPolicy;
use podidentity_iam::{BindingRef, Guardrails, desired_state, short_form};

fuzz_target!(|data: &[u8]| {
    let text = podidentity_fuzz::text(data);
    let config = podidentity_fuzz::operator_config();
    let rules = Guardrails::from_config(&config).rules_for("shop");
    let policy = ManagedPolicy {
        arn: "arn:aws:iam::aws:policy/Fuzzed",
        version_id: "v1",
        document: &text,
    };
    let verdict = rules.check_managed_policy("spec.permissions.managedPolicyArns[0]", policy);
    assert_eq!(
        verdict,
        rules.check_managed_policy("spec.permissions.managedPolicyArns[0]", policy)
    );
    if let Ok(document) = parse_document(&text) {
        let normal = normalize(&document);
        assert_eq!(normalize(&normal), normal, "normalising twice changes it");
        assert!(equivalent(&document, &document));
        assert!(equivalent(&document, &normal));
    }
    let annotations = BTreeMap::from([(SHORT_FORM_INLINE_POLICY.to_string(), text.clone())]);
    if let Some(Ok(spec)) = short_form::spec_from_annotations("app", &annotations) {
        let guardrails = Guardrails::from_config(&config);
        let first = desired_state(BindingRef::new("shop", "app"), &spec, &config, &guardrails);
        let second = desired_state(BindingRef::new("shop", "app"), &spec, &config, &guardrails);
        assert_eq!(first, second);
    }
});
