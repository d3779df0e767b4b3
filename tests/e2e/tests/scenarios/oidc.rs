//! `oidc.manage` on the real API server, with moto's IAM and S3 behind the proxy: the
//! provider made with the issuer's URL, client id and thumbprint; someone else's provider
//! left alone; the API server's documents published to the bucket; and a signing key
//! rotation (the API server restarted with a second key, then without the first)
//! republished, tokens of both keys verifying against the published set with a JWT
//! library until the old key's retention ends. Last in the run: the API server it leaves
//! behind no longer trusts the first key.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use podidentity_aws::api::{Iam, IamRequest, OidcProvider};
use podidentity_e2e::Scenario;
use podidentity_e2e::chart::OPERATOR_NAMESPACE;
use podidentity_e2e::control_plane::KeyRotation;
use podidentity_e2e::issuer_host::IssuerHost;
use podidentity_e2e::operator::Replica;
use podidentity_e2e::scenario::ACCOUNT;
use podidentity_e2e::wait::until;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

const STATUS: &str = "podidentity-oidc";
const STRAY_THUMBPRINT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The status ConfigMap's data once `ready` holds for it (60 s at most).
async fn wait_status(
    s: &Scenario,
    what: &str,
    ready: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let maps: Api<ConfigMap> = Api::namespaced(s.client(), OPERATOR_NAMESPACE);
    until(what, Duration::from_secs(60), || async {
        let data = maps
            .get_opt(STATUS)
            .await
            .ok()
            .flatten()
            .and_then(|m| m.data)
            .unwrap_or_default();
        match ready(&data) {
            true => Ok(data),
            false => Err(format!("the status is still {data:#?}")),
        }
    })
    .await
}

/// A condition's status and reason from the ConfigMap.
fn condition(data: &BTreeMap<String, String>, type_: &str) -> (String, String) {
    let conditions: Vec<Value> = data
        .get("conditions")
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    conditions
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .unwrap_or_default()
}

fn is(data: &BTreeMap<String, String>, type_: &str, status: &str, reason: &str) -> bool {
    condition(data, type_) == (status.to_string(), reason.to_string())
}

async fn served(s: &Scenario, path: &str) -> Value {
    let request = http::Request::get(path).body(Vec::new()).expect("request");
    s.client()
        .request::<Value>(request)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

async fn object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Value {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("s3://{bucket}/{key}: {e:?}"));
    let bytes = out.body.collect().await.expect("object body").into_bytes();
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("s3://{bucket}/{key}: {e}"))
}

fn key_ids(key_set: &Value) -> Vec<String> {
    key_set["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str().map(String::from))
        .collect()
}

async fn provider(s: &Scenario, arn: &str) -> OidcProvider {
    Iam::new(&s.moto)
        .oidc_provider(arn)
        .await
        .unwrap_or_else(|e| panic!("{arn}: {e}"))
}

async fn token(s: &Scenario, namespace: &str, account: &str) -> String {
    s.cluster
        .token(namespace, account, &["sts.amazonaws.com"], 600)
        .await
        .expect("TokenRequest")
}

/// Verifies `token` as STS would: its `kid` in the published key set, its signature, its
/// issuer and audience. The claims, or why not.
fn verify(token: &str, published: &Value, issuer: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.clone().ok_or("no kid")?;
    let keys: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(published.clone()).map_err(|e| e.to_string())?;
    let jwk = keys
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} is not published"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&["sts.amazonaws.com"]);
    validation.set_issuer(&[issuer]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

fn sha1_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub async fn provider_and_keys_kept_through_a_key_rotation(s: Scenario) {
    let plane = s.cluster.plane.as_ref().expect("own control plane");
    let issuer = plane.issuer.clone();
    let host_path = issuer.trim_start_matches("https://").to_string();
    let provider_arn = format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{host_path}");
    let shared = podidentity_aws::sdk::sdk_config(&podidentity_aws::testing::emulator_settings(
        &s.cluster.moto,
    ))
    .await;
    // The doctor scenario made one as eksctl would: start with none.
    let _ = aws_sdk_iam::Client::new(&shared)
        .delete_open_id_connect_provider()
        .open_id_connect_provider_arn(&provider_arn)
        .send()
        .await;
    let s3 = podidentity_aws::testing::emulator_s3_client(&s.cluster.moto).await;
    let bucket = format!("{}-oidc-{}", s.tag, std::process::id());
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create the bucket");
    let issuer_host = IssuerHost::publish(&s.cluster)
        .await
        .expect("the issuer's host");
    // The chain's last certificate (the CA), not its first (the host's own).
    let chain: Vec<CertificateDer> =
        CertificateDer::pem_slice_iter(issuer_host.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("the issuer host's chain");
    assert_eq!(chain.len(), 2);
    let thumbprint = sha1_hex(&chain[1]);
    assert_ne!(thumbprint, sha1_hex(&chain[0]));
    let values = json!({"oidc": {
        "manage": true,
        "checkInterval": "1s",
        "connectTo": [issuer_host.connect_to()],
        "issuerCa": s.cluster.ca_pem,
        "publish": {"s3Bucket": bucket, "keyRetention": "25s"},
    }});
    let rendered = s.install(values).await;
    let replica = |name: &str| Replica::named(&format!("{}-{name}", s.tag));
    let mut controller = s.controller(&rendered, &replica("first")).await;
    controller.wait_ready(Duration::from_secs(60)).await;

    // Made: the issuer's URL, STS as client id, the thumbprint of the chain the issuer's
    // host serves, this cluster's tag.
    let data = wait_status(&s, "provider created and keys published", |d| {
        is(d, "ProviderReady", "True", "Created") && is(d, "KeysPublished", "True", "Published")
    })
    .await;
    let made = provider(&s, &provider_arn).await;
    assert_eq!(made.url, host_path);
    assert_eq!(made.client_ids, vec!["sts.amazonaws.com".to_string()]);
    assert_eq!(made.thumbprints, vec![thumbprint.clone()]);
    assert_eq!(
        made.tags.get("podidentity.io/cluster"),
        Some(&s.cluster_name)
    );
    assert_eq!(data.get("providerArn"), Some(&provider_arn));

    // Published: the API server's documents, the discovery document's key set URL in the
    // bucket beside it.
    let path = host_path
        .split_once('/')
        .map(|(_, p)| p)
        .unwrap_or_default();
    let discovery_key = format!("{path}/.well-known/openid-configuration");
    let key_set_key = format!("{path}/keys.json");
    let mut expected_discovery = served(&s, "/.well-known/openid-configuration").await;
    expected_discovery["jwks_uri"] = json!(format!("{issuer}/keys.json"));
    assert_eq!(
        object(&s3, &bucket, &discovery_key).await,
        expected_discovery
    );
    let served_keys = served(&s, "/openid/v1/jwks").await;
    assert_eq!(object(&s3, &bucket, &key_set_key).await, served_keys);
    let first_kid = key_ids(&served_keys);
    assert_eq!(first_kid.len(), 1, "{served_keys}");

    // Idle: once the next pass found everything in line, passes every second and writes
    // nothing to IAM, S3 or the ConfigMap.
    wait_status(&s, "everything in line", |d| {
        is(d, "ProviderReady", "True", "InSync") && is(d, "KeysPublished", "True", "InSync")
    })
    .await;
    let maps: Api<ConfigMap> = Api::namespaced(s.client(), OPERATOR_NAMESPACE);
    let version = |map: Option<ConfigMap>| map.and_then(|m| m.metadata.resource_version);
    let before = version(maps.get_opt(STATUS).await.expect("read the status"));
    let mark = s.iam.mark();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        version(maps.get_opt(STATUS).await.expect("read the status")),
        before
    );
    let idle = s.iam.calls_since(mark);
    assert!(
        idle.iter()
            .filter(|c| c.action == "GetOpenIDConnectProvider")
            .count()
            >= 2,
        "{idle:?}"
    );
    let writes: Vec<String> = s
        .iam
        .writes_since(mark)
        .iter()
        .map(|c| c.action.clone())
        .collect();
    assert!(writes.is_empty(), "an idle keeper wrote: {writes:?}");

    // Someone else's: eksctl's tag instead of ours, another thumbprint. Left as it is.
    // Our tags go first: a thumbprint changed while they are on is ours to put right (the
    // keeper passes every second, and once did between the two changes).
    aws_sdk_iam::Client::new(&shared)
        .untag_open_id_connect_provider()
        .open_id_connect_provider_arn(&provider_arn)
        .tag_keys("podidentity.io/cluster")
        .tag_keys("podidentity.io/cluster-uid")
        .send()
        .await
        .expect("untag the provider");
    s.change_iam(IamRequest::TagOpenIdConnectProvider {
        arn: provider_arn.clone(),
        tags: BTreeMap::from([("alpha.eksctl.io/cluster-name".into(), "legacy".into())]),
    })
    .await;
    s.change_iam(IamRequest::UpdateOpenIdConnectProviderThumbprint {
        arn: provider_arn.clone(),
        thumbprints: vec![STRAY_THUMBPRINT.into()],
    })
    .await;
    let mark = s.iam.mark();
    wait_status(&s, "a foreign provider reported", |d| {
        is(d, "ProviderReady", "False", "ForeignProvider")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let foreign = provider(&s, &provider_arn).await;
    assert_eq!(foreign.thumbprints, vec![STRAY_THUMBPRINT.to_string()]);
    let writes: Vec<String> = s
        .iam
        .writes_since(mark)
        .iter()
        .map(|c| c.action.clone())
        .collect();
    assert!(
        writes.is_empty(),
        "a foreign provider was changed: {writes:?}"
    );

    // Handed over (our tag on it): put right in place, the same provider.
    s.change_iam(IamRequest::TagOpenIdConnectProvider {
        arn: provider_arn.clone(),
        tags: BTreeMap::from([("podidentity.io/cluster".into(), s.cluster_name.clone())]),
    })
    .await;
    wait_status(&s, "the handed-over provider put right", |d| {
        is(d, "ProviderReady", "True", "Updated") || is(d, "ProviderReady", "True", "InSync")
    })
    .await;
    assert_eq!(
        provider(&s, &provider_arn).await.thumbprints,
        vec![thumbprint.clone()]
    );

    // A token signed by the first key, for later.
    let ns = s.namespace("oidc").await;
    s.create_service_account(&ns, "app", json!({})).await;
    let old_token = token(&s, &ns, "app").await;

    // Rotation, step one: the API server signs with a second key, both verify.
    plane
        .rotate_token_keys(KeyRotation::NewKeySigns, &s.client())
        .await
        .expect("restart the API server with a second key");
    let served_keys = served(&s, "/openid/v1/jwks").await;
    let both = key_ids(&served_keys);
    assert_eq!(both.len(), 2, "{served_keys}");
    wait_status(&s, "both keys published", |d| {
        d.get("keyIds")
            .is_some_and(|ids| ids.split(',').count() == 2)
    })
    .await;
    let published = object(&s3, &bucket, &key_set_key).await;
    assert_eq!(published, served_keys);
    let new_token = token(&s, &ns, "app").await;
    let new_kid = jsonwebtoken::decode_header(&new_token).expect("header").kid;
    assert!(
        new_kid.is_some() && new_kid.as_ref() != first_kid.first(),
        "signed by the new key"
    );
    let claims = verify(&new_token, &published, &issuer).expect("the new key's token verifies");
    assert_eq!(
        claims["sub"],
        json!(format!("system:serviceaccount:{ns}:app"))
    );
    verify(&old_token, &published, &issuer).expect("the old key's token verifies");

    // Step two: the first key dropped from the API server. The controller's own token was
    // signed by it, so a new replica starts (as a rollout after the rotation would).
    controller.process.kill();
    plane
        .rotate_token_keys(KeyRotation::OldKeyDropped, &s.client())
        .await
        .expect("restart the API server without the first key");
    assert_eq!(key_ids(&served(&s, "/openid/v1/jwks").await).len(), 1);
    let mut controller = s.controller(&rendered, &replica("second")).await;
    controller.wait_ready(Duration::from_secs(60)).await;
    let data = wait_status(&s, "the dropped key kept", |d| {
        d.get("retiredKeys")
            .is_some_and(|r| r.contains(&first_kid[0]))
    })
    .await;
    assert_eq!(
        data.get("keyIds").map(|ids| ids.split(',').count()),
        Some(2)
    );
    let published = object(&s3, &bucket, &key_set_key).await;
    verify(&old_token, &published, &issuer).expect("still published within the retention");

    // Its retention (25 s) over: gone, and its tokens no longer verify.
    let data = wait_status(&s, "the dropped key retired", |d| {
        d.get("keyIds")
            .is_some_and(|ids| ids.split(',').count() == 1)
    })
    .await;
    assert!(!data.contains_key("retiredKeys"), "{data:?}");
    let published = object(&s3, &bucket, &key_set_key).await;
    assert_eq!(published, served(&s, "/openid/v1/jwks").await);
    verify(&new_token, &published, &issuer).expect("the new key's token verifies");
    let refused = verify(&old_token, &published, &issuer).expect_err("the old key is gone");
    assert!(refused.contains("not published"), "{refused}");
    controller.process.kill();
}
