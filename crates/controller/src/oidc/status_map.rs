//! The OIDC keeper's report, in a ConfigMap beside the controller (`podidentity-oidc` in
//! its namespace): what the provider and the published documents are, two conditions
//! shaped like `metav1.Condition`, and the keeper's one piece of memory (when each key
//! the API server dropped was first found missing). A ConfigMap rather than a resource of
//! our own: there is one per cluster, nobody writes a spec for it, any namespace reader
//! can `kubectl get` it, and an uninstall removes it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use podidentity_api::FIELD_MANAGER;

pub const STATUS_CONFIG_MAP: &str = "podidentity-oidc";
pub const PROVIDER_READY: &str = "ProviderReady";
pub const KEYS_PUBLISHED: &str = "KeysPublished";
const CONDITIONS: &str = "conditions";
const RETIRED_KEYS: &str = "retiredKeys";

/// One condition's findings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Everything one pass found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Facts shown as they are (`issuer`, `providerArn`, `thumbprints`, ...).
    pub facts: BTreeMap<&'static str, String>,
    pub provider: Option<Finding>,
    /// `None` when nothing is published (no bucket configured).
    pub publication: Option<Finding>,
    pub retired_keys: BTreeMap<String, u64>,
}

/// A JSON value the last pass wrote under `key` (the default when there is none).
fn written<T: serde::de::DeserializeOwned + Default>(existing: Option<&ConfigMap>, key: &str) -> T {
    existing
        .and_then(|map| map.data.as_ref())
        .and_then(|data| data.get(key))
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// What the last pass remembered: key id → first found missing (seconds since the epoch).
pub fn retired_keys(existing: Option<&ConfigMap>) -> BTreeMap<String, u64> {
    written(existing, RETIRED_KEYS)
}

fn existing_conditions(existing: Option<&ConfigMap>) -> Vec<Condition> {
    written(existing, CONDITIONS)
}

/// The ConfigMap's data for `report`; a condition keeps its transition time while its
/// status stays.
pub fn data(report: &Report, existing: Option<&ConfigMap>, now: &Time) -> BTreeMap<String, String> {
    let previous = existing_conditions(existing);
    let conditions: Vec<Condition> = [
        (PROVIDER_READY, &report.provider),
        (KEYS_PUBLISHED, &report.publication),
    ]
    .into_iter()
    .filter_map(|(type_, finding)| finding.as_ref().map(|f| (type_, f)))
    .map(|(type_, finding)| {
        let status = if finding.ok { "True" } else { "False" };
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: finding.reason.into(),
            message: finding.message.clone(),
            observed_generation: None,
            last_transition_time,
        }
    })
    .collect();
    let mut data: BTreeMap<String, String> = report
        .facts
        .iter()
        .map(|(key, value)| (key.to_string(), value.clone()))
        .collect();
    data.insert(
        CONDITIONS.into(),
        serde_json::to_string_pretty(&conditions).unwrap_or_default(),
    );
    if !report.retired_keys.is_empty() {
        data.insert(
            RETIRED_KEYS.into(),
            serde_json::to_string(&report.retired_keys).unwrap_or_default(),
        );
    }
    data
}

/// Writes the data when it differs from what is there (an idle keeper writes nothing).
pub async fn write(
    maps: &Api<ConfigMap>,
    existing: Option<&ConfigMap>,
    data: BTreeMap<String, String>,
) -> Result<(), kube::Error> {
    if existing.and_then(|map| map.data.as_ref()) == Some(&data) {
        return Ok(());
    }
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": STATUS_CONFIG_MAP,
            "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER},
        },
        "data": data,
    });
    maps.patch(
        STATUS_CONFIG_MAP,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap_or_default())
    }

    fn report(ok: bool) -> Report {
        Report {
            facts: BTreeMap::from([("issuer", "https://oidc.example.com".to_string())]),
            provider: Some(Finding {
                ok,
                reason: if ok { "InSync" } else { "ForeignProvider" },
                message: "m".into(),
            }),
            publication: None,
            retired_keys: BTreeMap::from([("old".to_string(), 7)]),
        }
    }

    fn as_map(data: BTreeMap<String, String>) -> ConfigMap {
        ConfigMap {
            data: Some(data),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_stays() {
        let first = as_map(data(&report(true), None, &at(100)));
        let conditions = existing_conditions(Some(&first));
        assert_eq!(conditions.len(), 1, "no publication, no KeysPublished");
        assert_eq!(conditions[0].type_, PROVIDER_READY);
        assert_eq!(conditions[0].last_transition_time, at(100));
        let same = data(&report(true), Some(&first), &at(200));
        assert_eq!(Some(&same), first.data.as_ref(), "nothing to write");
        let flipped = as_map(data(&report(false), Some(&first), &at(300)));
        let conditions = existing_conditions(Some(&flipped));
        assert_eq!(conditions[0].status, "False");
        assert_eq!(conditions[0].last_transition_time, at(300));
        assert_eq!(
            retired_keys(Some(&flipped)),
            BTreeMap::from([("old".to_string(), 7)])
        );
    }
}
