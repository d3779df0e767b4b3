//! What the issuer's bucket should hold, worked out from what the API server serves and
//! what is already published: the discovery document (the API server's, its `jwks_uri`
//! pointing into the bucket) and the key set (the API server's keys, then keys it no
//! longer serves, kept until tokens they signed have expired). Pure, so every case is a
//! unit test.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// Where the key set is published, beside the discovery document (ccoctl's name).
pub const KEY_SET_NAME: &str = "keys.json";
const DISCOVERY_PATH: &str = ".well-known/openid-configuration";

/// The two objects' bodies (at [`object_keys`]), and what the key set holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Publication {
    pub discovery: Vec<u8>,
    pub key_set: Vec<u8>,
    /// The key ids published, the API server's first.
    pub key_ids: Vec<String>,
    /// Keys published though the API server no longer serves them: key id → when they
    /// were first found missing (seconds since the epoch).
    pub retired: BTreeMap<String, u64>,
}

/// A document that is not what an issuer serves, or an issuer that is not ours.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DocumentError(pub String);

/// The object keys for an issuer: its URL path, then the well-known names.
pub fn object_keys(issuer: &str) -> (String, String) {
    let path = issuer
        .trim_start_matches("https://")
        .split_once('/')
        .map(|(_, path)| path.trim_matches('/'))
        .unwrap_or_default();
    let under = |name: &str| match path {
        "" => name.to_string(),
        path => format!("{path}/{name}"),
    };
    (under(DISCOVERY_PATH), under(KEY_SET_NAME))
}

/// A key's identity: its `kid`, or (no `kid`) the key itself.
fn key_id(key: &Value) -> String {
    key.get("kid")
        .and_then(Value::as_str)
        .map_or_else(|| key.to_string(), String::from)
}

fn keys_of(document: &[u8], what: &str) -> Result<Vec<Value>, DocumentError> {
    let parsed: Value = serde_json::from_slice(document)
        .map_err(|e| DocumentError(format!("{what} is not JSON: {e}")))?;
    parsed
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| DocumentError(format!("{what} has no \"keys\" list")))
}

/// What to publish for `issuer`. `published_key_set` is the bucket's current key set
/// (`None`: nothing there yet); `retired` the bookkeeping of the last pass.
pub fn plan(
    issuer: &str,
    served_discovery: &[u8],
    served_key_set: &[u8],
    published_key_set: Option<&[u8]>,
    retired: &BTreeMap<String, u64>,
    now: u64,
    retention: Duration,
) -> Result<Publication, DocumentError> {
    let issuer = issuer.trim_end_matches('/');
    let mut discovery: Value = serde_json::from_slice(served_discovery).map_err(|e| {
        DocumentError(format!(
            "the API server's discovery document is not JSON: {e}"
        ))
    })?;
    let served_issuer = discovery
        .get("issuer")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_end_matches('/');
    if served_issuer != issuer {
        return Err(DocumentError(format!(
            "the API server's issuer is {served_issuer:?}, not {issuer:?}: tokens name the \
             API server's, so publishing under another would verify none of them; make \
             oidc.issuerUrl and --service-account-issuer agree"
        )));
    }
    discovery["jwks_uri"] = Value::String(format!("{issuer}/{KEY_SET_NAME}"));

    let mut keys = keys_of(served_key_set, "the API server's key set")?;
    let mut key_ids: Vec<String> = keys.iter().map(key_id).collect();
    let mut still_retired = BTreeMap::new();
    // A key set in the bucket that is not one (edited by hand) is replaced, not merged.
    let published = published_key_set
        .and_then(|bytes| keys_of(bytes, "the published key set").ok())
        .unwrap_or_default();
    for key in published {
        let id = key_id(&key);
        if key_ids.contains(&id) {
            continue;
        }
        let since = retired.get(&id).copied().unwrap_or(now);
        if now.saturating_sub(since) < retention.as_secs() {
            still_retired.insert(id.clone(), since);
            key_ids.push(id);
            keys.push(key);
        }
    }
    let key_set = serde_json::json!({ "keys": keys });
    Ok(Publication {
        discovery: serde_json::to_vec(&discovery).map_err(|e| DocumentError(e.to_string()))?,
        key_set: serde_json::to_vec(&key_set).map_err(|e| DocumentError(e.to_string()))?,
        key_ids,
        retired: still_retired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://oidc.example.com/id/ABC";
    const DAY: Duration = Duration::from_secs(86_400);

    fn discovery(issuer: &str) -> Vec<u8> {
        serde_json::json!({
            "issuer": issuer,
            "jwks_uri": "https://10.0.0.1:6443/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
        .to_string()
        .into_bytes()
    }

    fn key_set(kids: &[&str]) -> Vec<u8> {
        let keys: Vec<Value> = kids
            .iter()
            .map(|kid| serde_json::json!({"use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256", "n": format!("n-{kid}"), "e": "AQAB"}))
            .collect();
        serde_json::json!({ "keys": keys }).to_string().into_bytes()
    }

    fn published(publication: &Publication) -> Value {
        serde_json::from_slice(&publication.key_set).unwrap_or_default()
    }

    #[test]
    fn the_discovery_document_is_the_api_servers_pointing_into_the_bucket() {
        let planned = plan(
            ISSUER,
            &discovery(ISSUER),
            &key_set(&["k1"]),
            None,
            &BTreeMap::new(),
            1000,
            DAY,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            object_keys(ISSUER),
            (
                "id/ABC/.well-known/openid-configuration".to_string(),
                "id/ABC/keys.json".to_string()
            )
        );
        let mut expected: Value = serde_json::from_slice(&discovery(ISSUER)).unwrap_or_default();
        expected["jwks_uri"] = Value::String(format!("{ISSUER}/keys.json"));
        let written: Value = serde_json::from_slice(&planned.discovery).unwrap_or_default();
        assert_eq!(written, expected);
        assert_eq!(
            published(&planned),
            serde_json::from_slice::<Value>(&key_set(&["k1"])).unwrap_or_default()
        );
        assert_eq!(planned.key_ids, vec!["k1"]);
        assert!(planned.retired.is_empty());
    }

    #[test]
    fn an_issuer_at_the_bucket_root_publishes_at_the_root() {
        assert_eq!(
            object_keys("https://my-bucket.s3.eu-west-1.amazonaws.com/"),
            (
                ".well-known/openid-configuration".to_string(),
                "keys.json".to_string()
            )
        );
    }

    #[test]
    fn a_key_the_api_server_dropped_stays_until_its_tokens_expire() {
        let bucket = key_set(&["old", "new"]);
        // First seen missing now: kept, and its retirement starts.
        let first = plan(
            ISSUER,
            &discovery(ISSUER),
            &key_set(&["new"]),
            Some(&bucket),
            &BTreeMap::new(),
            1000,
            DAY,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.key_ids, vec!["new", "old"]);
        assert_eq!(first.retired, BTreeMap::from([("old".to_string(), 1000)]));
        // A day less a second later: still there, same start.
        let later = plan(
            ISSUER,
            &discovery(ISSUER),
            &key_set(&["new"]),
            Some(&first.key_set),
            &first.retired,
            1000 + DAY.as_secs() - 1,
            DAY,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(later.key_set, first.key_set, "nothing to write");
        // A day later: gone.
        let gone = plan(
            ISSUER,
            &discovery(ISSUER),
            &key_set(&["new"]),
            Some(&later.key_set),
            &later.retired,
            1000 + DAY.as_secs(),
            DAY,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gone.key_ids, vec!["new"]);
        assert!(gone.retired.is_empty());
    }

    #[test]
    fn a_key_served_again_is_no_longer_retired() {
        let retired = BTreeMap::from([("k1".to_string(), 5)]);
        let planned = plan(
            ISSUER,
            &discovery(ISSUER),
            &key_set(&["k1", "k2"]),
            Some(&key_set(&["k1"])),
            &retired,
            1000,
            DAY,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(planned.key_ids, vec!["k1", "k2"]);
        assert!(planned.retired.is_empty());
    }

    #[test]
    fn another_issuer_or_garbage_is_refused_with_the_fix() {
        let err = plan(
            ISSUER,
            &discovery("https://elsewhere.example.com"),
            &key_set(&["k"]),
            None,
            &BTreeMap::new(),
            0,
            DAY,
        )
        .expect_err("another issuer");
        assert!(err.0.contains("--service-account-issuer"), "{err}");
        let err = plan(
            ISSUER,
            b"<html>",
            &key_set(&["k"]),
            None,
            &BTreeMap::new(),
            0,
            DAY,
        )
        .expect_err("garbage");
        assert!(err.0.contains("not JSON"), "{err}");
        let err = plan(
            ISSUER,
            &discovery(ISSUER),
            b"{}",
            None,
            &BTreeMap::new(),
            0,
            DAY,
        )
        .expect_err("no keys");
        assert!(err.0.contains("\"keys\""), "{err}");
    }

    #[test]
    fn a_hand_edited_bucket_key_set_is_replaced() {
        let planned = plan(
            ISSUER,
            &discovery(ISSUER),
            &key_set(&["k1"]),
            Some(b"not json"),
            &BTreeMap::new(),
            0,
            DAY,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(planned.key_ids, vec!["k1"]);
    }
}
