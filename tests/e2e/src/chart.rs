//! The Helm chart, rendered by the real Helm library (through `render_chart.py` and the
//! test virtualenv): its RBAC and its ConfigMap are installed as is, and its Deployments'
//! arguments and the ConfigMap's file are what the operator's processes are started with.

use std::path::PathBuf;
use std::process::Stdio;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use crate::error::HarnessError;

/// The namespace the chart is installed into; the control plane's audit log records every
/// request of its ServiceAccounts (the operator's identities).
pub const OPERATOR_NAMESPACE: &str = "podidentity-system";

/// The release name, as the install docs use it; the chart then names its objects
/// `pod-identity-operator-controller`, `pod-identity-operator-webhook`, ...
pub const RELEASE: &str = "pod-identity-operator";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The virtualenv's Python (with helm-python-sdk), as scripts/with-moto makes it.
fn python() -> PathBuf {
    std::env::var_os("PODIDENTITY_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

pub struct Rendered {
    pub objects: Vec<Value>,
}

/// `helm template` of the chart with `values`.
pub async fn render(values: &Value) -> Result<Rendered, HarnessError> {
    let root = repo_root();
    let mut child = tokio::process::Command::new(python())
        .arg(root.join("tests/e2e/render_chart.py"))
        .arg(root.join("charts/pod-identity-operator"))
        .args([RELEASE, OPERATOR_NAMESPACE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            HarnessError::new(format!(
                "cannot run {} (scripts/with-moto makes the virtualenv): {e}",
                python().display()
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        stdin
            .write_all(values.to_string().as_bytes())
            .await
            .map_err(|e| HarnessError::new(format!("render: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| HarnessError::new(format!("render: {e}")))?;
    if !output.status.success() {
        return Err(HarnessError::new(format!(
            "the chart did not render: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let objects: Vec<Value> = serde_json::from_slice(&output.stdout)
        .map_err(|e| HarnessError::new(format!("render output: {e}")))?;
    Ok(Rendered { objects })
}

fn api_resource(kind: &str) -> Option<ApiResource> {
    let (group, version, plural) = match kind {
        "ServiceAccount" => ("", "v1", "serviceaccounts"),
        "ConfigMap" => ("", "v1", "configmaps"),
        "ClusterRole" => ("rbac.authorization.k8s.io", "v1", "clusterroles"),
        "ClusterRoleBinding" => ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"),
        "Role" => ("rbac.authorization.k8s.io", "v1", "roles"),
        "RoleBinding" => ("rbac.authorization.k8s.io", "v1", "rolebindings"),
        "MutatingWebhookConfiguration" => (
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
        ),
        "ValidatingWebhookConfiguration" => (
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
        ),
        "PodIdentityBinding" => ("podidentity.io", "v1alpha1", "podidentitybindings"),
        "Deployment" => ("apps", "v1", "deployments"),
        _ => return None,
    };
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        plural,
    ))
}

/// Applies one object (server-side, as the harness's admin).
pub async fn apply(client: &kube::Client, object: &Value) -> Result<(), HarnessError> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let resource = api_resource(kind)
        .ok_or_else(|| HarnessError::new(format!("the harness cannot apply a {kind}")))?;
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        name,
        &PatchParams::apply("podidentity-e2e").force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

impl Rendered {
    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    /// The RBAC objects and ServiceAccounts, exactly as rendered.
    pub fn rbac(&self) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|o| {
                matches!(
                    o["kind"].as_str(),
                    Some(
                        "ServiceAccount"
                            | "ClusterRole"
                            | "ClusterRoleBinding"
                            | "Role"
                            | "RoleBinding"
                    )
                )
            })
            .collect()
    }

    /// The container arguments of a Deployment (`controller` or `webhook`).
    pub fn args(&self, component: &str) -> Result<Vec<String>, HarnessError> {
        let name = format!("{RELEASE}-{component}");
        let deployment = self
            .find("Deployment", &name)
            .ok_or_else(|| HarnessError::new(format!("the chart rendered no Deployment {name}")))?;
        let args = deployment
            .pointer("/spec/template/spec/containers/0/args")
            .and_then(Value::as_array)
            .ok_or_else(|| HarnessError::new(format!("Deployment {name} has no args")))?;
        Ok(args
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect())
    }

    /// The chart's ConfigMap holding the operator configuration file.
    pub fn config_map(&self) -> Result<&Value, HarnessError> {
        let name = format!("{RELEASE}-config");
        self.find("ConfigMap", &name)
            .ok_or_else(|| HarnessError::new(format!("the chart rendered no ConfigMap {name}")))
    }

    /// The operator configuration file the chart mounts.
    pub fn config_yaml(&self) -> Result<String, HarnessError> {
        let name = format!("{RELEASE}-config");
        self.find("ConfigMap", &name)
            .and_then(|c| c.pointer("/data/config.yaml"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| HarnessError::new(format!("the chart rendered no ConfigMap {name}")))
    }

    /// The one object of a kind the chart renders once (a webhook configuration).
    pub fn only(&self, kind: &str) -> Option<&Value> {
        self.objects.iter().find(|o| o["kind"] == kind)
    }
}
