//! The documents the engine builds, put into a real IAM API (moto's server, started by
//! scripts/test) and read back the way IAM returns them (URL-encoded, re-serialized):
//! the semantic comparison must call them equal, and must see a change made outside.

use std::time::{SystemTime, UNIX_EPOCH};

use podidentity_api::config::OperatorConfig;
use podidentity_api::{PodIdentityBindingSpec, Statement};
use podidentity_iam::compare::text_equivalent;
use podidentity_iam::trust::trust_policy;
use podidentity_iam::{BindingRef, Guardrails, desired_state};

/// The emulator's URL, or None (with a line saying why) outside scripts/test.
fn iam_endpoint() -> Option<String> {
    match std::env::var("PODIDENTITY_TEST_IAM_ENDPOINT") {
        Ok(endpoint) => Some(endpoint),
        Err(_) if std::env::var("PODIDENTITY_TEST_REQUIRE_IAM").is_ok() => {
            panic!("PODIDENTITY_TEST_REQUIRE_IAM is set but PODIDENTITY_TEST_IAM_ENDPOINT is not")
        }
        Err(_) => {
            eprintln!("skipped: no IAM emulator; run scripts/test, which starts moto");
            None
        }
    }
}

/// One IAM query-protocol call; returns the response body, panicking on an error status.
fn iam_call(endpoint: &str, params: &[(&str, &str)]) -> String {
    let mut form: Vec<(&str, &str)> = vec![("Version", "2010-05-08")];
    form.extend_from_slice(params);
    let response = ureq::post(endpoint)
        // moto routes by the credential scope; it does not check the signature.
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
        )
        .config()
        .http_status_as_error(false)
        .build()
        .send_form(form);
    let mut response = response.unwrap_or_else(|err| panic!("IAM call {params:?} failed: {err}"));
    let status = response.status();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    assert!(
        status.is_success(),
        "IAM call {params:?} returned {status}: {body}"
    );
    body
}

/// The text of the first `<tag>` element, XML entities decoded.
fn xml_text(body: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = body
        .find(&open)
        .map(|i| i + open.len())
        .unwrap_or_else(|| panic!("no <{tag}> in {body}"));
    let end = body[start..]
        .find(&close)
        .map(|i| start + i)
        .unwrap_or_else(|| panic!("no </{tag}>"));
    body[start..end]
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

#[test]
fn documents_read_back_from_iam_compare_equal_and_outside_changes_are_seen() {
    let Some(endpoint) = iam_endpoint() else {
        return;
    };
    let config = OperatorConfig {
        cluster_name: unique("rt"),
        aws: podidentity_api::config::AwsConfig {
            account_id: Some("123456789012".into()),
            ..Default::default()
        },
        oidc: podidentity_api::config::OidcConfig {
            issuer_url: Some("https://oidc.example.com/id/ABC".into()),
            ..Default::default()
        },
        ..OperatorConfig::default()
    };
    let mut spec = PodIdentityBindingSpec {
        service_account_name: "orders".into(),
        ..PodIdentityBindingSpec::default()
    };
    spec.permissions.statements.push(Statement {
        sid: Some("Read".into()),
        actions: vec!["s3:GetObject".into(), "s3:ListBucket".into()],
        resources: vec![
            "arn:aws:s3:::shop-orders".into(),
            "arn:aws:s3:::shop-orders/*".into(),
        ],
        conditions: [(
            "StringEquals".to_string(),
            [(
                "aws:RequestedRegion".to_string(),
                vec!["eu-west-1".to_string()],
            )]
            .into(),
        )]
        .into(),
        ..Statement::default()
    });
    let desired = desired_state(
        BindingRef::new("shop", "orders-s3"),
        &spec,
        &config,
        &Guardrails::from_config(&config),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let role = &desired.role;
    let trust = role.trust_policy.minified();
    let inline = role
        .inline_policy
        .as_ref()
        .map(|p| p.minified())
        .unwrap_or_default();

    iam_call(
        &endpoint,
        &[
            ("Action", "CreateRole"),
            ("RoleName", &role.name),
            ("Path", &role.path),
            ("AssumeRolePolicyDocument", &trust),
        ],
    );
    iam_call(
        &endpoint,
        &[
            ("Action", "PutRolePolicy"),
            ("RoleName", &role.name),
            ("PolicyName", podidentity_iam::build::INLINE_POLICY_NAME),
            ("PolicyDocument", &inline),
        ],
    );

    let got_role = iam_call(
        &endpoint,
        &[("Action", "GetRole"), ("RoleName", &role.name)],
    );
    assert!(xml_text(&got_role, "Arn").ends_with(&format!(":role{}{}", role.path, role.name)));
    let trust_matches = || {
        let got_role = iam_call(
            &endpoint,
            &[("Action", "GetRole"), ("RoleName", &role.name)],
        );
        let stored = xml_text(&got_role, "AssumeRolePolicyDocument");
        text_equivalent(&stored, &role.trust_policy.to_value())
    };
    assert_eq!(
        trust_matches(),
        Ok(true),
        "the stored trust policy means what we built"
    );

    let got_policy = iam_call(
        &endpoint,
        &[
            ("Action", "GetRolePolicy"),
            ("RoleName", &role.name),
            ("PolicyName", podidentity_iam::build::INLINE_POLICY_NAME),
        ],
    );
    let stored_inline = xml_text(&got_policy, "PolicyDocument");
    let wanted_inline = role
        .inline_policy
        .as_ref()
        .map(|p| p.to_value())
        .unwrap_or_default();
    assert_eq!(
        text_equivalent(&stored_inline, &wanted_inline),
        Ok(true),
        "stored: {stored_inline}"
    );

    // Someone widens the trust to another namespace's ServiceAccount, outside the operator.
    let tampered = trust_policy(
        &config.all_provider_arns(),
        "other-team",
        "orders",
        "sts.amazonaws.com",
    );
    iam_call(
        &endpoint,
        &[
            ("Action", "UpdateAssumeRolePolicy"),
            ("RoleName", &role.name),
            ("PolicyDocument", &tampered.minified()),
        ],
    );
    assert_eq!(trust_matches(), Ok(false), "drift must be seen");

    iam_call(
        &endpoint,
        &[
            ("Action", "DeleteRolePolicy"),
            ("RoleName", &role.name),
            ("PolicyName", podidentity_iam::build::INLINE_POLICY_NAME),
        ],
    );
    iam_call(
        &endpoint,
        &[("Action", "DeleteRole"), ("RoleName", &role.name)],
    );
}
