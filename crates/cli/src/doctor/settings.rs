//! The operator's configuration as doctor judges by it: the one the operator runs with.
//! The base document is `--config FILE` when given, else the chart's ConfigMap in the
//! cluster (found with `--namespace` and `--release`); over it go the `PODIDENTITY_*`
//! environment and the flags, as for the controller: defaults < document < environment <
//! flags. Doctor's own `--issuer-ca` and `--connect-to` go over `oidc.issuerCa` and
//! `oidc.connectTo` the same way.

use base64::Engine;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use podidentity_api::config::{ConnectTo, OperatorConfig};
use podidentity_controller::oidc::fetch::Fetcher;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config_load::ConfigArgs;

/// The chart's name, as its `app.kubernetes.io/name` label gives it.
pub const CHART: &str = "pod-identity-operator";
/// The key of the chart's ConfigMap holding the configuration file.
pub const CONFIG_KEY: &str = "config.yaml";

/// Why the configuration could not be had.
#[derive(Debug, PartialEq, Eq)]
pub enum SettingsError {
    /// Wrong or missing input: what to pass instead (exit 2).
    BadInput(String),
    /// The API server did not answer (exit 1, as any unreachable link).
    Unreachable(String),
}

/// The chart's `pio.fullname`: the release name when it contains the chart's name, else
/// `<release>-pod-identity-operator`; cut to 50 characters, without a trailing `-`.
pub fn chart_fullname(release: &str) -> String {
    let full = if release.contains(CHART) {
        release.to_string()
    } else {
        format!("{release}-{CHART}")
    };
    full.chars()
        .take(50)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

/// The name of the chart's ConfigMap for `release`.
pub fn config_map_name(release: &str) -> String {
    format!("{}-config", chart_fullname(release))
}

/// The configuration file's text and where it was read.
#[derive(Debug)]
pub struct Located {
    pub origin: String,
    pub text: String,
}

fn kube_error(what: String, err: kube::Error, remedy: &str) -> SettingsError {
    match err {
        kube::Error::Api(status) => SettingsError::BadInput(format!(
            "{what}: {} ({}): {remedy}",
            status.message, status.code
        )),
        other => {
            SettingsError::Unreachable(format!("{what}: cannot reach the Kubernetes API: {other}"))
        }
    }
}

fn text_of(map: &ConfigMap, namespace: &str) -> Result<Located, SettingsError> {
    let name = map.metadata.name.clone().unwrap_or_default();
    let origin = format!("ConfigMap {namespace}/{name} ({CONFIG_KEY})");
    map.data
        .as_ref()
        .and_then(|data| data.get(CONFIG_KEY))
        .map(|text| Located {
            origin,
            text: text.clone(),
        })
        .ok_or_else(|| {
            SettingsError::BadInput(format!(
                "ConfigMap {namespace}/{name} holds no {CONFIG_KEY}: it is not the chart's; \
                 pass --release RELEASE, or --config FILE"
            ))
        })
}

/// The chart's ConfigMap in `namespace`: by its name with a release, else the one
/// ConfigMap there labelled as the chart's that holds `config.yaml`.
pub async fn chart_config(
    client: &kube::Client,
    namespace: &str,
    release: Option<&str>,
) -> Result<Located, SettingsError> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    if let Some(release) = release {
        let name = config_map_name(release);
        let remedy = "doctor needs `get` on configmaps there, or pass --config FILE";
        return match maps.get_opt(&name).await {
            Ok(Some(map)) => text_of(&map, namespace),
            Ok(None) => Err(SettingsError::BadInput(format!(
                "ConfigMap {namespace}/{name} (the chart's for release {release}) not found: \
                 pass --namespace and --release of the installed chart \
                 (helm list -A), or --config FILE"
            ))),
            Err(err) => Err(kube_error(
                format!("reading ConfigMap {namespace}/{name}"),
                err,
                remedy,
            )),
        };
    }
    let label = format!("app.kubernetes.io/name={CHART}");
    let listed = maps
        .list(&ListParams::default().labels(&label))
        .await
        .map_err(|err| {
            kube_error(
                format!("listing the ConfigMaps of namespace {namespace}"),
                err,
                "pass --release RELEASE to read the chart's ConfigMap by name, or --config FILE",
            )
        })?;
    let found: Vec<&ConfigMap> = listed
        .items
        .iter()
        .filter(|map| {
            map.data
                .as_ref()
                .is_some_and(|data| data.contains_key(CONFIG_KEY))
        })
        .collect();
    match found.as_slice() {
        [one] => text_of(one, namespace),
        [] => Err(SettingsError::BadInput(format!(
            "no ConfigMap of the {CHART} chart in namespace {namespace} (labelled {label}, \
             holding {CONFIG_KEY}): pass --namespace NAMESPACE where the chart is installed \
             (and --release RELEASE), or --config FILE"
        ))),
        several => {
            let names: Vec<String> = several
                .iter()
                .map(|map| {
                    let name = map.metadata.name.clone().unwrap_or_default();
                    match map
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("app.kubernetes.io/instance"))
                    {
                        Some(release) => format!("{name} (release {release})"),
                        None => name,
                    }
                })
                .collect();
            Err(SettingsError::BadInput(format!(
                "several releases of the {CHART} chart in namespace {namespace}: {}; \
                 pass --release RELEASE, or --config FILE",
                names.join(", ")
            )))
        }
    }
}

/// The operator's configuration: `--config FILE` when given (the ConfigMap is then not
/// read), else the chart's ConfigMap; the environment and flags over it.
pub async fn load(
    operator: &ConfigArgs,
    client: &kube::Client,
    namespace: &str,
    release: Option<&str>,
) -> Result<OperatorConfig, SettingsError> {
    let loaded = match &operator.config {
        Some(_) => operator.load(),
        None => {
            let found = chart_config(client, namespace, release).await?;
            operator.load_text(&found.origin, &found.text)
        }
    };
    loaded.map_err(|err| SettingsError::BadInput(err.to_string()))
}

/// Where doctor reaches the issuer's hosts: each `--connect-to`, then each
/// `oidc.connectTo` for a HOST:PORT no flag names.
pub fn issuer_routes(flags: &[ConnectTo], config: &OperatorConfig) -> Vec<ConnectTo> {
    let mut routes = flags.to_vec();
    for route in config.issuer_connect_to() {
        if !flags
            .iter()
            .any(|f| f.host == route.host && f.port == route.port)
        {
            routes.push(route);
        }
    }
    routes
}

/// DER certificates (a kubeconfig's CA) as PEM.
pub fn pem_of(ders: &[Vec<u8>]) -> Vec<u8> {
    let mut pem = Vec::new();
    for der in ders {
        let encoded = base64::engine::general_purpose::STANDARD.encode(der);
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    pem
}

/// The certificates doctor trusts for the issuer's hosts beside the system's roots: the
/// `--issuer-ca` file's (`flag`: its name and text), else `oidc.issuerCa`; and the
/// cluster's CA (`cluster_ca_pem`, from the kubeconfig), for an issuer that is the API
/// server itself.
pub fn issuer_fetcher(
    flag: Option<(&str, &[u8])>,
    config: &OperatorConfig,
    cluster_ca_pem: &[u8],
    routes: Vec<ConnectTo>,
) -> Result<Fetcher, String> {
    let (which, mut pem) = match (flag, &config.oidc.issuer_ca) {
        (Some((name, pem)), _) => (format!("--issuer-ca {name}"), pem.to_vec()),
        (None, Some(pem)) => ("oidc.issuerCa".to_string(), pem.as_bytes().to_vec()),
        (None, None) => ("the cluster's CA".to_string(), Vec::new()),
    };
    if !pem.is_empty() {
        let mut count = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            cert.map_err(|e| format!("{which}: not a PEM certificate: {e}"))?;
            count += 1;
        }
        if count == 0 {
            return Err(format!("{which}: holds no PEM certificate"));
        }
        pem.push(b'\n');
    }
    pem.extend_from_slice(cluster_ca_pem);
    let extra = (!pem.is_empty()).then_some(pem);
    Fetcher::new(extra.as_deref(), routes).map_err(|e| format!("{which}: {e}"))
}
