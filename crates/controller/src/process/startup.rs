//! Checks made once at start-up: the CRDs are installed at this binary's schema revision
//! (Helm never upgrades `crds/`; a newer CRD's objects may hold fields this binary would
//! drop), the cluster's uid, the account id, and the OIDC issuer.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use podidentity_api::annotations::CRD_SCHEMA_REVISION;
use podidentity_api::config::OperatorConfig;
use podidentity_api::crd::SCHEMA_REVISION;
use podidentity_aws::api::{Iam, IamApi};

/// The CRDs the operator needs, by name.
pub const CRD_NAMES: [&str; 2] = [
    "podidentitybindings.podidentity.io",
    "podidentitypolicies.podidentity.io",
];

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(
        "the CRD {name} is not installed: apply the operator's CRDs with \
         `podidentity crd | kubectl apply --server-side -f -`"
    )]
    CrdMissing { name: &'static str },
    #[error(
        "the installed CRD {name} has schema revision {installed}, older than this \
         operator's {wanted} (Helm does not upgrade CRDs): update the CRDs with \
         `podidentity crd | kubectl apply --server-side -f -`"
    )]
    CrdTooOld {
        name: &'static str,
        installed: u32,
        wanted: u32,
    },
    #[error(
        "the installed CRD {name} has schema revision {installed}, newer than this \
         operator's {wanted}: its objects may hold fields this operator would drop; run the \
         operator release that matches the CRDs"
    )]
    CrdTooNew {
        name: &'static str,
        installed: u32,
        wanted: u32,
    },
    #[error("cannot read the CRD: {0}")]
    Kube(#[from] kube::Error),
    #[error(
        "cannot learn the AWS account from STS GetCallerIdentity (set aws.accountId to skip it): {0}"
    )]
    Account(#[from] podidentity_aws::AwsError),
    #[error(
        "cannot learn the OIDC issuer from the API server's /.well-known/openid-configuration (set oidc.issuerUrl): {0}"
    )]
    Issuer(String),
    #[error(
        "cannot read namespace kube-system, whose uid tags this cluster's roles so that another \
         cluster with the same clusterName never adopts them (the chart grants `get` on it): {0}"
    )]
    ClusterUid(kube::Error),
}

/// Refuses a missing CRD, or one older or newer than this binary.
pub async fn check_crds(client: &kube::Client) -> Result<u32, StartupError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in CRD_NAMES {
        let crd = api
            .get_opt(name)
            .await?
            .ok_or(StartupError::CrdMissing { name })?;
        let installed = crd
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CRD_SCHEMA_REVISION))
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0);
        let wanted = SCHEMA_REVISION;
        if installed < wanted {
            return Err(StartupError::CrdTooOld {
                name,
                installed,
                wanted,
            });
        }
        if installed > wanted {
            return Err(StartupError::CrdTooNew {
                name,
                installed,
                wanted,
            });
        }
    }
    Ok(SCHEMA_REVISION)
}

/// The cluster's identity: the uid of its kube-system namespace, made with the cluster and
/// never changed (a cluster name is only what someone typed).
pub async fn cluster_uid(client: &kube::Client) -> Result<String, StartupError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let kube_system = namespaces
        .get("kube-system")
        .await
        .map_err(StartupError::ClusterUid)?;
    Ok(kube_system.metadata.uid.unwrap_or_default())
}

/// Fills in the cluster's uid, the account id from STS and the issuer from the API server
/// where unset.
pub async fn complete_config(
    mut config: OperatorConfig,
    client: &kube::Client,
    iam: &dyn IamApi,
) -> Result<OperatorConfig, StartupError> {
    config.cluster_uid = Some(cluster_uid(client).await?).filter(|uid| !uid.is_empty());
    if config.aws.account_id.is_none() {
        config.aws.account_id = Some(Iam::new(iam).caller_account().await?);
    }
    if config.oidc.issuer_url.is_none() && config.oidc.provider_arn.is_none() {
        config.oidc.issuer_url = Some(api_server_issuer(client).await?);
    }
    Ok(config)
}

/// One of the API server's own documents (the discovery document, the key set), as text.
pub async fn api_server_document(client: &kube::Client, path: &str) -> Result<String, String> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client
        .request_text(request)
        .await
        .map_err(|e| format!("GET {path} from the API server: {e}"))
}

/// The issuer the API server signs ServiceAccount tokens as, from its own discovery
/// document.
pub async fn api_server_issuer(client: &kube::Client) -> Result<String, StartupError> {
    let text = api_server_document(client, "/.well-known/openid-configuration")
        .await
        .map_err(StartupError::Issuer)?;
    let discovery: serde_json::Value =
        serde_json::from_str(&text).map_err(|err| StartupError::Issuer(err.to_string()))?;
    discovery
        .get("issuer")
        .and_then(|i| i.as_str())
        .map(String::from)
        .ok_or_else(|| StartupError::Issuer("the document has no issuer".into()))
}
