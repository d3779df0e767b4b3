//! The operator configuration file's reader on any text: no panic; a configuration it
//! accepts (and finds no problem with) builds guardrails that judge a binding within the
//! bound, the same way twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podidentity_api::{PodIdentityBindingSpec, Statement};
use podidentity_iam::{BindingRef, Guardrails, desired_state};
use podidentity_plan::config_file;

fuzz_target!(|data: &[u8]| {
    let text = podidentity_fuzz::text(data);
    let Ok(config) = config_file::parse(&text) else {
        return;
    };
    if !config.problems().is_empty() {
        return;
    }
    let mut spec = PodIdentityBindingSpec {
        service_account_name: "orders".into(),
        ..PodIdentityBindingSpec::default()
    };
    spec.permissions.statements.push(Statement {
        actions: vec!["s3:GetObject".into(), "secretsmanager:Get*".into()],
        resources: vec!["arn:aws:s3:::shop.orders/*".into(), "arn:*".into()],
        ..Statement::default()
    });
    let guardrails = Guardrails::from_config(&config);
    let first = desired_state(
        BindingRef::new("shop", "orders"),
        &spec,
        &config,
        &guardrails,
    );
    let second = desired_state(
        BindingRef::new("shop", "orders"),
        &spec,
        &config,
        &guardrails,
    );
    assert_eq!(first, second);
});
