//! The cluster the scenarios run on: the harness's own control plane (from
//! `KUBEBUILDER_ASSETS`), or an existing one (`PODIDENTITY_E2E_KUBECONFIG`), with the CRD
//! installed from `crds/`, moto, and the `podidentity` binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::audit::AuditLog;
use crate::chart::OPERATOR_NAMESPACE;
use crate::chart::repo_root;
use crate::control_plane::{ControlPlane, KubeconfigUser, kubeconfig};
use crate::error::HarnessError;
use crate::wait::until;

pub struct Cluster {
    /// The harness's admin client.
    pub client: kube::Client,
    pub admin_kubeconfig: PathBuf,
    pub url: String,
    pub ca_pem: String,
    /// Our own control plane; `None` on an existing cluster.
    pub plane: Option<ControlPlane>,
    pub audit: Option<AuditLog>,
    /// moto's URL (scripts/with-moto starts it).
    pub moto: String,
    pub binary: PathBuf,
    pub work_dir: PathBuf,
}

async fn config_from(path: &Path) -> Result<kube::Config, HarnessError> {
    let kubeconfig = Kubeconfig::read_from(path)
        .map_err(|e| HarnessError::new(format!("kubeconfig {}: {e}", path.display())))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| HarnessError::new(format!("kubeconfig {}: {e}", path.display())))
}

pub async fn client_from(path: &Path) -> Result<kube::Client, HarnessError> {
    Ok(kube::Client::try_from(config_from(path).await?)?)
}

/// A client that acts as `user` (the admin impersonating them): what that user may do is
/// what RBAC grants them, as for a real user.
pub async fn client_as(path: &Path, user: &str) -> Result<kube::Client, HarnessError> {
    let mut config = config_from(path).await?;
    config.auth_info.impersonate = Some(user.to_string());
    config.auth_info.impersonate_groups = Some(vec!["system:authenticated".to_string()]);
    Ok(kube::Client::try_from(config)?)
}

/// Applies every CRD in `crds/` (server-side) and waits until the API server serves them.
pub async fn install_crds(client: &kube::Client) -> Result<(), HarnessError> {
    let dir = repo_root().join("crds");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| HarnessError::new(format!("{}: {e}", dir.display())))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        install_crd_file(client, &path).await?;
    }
    Ok(())
}

/// Applies one CRD file (server-side) and waits until the API server serves it.
pub async fn install_crd_file(client: &kube::Client, path: &Path) -> Result<(), HarnessError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| HarnessError::new(format!("{}: {e}", path.display())))?;
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&text)
        .map_err(|e| HarnessError::new(format!("{}: {e}", path.display())))?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply("podidentity-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    until("the CRD to be established", Duration::from_secs(30), || {
        let api = api.clone();
        let name = name.clone();
        async move {
            let crd = api.get(&name).await.map_err(|e| e.to_string())?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            crate::wait::check(established, || "not established".into())
        }
    })
    .await;
    Ok(())
}

/// Where the cluster comes from, read from the environment.
pub enum Source {
    Assets(PathBuf),
    Kubeconfig(PathBuf),
    /// Neither is set: the scenarios are skipped (or fail, with PODIDENTITY_E2E_REQUIRE).
    None,
}

impl Source {
    pub fn from_env() -> Self {
        if let Some(path) = std::env::var_os("PODIDENTITY_E2E_KUBECONFIG") {
            return Self::Kubeconfig(path.into());
        }
        match assets_from_env() {
            Some(dir) => Self::Assets(dir),
            None => Self::None,
        }
    }
}

/// `KUBEBUILDER_ASSETS`, when it holds a kube-apiserver.
pub fn assets_from_env() -> Option<PathBuf> {
    std::env::var_os("KUBEBUILDER_ASSETS")
        .map(PathBuf::from)
        .filter(|dir| dir.join("kube-apiserver").is_file())
}

impl Cluster {
    pub async fn start(source: &Source) -> Result<Self, HarnessError> {
        #[allow(deprecated)] // ring: see Cargo.toml on rustls
        let _ = rustls::crypto::ring::default_provider().install_default();
        let moto = std::env::var("PODIDENTITY_TEST_IAM_ENDPOINT").map_err(|_| {
            HarnessError::new("the end-to-end tests need moto: run them through scripts/test")
        })?;
        let binary = std::env::var_os("PODIDENTITY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/debug/podidentity"));
        if !binary.is_file() {
            return Err(HarnessError::new(format!(
                "{} is missing: build it with `cargo build --workspace --bins` (scripts/test does)",
                binary.display()
            )));
        }
        let work_dir = std::env::temp_dir().join(format!("podidentity-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&work_dir)
            .map_err(|e| HarnessError::new(format!("{}: {e}", work_dir.display())))?;
        let cluster = match source {
            Source::Assets(assets) => {
                let plane = ControlPlane::start(assets, work_dir.join("control-plane")).await?;
                Self {
                    client: client_from(&plane.admin_kubeconfig).await?,
                    admin_kubeconfig: plane.admin_kubeconfig.clone(),
                    url: plane.url.clone(),
                    ca_pem: plane.ca_pem.clone(),
                    audit: Some(AuditLog {
                        path: plane.audit_log.clone(),
                    }),
                    plane: Some(plane),
                    moto,
                    binary,
                    work_dir,
                }
            }
            Source::Kubeconfig(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .map_err(|e| HarnessError::new(format!("{}: {e}", path.display())))?;
                let config =
                    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                        .await
                        .map_err(|e| HarnessError::new(format!("{}: {e}", path.display())))?;
                let ca_pem = config
                    .root_cert
                    .iter()
                    .flatten()
                    .map(|der| {
                        format!(
                            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                            BASE64.encode(der)
                        )
                    })
                    .collect();
                Self {
                    url: config
                        .cluster_url
                        .to_string()
                        .trim_end_matches('/')
                        .to_string(),
                    client: kube::Client::try_from(config)?,
                    admin_kubeconfig: path.clone(),
                    ca_pem,
                    plane: None,
                    audit: None,
                    moto,
                    binary,
                    work_dir,
                }
            }
            Source::None => return Err(HarnessError::new("no cluster to run on")),
        };
        cluster.install_crd().await?;
        cluster.ensure_namespace(OPERATOR_NAMESPACE).await?;
        Ok(cluster)
    }

    /// Applies every CRD in `crds/` (server-side) and waits until the API server serves
    /// them.
    pub async fn install_crd(&self) -> Result<(), HarnessError> {
        install_crds(&self.client).await
    }

    pub async fn install_crd_file(&self, path: &std::path::Path) -> Result<(), HarnessError> {
        install_crd_file(&self.client, path).await
    }

    pub async fn ensure_namespace(&self, name: &str) -> Result<(), HarnessError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        if api.get_opt(name).await?.is_none() {
            let namespace: Namespace = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name}
            }))
            .map_err(|e| HarnessError::new(e.to_string()))?;
            api.create(&PostParams::default(), &namespace).await?;
        }
        Ok(())
    }

    /// A kubeconfig that authenticates as a ServiceAccount (a TokenRequest token), so a
    /// process using it has exactly that account's RBAC.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        path: &Path,
    ) -> Result<(), HarnessError> {
        let token = self.token(namespace, name, &[], 4 * 3600).await?;
        let text = kubeconfig(&self.url, &self.ca_pem, KubeconfigUser::Token(&token));
        std::fs::write(path, text)
            .map_err(|e| HarnessError::new(format!("{}: {e}", path.display())))
    }

    /// A token of the ServiceAccount for `audiences` (none: the API server's own), as the
    /// admin requests it.
    pub async fn token(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[&str],
        seconds: i64,
    ) -> Result<String, HarnessError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audiences.iter().map(|a| a.to_string()).collect(),
                expiration_seconds: Some(seconds),
                bound_object_ref: None,
            },
            ..TokenRequest::default()
        };
        api.create_token_request(name, &PostParams::default(), &request)
            .await?
            .status
            .map(|s| s.token)
            .ok_or_else(|| HarnessError::new("TokenRequest returned no token"))
    }

    /// Runs kubectl as the harness's admin; returns (success, stdout, stderr).
    pub async fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        match tokio::process::Command::new("kubectl")
            .env("KUBECONFIG", &self.admin_kubeconfig)
            .args(args)
            .output()
            .await
        {
            Ok(out) => (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ),
            Err(err) => (false, String::new(), format!("cannot run kubectl: {err}")),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.plane.take();
        if std::env::var_os("PODIDENTITY_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.work_dir);
        }
    }
}
