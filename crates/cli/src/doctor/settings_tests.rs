//! Where doctor's configuration comes from: the chart's ConfigMap in the cluster by
//! default (found by release, or as the chart's one ConfigMap in the namespace), `--config`
//! instead when given, flags over either; and what it says when it finds none.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube_fake_client::ClientBuilder;
use kube_fake_client::interceptor::Funcs;

use super::settings::{SettingsError, chart_fullname, config_map_name, issuer_routes, load};
use crate::config_load::ConfigArgs;
use podidentity_api::config::{ConnectTo, OperatorConfig};

const NAMESPACE: &str = "podidentity-system";

/// The chart's ConfigMap of `release`, as `helm install` makes it.
fn chart_config_map(namespace: &str, release: &str, text: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": config_map_name(release),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "pod-identity-operator",
                "app.kubernetes.io/instance": release,
                "app.kubernetes.io/managed-by": "Helm",
            },
        },
        "data": {"config.yaml": text},
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn cluster(maps: Vec<ConfigMap>) -> kube::Client {
    ClientBuilder::new()
        .with_objects(maps)
        .build()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

const IN_CLUSTER: &str = "clusterName: from-cluster\ntrustPolicy: {maxBytes: 4096}\n\
                          oidc:\n  connectTo: [\"oidc.example.com:443:10.0.0.9:8443\"]\n";

async fn loaded(
    client: &kube::Client,
    args: &ConfigArgs,
    namespace: &str,
    release: Option<&str>,
) -> Result<OperatorConfig, String> {
    load(args, client, namespace, release)
        .await
        .map_err(|err| match err {
            SettingsError::BadInput(m) | SettingsError::Unreachable(m) => m,
        })
}

#[test]
fn the_config_map_is_named_as_the_chart_names_it() {
    assert_eq!(config_map_name("pio"), "pio-pod-identity-operator-config");
    assert_eq!(
        config_map_name("pod-identity-operator"),
        "pod-identity-operator-config"
    );
    assert_eq!(
        config_map_name("prod-pod-identity-operator"),
        "prod-pod-identity-operator-config"
    );
    // trunc 50 | trimSuffix "-"
    let long = "a".repeat(40);
    assert_eq!(chart_fullname(&long).len(), 50);
    assert_eq!(
        chart_fullname(&format!("{}-x", "b".repeat(49))),
        "b".repeat(49)
    );
}

#[tokio::test]
async fn without_config_the_charts_config_map_is_read_and_flags_win_over_it() {
    let client = cluster(vec![chart_config_map(NAMESPACE, "pio", IN_CLUSTER)]).await;
    let args = ConfigArgs {
        cluster_name: Some("from-flag".into()),
        ..ConfigArgs::default()
    };
    for release in [Some("pio"), None] {
        let config = loaded(&client, &args, NAMESPACE, release)
            .await
            .unwrap_or_else(|e| panic!("{release:?}: {e}"));
        assert_eq!(config.cluster_name, "from-flag", "{release:?}");
        assert_eq!(config.trust_policy.max_bytes, 4096, "{release:?}");
        assert_eq!(
            config.oidc.connect_to,
            vec!["oidc.example.com:443:10.0.0.9:8443".to_string()],
            "{release:?}"
        );
    }
}

#[tokio::test]
async fn a_config_file_replaces_the_config_map() {
    let client = cluster(vec![chart_config_map(NAMESPACE, "pio", IN_CLUSTER)]).await;
    let path = std::env::temp_dir().join(format!(
        "podidentity-doctor-settings-{}.yaml",
        std::process::id()
    ));
    std::fs::write(&path, "clusterName: from-file\n").unwrap_or_else(|e| panic!("{e}"));
    let args = ConfigArgs {
        config: Some(path.clone()),
        ..ConfigArgs::default()
    };
    let config = loaded(&client, &args, NAMESPACE, Some("pio")).await;
    let _ = std::fs::remove_file(&path);
    let config = config.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.cluster_name, "from-file");
    // Nothing of the ConfigMap's: the file is the whole document.
    assert_eq!(
        config.trust_policy.max_bytes,
        podidentity_api::config::DEFAULT_TRUST_POLICY_MAX_BYTES
    );
    assert!(config.oidc.connect_to.is_empty());
}

#[tokio::test]
async fn a_missing_config_map_names_what_was_tried_and_what_to_pass() {
    let client = cluster(vec![chart_config_map(NAMESPACE, "pio", IN_CLUSTER)]).await;
    let args = ConfigArgs::default();
    let by_name = loaded(&client, &args, "ops", Some("pio"))
        .await
        .err()
        .unwrap_or_default();
    for expected in [
        "ConfigMap ops/pio-pod-identity-operator-config",
        "--namespace",
        "--release",
        "--config FILE",
    ] {
        assert!(by_name.contains(expected), "{expected}: {by_name}");
    }
    let by_label = loaded(&client, &args, "ops", None)
        .await
        .err()
        .unwrap_or_default();
    for expected in ["in namespace ops", "--namespace", "--config FILE"] {
        assert!(by_label.contains(expected), "{expected}: {by_label}");
    }
    let wrong_release = loaded(&client, &args, NAMESPACE, Some("other"))
        .await
        .err()
        .unwrap_or_default();
    assert!(
        wrong_release.contains("podidentity-system/other-pod-identity-operator-config"),
        "{wrong_release}"
    );
}

#[tokio::test]
async fn two_releases_in_one_namespace_ask_for_release() {
    let client = cluster(vec![
        chart_config_map(NAMESPACE, "pio", IN_CLUSTER),
        chart_config_map(NAMESPACE, "blue", "clusterName: blue\n"),
    ])
    .await;
    let args = ConfigArgs::default();
    let err = loaded(&client, &args, NAMESPACE, None)
        .await
        .err()
        .unwrap_or_default();
    for expected in [
        "pio-pod-identity-operator-config (release pio)",
        "blue-pod-identity-operator-config (release blue)",
        "--release",
    ] {
        assert!(err.contains(expected), "{expected}: {err}");
    }
    let blue = loaded(&client, &args, NAMESPACE, Some("blue"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(blue.cluster_name, "blue");
}

#[tokio::test]
async fn a_bad_setting_in_the_config_map_is_named_with_the_config_map() {
    let client = cluster(vec![chart_config_map(
        NAMESPACE,
        "pio",
        "clusterName: prod\ntrustPolicy: {maxBytes: lots}\n",
    )])
    .await;
    let err = loaded(&client, &ConfigArgs::default(), NAMESPACE, Some("pio"))
        .await
        .err()
        .unwrap_or_default();
    assert!(
        err.contains(
            "ConfigMap podidentity-system/pio-pod-identity-operator-config (config.yaml): trustPolicy.maxBytes"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_listing_refused_asks_for_release() {
    let client = ClientBuilder::new()
        .with_object(chart_config_map(NAMESPACE, "pio", IN_CLUSTER))
        .with_interceptor_funcs(Funcs::new().list(|_| {
            Err(kube_fake_client::Error::InvalidRequest(
                "configmaps is forbidden".into(),
            ))
        }))
        .build()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = loaded(&client, &ConfigArgs::default(), NAMESPACE, None)
        .await
        .err()
        .unwrap_or_default();
    assert!(
        err.contains("listing the ConfigMaps of namespace podidentity-system"),
        "{err}"
    );
    assert!(err.contains("--release RELEASE"), "{err}");
    // By name, a get is enough.
    let config = loaded(&client, &ConfigArgs::default(), NAMESPACE, Some("pio"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.cluster_name, "from-cluster");
}

#[test]
fn connect_to_flags_win_for_their_host_and_the_configurations_others_stay() {
    let mut config = OperatorConfig::default();
    config.oidc.connect_to = vec![
        "oidc.example.com:443:10.0.0.9:8443".into(),
        "keys.example.com:443:10.0.0.7:443".into(),
    ];
    let flag: ConnectTo = "oidc.example.com:443:127.0.0.1:9443"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let routes = issuer_routes(std::slice::from_ref(&flag), &config);
    let shown: BTreeMap<String, String> = routes
        .iter()
        .map(|r| (format!("{}:{}", r.host, r.port), r.target.clone()))
        .collect();
    assert_eq!(routes.len(), 2, "{shown:?}");
    assert_eq!(shown["oidc.example.com:443"], "127.0.0.1:9443");
    assert_eq!(shown["keys.example.com:443"], "10.0.0.7:443");
    assert_eq!(issuer_routes(&[], &config).len(), 2);
}
