//! The calls that keep a cluster's OIDC provider and published keys in line, through the
//! real aws-sdk-iam and aws-sdk-s3 against moto's server (started by scripts/test).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use podidentity_aws::api::{Iam, IamRequest, NewOidcProvider};
use podidentity_aws::error::ErrorKind;
use podidentity_aws::s3::{ObjectKey, ObjectStore, SdkS3};
use podidentity_aws::sdk::{SdkIam, WriteGate};
use podidentity_aws::testing::{
    emulator_endpoint, emulator_s3_client, emulator_settings, unique_name,
};

const THUMBPRINT_A: &str = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280";
const THUMBPRINT_B: &str = "0123456789abcdef0123456789abcdef01234567";

/// moto 5.2 has no AddClientIDToOpenIDConnectProvider (it answers 500): that call is
/// covered by the controller's unit tests against the in-memory IAM.
#[tokio::test]
async fn a_provider_is_made_tagged_and_changed_in_place() {
    let Some(endpoint) = emulator_endpoint() else {
        return;
    };
    let sdk = SdkIam::connect(&emulator_settings(&endpoint)).await;
    let iam = Iam::new(&sdk);
    let host = format!("{}.oidc.example.com/id/ABC", unique_name("provider"));
    let arn = iam
        .create_oidc_provider(NewOidcProvider {
            url: format!("https://{host}"),
            client_ids: vec!["sts.amazonaws.com".into()],
            thumbprints: vec![THUMBPRINT_A.into()],
            tags: BTreeMap::from([("podidentity.io/cluster".into(), "test".into())]),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        arn,
        format!("arn:aws:iam::123456789012:oidc-provider/{host}")
    );
    let made = iam
        .oidc_provider(&arn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(made.url, host);
    assert_eq!(made.thumbprints, vec![THUMBPRINT_A.to_string()]);
    assert_eq!(
        made.tags.get("podidentity.io/cluster").map(String::as_str),
        Some("test")
    );

    // The same URL again is AlreadyExists: the caller reads it instead.
    let again = iam
        .create_oidc_provider(NewOidcProvider {
            url: format!("https://{host}"),
            client_ids: vec!["sts.amazonaws.com".into()],
            thumbprints: vec![THUMBPRINT_A.into()],
            tags: BTreeMap::new(),
        })
        .await
        .expect_err("a second provider for one URL");
    assert_eq!(again.kind, ErrorKind::AlreadyExists, "{again}");

    for request in [
        IamRequest::UpdateOpenIdConnectProviderThumbprint {
            arn: arn.clone(),
            thumbprints: vec![THUMBPRINT_B.into()],
        },
        IamRequest::TagOpenIdConnectProvider {
            arn: arn.clone(),
            tags: BTreeMap::from([("podidentity.io/issuer-managed".into(), "true".into())]),
        },
    ] {
        let operation = request.operation();
        assert!(request.is_write(), "{operation} is a write");
        iam.run(request)
            .await
            .unwrap_or_else(|e| panic!("{operation}: {e}"));
    }
    let changed = iam
        .oidc_provider(&arn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(changed.url, host, "changed in place, same provider");
    assert_eq!(changed.thumbprints, vec![THUMBPRINT_B.to_string()]);
    assert_eq!(changed.client_ids, vec!["sts.amazonaws.com".to_string()]);
    assert_eq!(changed.tags.len(), 2, "{:?}", changed.tags);
}

async fn bucket(endpoint: &str) -> String {
    let name = unique_name("keys").to_lowercase();
    emulator_s3_client(endpoint)
        .await
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    name
}

#[tokio::test]
async fn objects_are_read_written_and_missing_ones_are_none() {
    let Some(endpoint) = emulator_endpoint() else {
        return;
    };
    let bucket = bucket(&endpoint).await;
    let s3 = SdkS3::connect(&emulator_settings(&endpoint)).await;
    let key = ObjectKey {
        bucket: bucket.clone(),
        key: "id/ABC/.well-known/openid-configuration".into(),
    };
    assert_eq!(s3.get(&key).await.unwrap_or_else(|e| panic!("{e}")), None);
    let body = br#"{"issuer":"https://oidc.example.com/id/ABC"}"#.to_vec();
    s3.put(&key, body.clone(), "application/json")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s3.get(&key).await.unwrap_or_else(|e| panic!("{e}")),
        Some(body)
    );

    // A missing bucket is an error, not an empty answer.
    let nowhere = ObjectKey {
        bucket: unique_name("missing").to_lowercase(),
        key: "keys.json".into(),
    };
    let missing = s3.get(&nowhere).await.expect_err("no such bucket");
    assert_eq!(missing.kind, ErrorKind::NotFound, "{missing}");
}

#[tokio::test]
async fn a_closed_gate_stops_object_writes_and_lets_reads_through() {
    let Some(endpoint) = emulator_endpoint() else {
        return;
    };
    let bucket = bucket(&endpoint).await;
    let open = Arc::new(AtomicBool::new(false));
    let gate_open = open.clone();
    let mut settings = emulator_settings(&endpoint);
    settings.write_gate = Some(WriteGate(Arc::new(move || {
        gate_open.load(Ordering::SeqCst)
    })));
    let s3 = SdkS3::connect(&settings).await;
    let key = ObjectKey {
        bucket,
        key: "keys.json".into(),
    };
    let refused = s3
        .put(&key, b"{}".to_vec(), "application/json")
        .await
        .expect_err("fenced");
    assert_eq!(refused.kind, ErrorKind::Fenced, "{refused}");
    assert_eq!(s3.get(&key).await.unwrap_or_else(|e| panic!("{e}")), None);
    open.store(true, Ordering::SeqCst);
    s3.put(&key, b"{}".to_vec(), "application/json")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        s3.get(&key)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    );
}
