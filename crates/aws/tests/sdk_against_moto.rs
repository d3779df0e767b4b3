//! Every IamClient call through the real aws-sdk-iam against moto's IAM server (started
//! by scripts/test), and the error kinds IAM's answers map to.

use std::collections::BTreeMap;

use podidentity_aws::api::{Iam, IamRequest, NewRole};
use podidentity_aws::error::ErrorKind;
use podidentity_aws::sdk::{AwsSettings, SdkIam};
use podidentity_aws::testing::unique_name;
use podidentity_iam::compare::text_equivalent;

fn endpoint() -> Option<String> {
    podidentity_aws::testing::emulator_endpoint()
}

fn settings(endpoint: String) -> AwsSettings {
    podidentity_aws::testing::emulator_settings(&endpoint)
}

async fn moto(endpoint: String) -> SdkIam {
    SdkIam::connect(&settings(endpoint)).await
}

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/oidc.example.com/id/ABC"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.example.com/id/ABC:sub":"system:serviceaccount:shop:orders","oidc.example.com/id/ABC:aud":"sts.amazonaws.com"}}}]}"#;
const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::b/*"]}]}"#;
const BOUNDARY: &str = "arn:aws:iam::aws:policy/PowerUserAccess";
const MANAGED: &str = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";

fn new_role(name: &str) -> NewRole {
    NewRole {
        name: name.into(),
        path: "/podidentity/test/".into(),
        trust_policy: TRUST.into(),
        description: "made by a test".into(),
        max_session_duration_seconds: 7200,
        permissions_boundary_arn: Some(BOUNDARY.into()),
        tags: BTreeMap::from([
            ("podidentity.io/cluster".into(), "test".into()),
            ("team".into(), "shop".into()),
        ]),
    }
}

#[tokio::test]
async fn a_role_lives_its_whole_life_through_the_adapter() {
    let Some(endpoint) = endpoint() else { return };
    let sdk = moto(endpoint).await;
    let iam = Iam::new(&sdk);
    let name = unique_name("life");

    let created = iam
        .create_role(new_role(&name))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        created
            .arn
            .ends_with(&format!(":role/podidentity/test/{name}")),
        "{}",
        created.arn
    );
    assert!(!created.id.is_empty());

    let got = iam
        .get_role(&name)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(got.id, created.id);
    assert_eq!(got.path, "/podidentity/test/");
    assert_eq!(got.description, "made by a test");
    assert_eq!(got.max_session_duration_seconds, 7200);
    assert_eq!(got.permissions_boundary_arn.as_deref(), Some(BOUNDARY));
    assert_eq!(got.tags.get("team").map(String::as_str), Some("shop"));
    let wanted: serde_json::Value = serde_json::from_str(TRUST).unwrap_or_default();
    assert_eq!(
        text_equivalent(&got.trust_policy, &wanted),
        Ok(true),
        "decoded trust policy: {}",
        got.trust_policy
    );

    let changed_trust = TRUST.replace("shop:orders", "shop:billing");
    iam.run(IamRequest::UpdateAssumeRolePolicy {
        name: name.clone(),
        document: changed_trust.clone(),
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    iam.run(IamRequest::UpdateRole {
        name: name.clone(),
        description: "changed".into(),
        max_session_duration_seconds: 3600,
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    iam.run(IamRequest::DeleteRolePermissionsBoundary { name: name.clone() })
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    iam.run(IamRequest::TagRole {
        name: name.clone(),
        tags: BTreeMap::from([("env".into(), "prod".into())]),
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    iam.run(IamRequest::UntagRole {
        name: name.clone(),
        keys: vec!["team".into()],
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    let got = iam
        .get_role(&name)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(got.id, created.id, "changed in place");
    assert!(got.trust_policy.contains("shop:billing"));
    assert_eq!(
        (got.description.as_str(), got.max_session_duration_seconds),
        ("changed", 3600)
    );
    assert_eq!(got.permissions_boundary_arn, None);
    assert_eq!(got.tags.get("env").map(String::as_str), Some("prod"));
    assert!(!got.tags.contains_key("team"));
    iam.run(IamRequest::PutRolePermissionsBoundary {
        name: name.clone(),
        arn: BOUNDARY.into(),
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        iam.get_role(&name)
            .await
            .ok()
            .and_then(|r| r.permissions_boundary_arn)
            .as_deref(),
        Some(BOUNDARY)
    );

    iam.run(IamRequest::PutRolePolicy {
        name: name.clone(),
        policy_name: "podidentity-permissions".into(),
        document: POLICY.into(),
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        iam.list_role_policies(&name).await.ok(),
        Some(vec!["podidentity-permissions".to_string()])
    );
    let stored = iam
        .get_role_policy(&name, "podidentity-permissions")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let wanted: serde_json::Value = serde_json::from_str(POLICY).unwrap_or_default();
    assert_eq!(text_equivalent(&stored, &wanted), Ok(true), "{stored}");

    iam.run(IamRequest::AttachRolePolicy {
        name: name.clone(),
        arn: MANAGED.into(),
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        iam.list_attached_role_policies(&name).await.ok(),
        Some(vec![MANAGED.to_string()])
    );

    // Deleting a role that still has policies is a conflict, and changes nothing.
    let refused = iam
        .run(IamRequest::DeleteRole { name: name.clone() })
        .await
        .err()
        .map(|e| e.kind);
    assert_eq!(refused, Some(ErrorKind::Conflict));
    assert!(iam.get_role(&name).await.is_ok());

    iam.run(IamRequest::DetachRolePolicy {
        name: name.clone(),
        arn: MANAGED.into(),
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    iam.run(IamRequest::DeleteRolePolicy {
        name: name.clone(),
        policy_name: "podidentity-permissions".into(),
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        iam.list_attached_role_policies(&name).await.ok(),
        Some(vec![])
    );
    assert_eq!(iam.list_role_policies(&name).await.ok(), Some(vec![]));
    iam.run(IamRequest::DeleteRole { name: name.clone() })
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        iam.get_role(&name).await.err().map(|e| e.kind),
        Some(ErrorKind::NotFound)
    );
}

#[tokio::test]
async fn instance_profiles_are_listed_and_left() {
    let Some(endpoint) = endpoint() else { return };
    let sdk = moto(endpoint.clone()).await;
    let iam = Iam::new(&sdk);
    let name = unique_name("profiled");
    iam.create_role(new_role(&name))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    // Someone else put the role into an instance profile (the adapter never creates one).
    let raw =
        aws_sdk_iam::Client::new(&podidentity_aws::sdk::sdk_config(&settings(endpoint)).await);
    let profile = unique_name("profile");
    raw.create_instance_profile()
        .instance_profile_name(&profile)
        .send()
        .await
        .unwrap_or_else(|err| panic!("{err:?}"));
    raw.add_role_to_instance_profile()
        .instance_profile_name(&profile)
        .role_name(&name)
        .send()
        .await
        .unwrap_or_else(|err| panic!("{err:?}"));

    assert_eq!(
        iam.list_instance_profiles_for_role(&name).await.ok(),
        Some(vec![profile.clone()])
    );
    iam.run(IamRequest::RemoveRoleFromInstanceProfile {
        name: name.clone(),
        instance_profile: profile,
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        iam.list_instance_profiles_for_role(&name).await.ok(),
        Some(vec![])
    );
    iam.run(IamRequest::DeleteRole { name })
        .await
        .unwrap_or_else(|err| panic!("{err}"));
}

#[tokio::test]
async fn iam_answers_map_to_error_kinds() {
    let Some(endpoint) = endpoint() else { return };
    let sdk = moto(endpoint).await;
    let iam = Iam::new(&sdk);
    let name = unique_name("errors");
    let missing = iam.get_role(&name).await.err();
    assert_eq!(missing.as_ref().map(|e| e.kind), Some(ErrorKind::NotFound));
    assert_eq!(
        missing.as_ref().and_then(|e| e.code.as_deref()),
        Some("NoSuchEntity")
    );

    iam.create_role(new_role(&name))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let twice = iam.create_role(new_role(&name)).await.err().map(|e| e.kind);
    assert_eq!(twice, Some(ErrorKind::AlreadyExists));
    iam.run(IamRequest::DeleteRole { name })
        .await
        .unwrap_or_else(|err| panic!("{err}"));
}

#[tokio::test]
async fn authorization_details_come_in_pages_with_everything_the_sweep_needs() {
    let Some(endpoint) = endpoint() else { return };
    let sdk = moto(endpoint).await;
    let iam = Iam::new(&sdk);
    let prefix = unique_name("page");
    let names: Vec<String> = (0..5).map(|i| format!("{prefix}-{i}")).collect();
    for name in &names {
        iam.create_role(new_role(name))
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        iam.run(IamRequest::PutRolePolicy {
            name: name.clone(),
            policy_name: "podidentity-permissions".into(),
            document: POLICY.into(),
        })
        .await
        .unwrap_or_else(|err| panic!("{err}"));
        iam.run(IamRequest::AttachRolePolicy {
            name: name.clone(),
            arn: MANAGED.into(),
        })
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    }
    let mut seen = BTreeMap::new();
    let mut marker = None;
    let mut pages = 0;
    loop {
        let page = iam
            .authorization_page(marker, 2)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        pages += 1;
        for detail in page.roles {
            seen.insert(detail.role.name.clone(), detail);
        }
        marker = page.next_marker;
        if marker.is_none() {
            break;
        }
    }
    // moto answers in one page whatever MaxItems says; the marker loop above is what a
    // real account's pages go through (the sweep's own tests page through a fake).
    assert!(pages >= 1);
    for name in &names {
        let detail = seen
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from the sweep"));
        assert!(
            detail
                .role
                .trust_policy
                .contains("system:serviceaccount:shop:orders")
        );
        assert_eq!(detail.attached_policy_arns, [MANAGED]);
        assert!(
            detail
                .inline_policies
                .get("podidentity-permissions")
                .is_some_and(|d| d.contains("s3:GetObject"))
        );
        assert_eq!(
            detail.role.permissions_boundary_arn.as_deref(),
            Some(BOUNDARY)
        );
        assert_eq!(
            detail.role.tags.get("team").map(String::as_str),
            Some("shop")
        );
    }
    for name in &names {
        iam.run(IamRequest::DetachRolePolicy {
            name: name.clone(),
            arn: MANAGED.into(),
        })
        .await
        .ok();
        iam.run(IamRequest::DeleteRolePolicy {
            name: name.clone(),
            policy_name: "podidentity-permissions".into(),
        })
        .await
        .ok();
        iam.run(IamRequest::DeleteRole { name: name.clone() })
            .await
            .ok();
    }
}

#[tokio::test]
async fn the_account_comes_from_sts() {
    let Some(endpoint) = endpoint() else { return };
    let sdk = moto(endpoint).await;
    assert_eq!(
        Iam::new(&sdk).caller_account().await.ok().as_deref(),
        Some("123456789012")
    );
}

#[tokio::test]
async fn a_closed_write_gate_stops_writes_before_they_are_sent_and_lets_reads_through() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use podidentity_aws::sdk::WriteGate;

    let Some(endpoint) = endpoint() else { return };
    let open = Arc::new(AtomicBool::new(true));
    let gate = {
        let open = open.clone();
        WriteGate(Arc::new(move || open.load(Ordering::SeqCst)))
    };
    let sdk = SdkIam::connect(&AwsSettings {
        write_gate: Some(gate),
        ..settings(endpoint.clone())
    })
    .await;
    let iam = Iam::new(&sdk);
    let name = unique_name("gate");
    iam.create_role(new_role(&name))
        .await
        .unwrap_or_else(|err| panic!("an open gate lets writes through: {err}"));

    open.store(false, Ordering::SeqCst);
    let fenced = iam
        .run(IamRequest::PutRolePolicy {
            name: name.clone(),
            policy_name: "p".into(),
            document: POLICY.into(),
        })
        .await;
    assert!(
        fenced
            .as_ref()
            .is_err_and(|e| e.kind == ErrorKind::Fenced && e.message.contains("fenced")),
        "{fenced:?}"
    );
    let unfenced = moto(endpoint).await;
    assert!(
        Iam::new(&unfenced)
            .list_role_policies(&name)
            .await
            .unwrap_or_else(|err| panic!("{err}"))
            .is_empty(),
        "nothing reached IAM"
    );
    assert!(
        iam.get_role(&name).await.is_ok(),
        "reads pass a closed gate"
    );
}

/// A process stopped between the SDK's last check and the socket (SIGSTOP, a long pause)
/// must not send the write when it resumes: the gate closes after the interceptor's check,
/// and the write connection refuses to put the request on the wire.
#[tokio::test]
async fn a_gate_that_closes_after_the_last_check_stops_the_write_at_the_socket() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use podidentity_aws::sdk::WriteGate;

    let Some(endpoint) = endpoint() else { return };
    // How many more times the gate answers "open".
    let opens_left = Arc::new(AtomicUsize::new(usize::MAX));
    let gate = {
        let opens_left = opens_left.clone();
        WriteGate(Arc::new(move || {
            opens_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        }))
    };
    let sdk = SdkIam::connect(&AwsSettings {
        write_gate: Some(gate),
        ..settings(endpoint.clone())
    })
    .await;
    let iam = Iam::new(&sdk);
    let name = unique_name("socketgate");
    iam.create_role(new_role(&name))
        .await
        .unwrap_or_else(|err| panic!("an open gate lets writes through: {err}"));

    // Open for the interceptor's check only: closed at the socket.
    opens_left.store(1, Ordering::SeqCst);
    let fenced = iam
        .run(IamRequest::PutRolePolicy {
            name: name.clone(),
            policy_name: "p".into(),
            document: POLICY.into(),
        })
        .await;
    assert_eq!(
        fenced.as_ref().err().map(|e| e.kind),
        Some(ErrorKind::Fenced),
        "{fenced:?}"
    );
    let unfenced = moto(endpoint).await;
    assert!(
        Iam::new(&unfenced)
            .list_role_policies(&name)
            .await
            .unwrap_or_else(|err| panic!("{err}"))
            .is_empty(),
        "the write reached IAM"
    );
}

#[tokio::test]
async fn a_token_is_exchanged_and_an_oidc_provider_read_without_keeping_credentials() {
    let Some(endpoint) = endpoint() else { return };
    let sdk = moto(endpoint.clone()).await;
    let iam = Iam::new(&sdk);
    let name = unique_name("assume");
    let role = iam
        .create_role(new_role(&name))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // moto's STS accepts any token: what is checked here is the call and the answer's
    // shape, with nothing of the credentials in it.
    let assumed = iam
        .assume_role_with_web_identity(
            &role.arn,
            "doctor",
            podidentity_aws::WebIdentityToken("header.payload.signature".into()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        assumed.assumed_role_arn.contains(&name) && assumed.assumed_role_arn.contains("doctor"),
        "{assumed:?}"
    );
    let shown = format!(
        "{:?}",
        IamRequest::AssumeRoleWithWebIdentity {
            role_arn: role.arn.clone(),
            session_name: "doctor".into(),
            token: podidentity_aws::WebIdentityToken("secret.token.value".into()),
        }
    );
    assert!(!shown.contains("secret.token.value"), "{shown}");

    // A provider made by hand, read back; a missing one is NotFound.
    let shared = podidentity_aws::sdk::sdk_config(&settings(endpoint)).await;
    let raw = aws_sdk_iam::Client::new(&shared);
    let host = format!("oidc.{name}.example.com/id/ABC");
    let made = raw
        .create_open_id_connect_provider()
        .url(format!("https://{host}"))
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let arn = made.open_id_connect_provider_arn().unwrap_or_default();
    let provider = iam
        .oidc_provider(arn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(provider.url, host);
    assert_eq!(provider.client_ids, vec!["sts.amazonaws.com".to_string()]);
    assert_eq!(provider.thumbprints.len(), 1);
    let missing = iam
        .oidc_provider("arn:aws:iam::123456789012:oidc-provider/oidc.nowhere.example.com")
        .await
        .expect_err("no such provider");
    assert_eq!(missing.kind, ErrorKind::NotFound, "{missing}");
}
