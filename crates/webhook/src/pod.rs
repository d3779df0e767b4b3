//! The pod as the mutation reads it: only the fields that decide the patch. Reading an
//! admitted pod into these (everything else skipped unparsed) instead of the whole
//! `k8s_openapi` Pod is most of what an admission costs: managedFields, resources, probes
//! and the like are never looked at.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
pub struct AdmittedPod {
    #[serde(default)]
    pub metadata: PodMetadata,
    pub spec: Option<PodSpecView>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodMetadata {
    pub namespace: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecView {
    pub service_account_name: Option<String>,
    pub node_selector: Option<BTreeMap<String, String>>,
    pub init_containers: Option<Vec<ContainerView>>,
    #[serde(default)]
    pub containers: Vec<ContainerView>,
    pub volumes: Option<Vec<Named>>,
    pub security_context: Option<PodSecurityView>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    pub name: String,
    pub env: Option<Vec<Named>>,
    pub volume_mounts: Option<Vec<Named>>,
    pub security_context: Option<ContainerSecurityView>,
}

/// A list item known by its name (env variables, volumes, volume mounts).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Named {
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityView {
    pub fs_group: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub run_as_user: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSecurityView {
    pub run_as_non_root: Option<bool>,
    pub run_as_user: Option<i64>,
}

impl AdmittedPod {
    /// Reads the fields that matter from a whole pod (tests and tools holding a
    /// `k8s_openapi` Pod).
    pub fn from_pod(pod: &k8s_openapi::api::core::v1::Pod) -> Result<Self, serde_json::Error> {
        serde_json::to_value(pod).and_then(serde_json::from_value)
    }
}
