//! The webhook's AdmissionReview decoder and pod mutation on any body: never a panic; a
//! patch that applies to the pod it was made for; a second pass over the patched pod that
//! changes nothing; variables the user set never overwritten.
#![no_main]

use std::collections::BTreeMap;

use base64::Engine;
use futures::future::BoxFuture;
use libfuzzer_sys::fuzz_target;
use podidentity_webhook::admission::review;
use podidentity_webhook::lookup::{IdentityLookup, LookupError};
use podidentity_webhook::mutation::{MutationConfig, mutate};
use podidentity_webhook::pod::AdmittedPod;
use serde_json::Value;

/// Every ServiceAccount has a role, with the annotations a user could set.
struct EveryoneHasARole;

fn annotations() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "eks.amazonaws.com/role-arn".to_string(),
            "arn:aws:iam::111122223333:role/orders".to_string(),
        ),
        (
            "eks.amazonaws.com/sts-regional-endpoints".into(),
            "true".into(),
        ),
        ("eks.amazonaws.com/token-expiration".into(), "3600".into()),
    ])
}

impl IdentityLookup for EveryoneHasARole {
    fn annotations<'a>(
        &'a self,
        _namespace: &'a str,
        _service_account: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, LookupError>> {
        Box::pin(async { Ok(Some(annotations())) })
    }

    fn is_ready(&self) -> bool {
        true
    }
}

/// (container list, index, name) → value, of every env variable with a plain value.
fn env_values(pod: &Value) -> BTreeMap<(String, usize, String), Value> {
    let mut found = BTreeMap::new();
    for list in ["initContainers", "containers"] {
        for (i, container) in pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            for env in container["env"].as_array().into_iter().flatten() {
                if let Some(name) = env["name"].as_str() {
                    found
                        .entry((list.to_string(), i, name.to_string()))
                        .or_insert_with(|| env["value"].clone());
                }
            }
        }
    }
    found
}

fuzz_target!(|data: &[u8]| {
    let config = MutationConfig {
        region: Some("eu-west-1".into()),
        ..MutationConfig::default()
    };
    let Ok((answer, _)) = futures::executor::block_on(review(data, &EveryoneHasARole, &config))
    else {
        return;
    };
    let Some(patch) = answer.response.patch.as_deref() else {
        return;
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("the patch is base64");
    let patch: json_patch::Patch =
        serde_json::from_slice(&bytes).expect("the patch is a JSON patch");
    // A patch came back, so the body was a review of a readable pod.
    let body: Value = serde_json::from_slice(data).expect("the review was JSON");
    let mut pod = body["request"]["object"].clone();
    let before = env_values(&pod);
    json_patch::patch(&mut pod, &patch).expect("the patch applies to the pod it was made for");
    for (key, value) in &before {
        assert_eq!(
            env_values(&pod).get(key),
            Some(value),
            "{key:?} was overwritten"
        );
    }
    let patched: AdmittedPod = serde_json::from_value(pod).expect("the patched pod reads");
    let again = mutate(&patched, Some(&annotations()), &config).expect("it still has a role");
    assert!(again.0.is_empty(), "a second pass changes more: {again:?}");
});
