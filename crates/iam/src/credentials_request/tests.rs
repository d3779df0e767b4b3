use podidentity_api::config::OperatorConfig;
use podidentity_api::credentials_request::CredentialsRequest;

use super::*;
use crate::guardrails::Guardrails;

fn fixture(name: &str) -> CredentialsRequest {
    let path = format!(
        "{}/../../examples/openshift/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn openshift_config() -> OperatorConfig {
    let path = format!(
        "{}/../../examples/openshift/operator.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn plan(request: &CredentialsRequest, config: &OperatorConfig) -> Result<DesiredState, Error> {
    let namespace = request.metadata.namespace.as_deref().unwrap_or_default();
    let name = request.metadata.name.as_deref().unwrap_or_default();
    let rules = Guardrails::from_config(config).rules_for(&request.spec.secret_ref.namespace);
    desired_state(namespace, name, &request.spec, config, &rules).expect("an AWS request")
}

#[test]
fn the_image_registrys_request_becomes_one_role_and_a_ccoctl_secret() {
    let config = openshift_config();
    let desired = plan(&fixture("image-registry"), &config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        desired.role.name, "mycluster-openshift-image-registry.installer-cloud-credentials",
        "a binding's name: <prefix><namespace>.<secret>"
    );
    assert_eq!(
        desired.role.trust_policy.minified(),
        concat!(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","#,
            r#""Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/mycluster-oidc.s3.us-east-2.amazonaws.com"},"#,
            r#""Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"#,
            r#""mycluster-oidc.s3.us-east-2.amazonaws.com:sub":["system:serviceaccount:openshift-image-registry:cluster-image-registry-operator","system:serviceaccount:openshift-image-registry:registry"],"#,
            r#""mycluster-oidc.s3.us-east-2.amazonaws.com:aud":"openshift"}}}]}"#
        )
    );
    let inline = desired.role.inline_policy.as_ref().expect("the statements");
    let inline: serde_json::Value = serde_json::from_str(&inline.minified()).unwrap_or_default();
    assert_eq!(
        inline["Statement"][0]["Action"].as_array().map(Vec::len),
        Some(18)
    );
    assert_eq!(inline["Statement"][0]["Resource"], serde_json::json!(["*"]));
    let secret = desired.credentials_secret.expect("the Secret");
    assert_eq!(secret.name, "installer-cloud-credentials");
    assert_eq!(
        secret.credentials,
        format!(
            "[default]\nsts_regional_endpoints = regional\nrole_arn = {}\nweb_identity_token_file = /var/run/secrets/openshift/serviceaccount/token",
            desired.role.arn
        )
    );
    assert_eq!(
        desired
            .role
            .tags
            .get("podidentity.io/binding")
            .map(String::as_str),
        Some("CredentialsRequest/openshift-cloud-credential-operator/openshift-image-registry")
    );
    assert_eq!(
        desired
            .role
            .tags
            .get("podidentity.io/namespace")
            .map(String::as_str),
        Some("openshift-image-registry")
    );
}

#[test]
fn the_guardrails_judge_a_request_and_name_its_own_fields() {
    // Under the default guardrails the ingress operator's sts:AssumeRole is refused...
    let mut defaults = openshift_config();
    defaults.guardrails = OperatorConfig::default().guardrails;
    let refused = plan(&fixture("ingress"), &defaults).expect_err("sts:AssumeRole");
    let Error::Refused(violations) = refused else {
        panic!("refused");
    };
    assert!(
        violations.iter().any(
            |v| v.field == "spec.providerSpec.statementEntries[0].action[5]"
                && v.message.contains("sts:AssumeRole")
        ),
        "{violations:?}"
    );
    // ...and allowed where the platform dropped it from the denied actions.
    let desired = plan(&fixture("ingress"), &openshift_config()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        desired.role.name,
        "mycluster-openshift-ingress-operator.cloud-credentials"
    );

    // iam:PassRole stays out of reach, and kms:Decrypt on "*" too.
    let Err(Error::Refused(violations)) = plan(&fixture("machine-api"), &openshift_config()) else {
        panic!("the Machine API's request is refused");
    };
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    assert!(
        fields
            .iter()
            .any(|f| f.starts_with("spec.providerSpec.statementEntries[0].action")),
        "{fields:?}"
    );
    assert!(
        fields
            .iter()
            .any(|f| f.starts_with("spec.providerSpec.statementEntries[1]")),
        "{fields:?}"
    );
}

#[test]
fn a_boolean_condition_becomes_iams_string() {
    let mut request = fixture("machine-api");
    request.spec.provider_spec = Some(serde_json::json!({
        "kind": "AWSProviderSpec",
        "statementEntries": [{
            "effect": "Allow",
            "action": ["kms:CreateGrant"],
            "resource": "arn:aws:kms:us-east-2:111122223333:key/abc",
            "policyCondition": {"Bool": {"kms:GrantIsForAWSResource": true}},
        }],
    }));
    let desired = plan(&request, &openshift_config()).unwrap_or_else(|e| panic!("{e}"));
    let inline = desired.role.inline_policy.expect("a policy").minified();
    assert!(
        inline.contains(r#""Condition":{"Bool":{"kms:GrantIsForAWSResource":["true"]}}"#),
        "{inline}"
    );
}

#[test]
fn what_cannot_become_a_role_is_named() {
    let config = openshift_config();
    let mut request = fixture("image-registry");
    request.spec.service_account_names.clear();
    request.spec.secret_ref.namespace = "Not A Namespace".into();
    let mut aws = request.spec.provider_spec.clone().unwrap_or_default();
    aws["statementEntries"][0]["effect"] = serde_json::json!("Permit");
    request.spec.provider_spec = Some(aws);
    let Err(Error::Refused(violations)) = plan(&request, &config) else {
        panic!("refused");
    };
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "spec.secretRef.namespace",
            "spec.serviceAccountNames",
            "spec.providerSpec.statementEntries[0]"
        ]
    );
    assert!(
        violations[2].message.contains("write Allow or Deny"),
        "{violations:?}"
    );
}

#[test]
fn another_clouds_request_is_ignored() {
    let mut request = fixture("image-registry");
    request.spec.provider_spec =
        Some(serde_json::json!({"kind": "GCPProviderSpec", "predefinedRoles": []}));
    let config = openshift_config();
    let rules = Guardrails::from_config(&config).rules_for("openshift-image-registry");
    assert!(desired_state("ns", "gcp", &request.spec, &config, &rules).is_none());
}

/// A ccoctl Secret is a web identity login: a request stays IRSA when the operator's
/// default mechanism is Pod Identity.
#[test]
fn a_request_is_irsa_whatever_the_default_mechanism() {
    let mut config = openshift_config();
    config.identity.default_mechanism = podidentity_api::Mechanism::PodIdentity;
    let desired = plan(&fixture("image-registry"), &config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(desired.mechanism, podidentity_api::Mechanism::Irsa);
    assert!(desired.association.is_none());
    assert!(desired.role.trust_policy.minified().contains("Federated"));
}
