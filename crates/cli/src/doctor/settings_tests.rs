//! Where doctor's configuration comes from: the chart's ConfigMap in the cluster by
//! default (found by release, or as the chart's one ConfigMap in the namespace), `--config`
//! instead when given, flags over either; and what it says when it finds none. The
//! ConfigMaps are in the real API server of the test control plane, each test in a
//! namespace of its own (without one, those tests say they were skipped).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};

use super::settings::{SettingsError, chart_fullname, config_map_name, issuer_routes, load};
use crate::config_load::ConfigArgs;
use podidentity_api::config::{ConnectTo, OperatorConfig};

/// The prefix of each test's namespace (where the chart would be installed).
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

/// An admin client of the test control plane and a fresh namespace holding the chart's
/// ConfigMap of each `(release, config.yaml)`; `None` when no control plane runs.
async fn cluster(releases: &[(&str, &str)]) -> Option<(kube::Client, String)> {
    let client = podidentity_test_cluster::client().await?;
    let namespace = podidentity_test_cluster::namespace(&client, NAMESPACE).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    for (release, text) in releases {
        maps.create(
            &PostParams::default(),
            &chart_config_map(&namespace, release, text),
        )
        .await
        .unwrap_or_else(|e| panic!("ConfigMap of release {release} in {namespace}: {e}"));
    }
    Some((client, namespace))
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
    let Some((client, namespace)) = cluster(&[("pio", IN_CLUSTER)]).await else {
        return;
    };
    let args = ConfigArgs {
        cluster_name: Some("from-flag".into()),
        ..ConfigArgs::default()
    };
    for release in [Some("pio"), None] {
        let config = loaded(&client, &args, &namespace, release)
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
    let Some((client, namespace)) = cluster(&[("pio", IN_CLUSTER)]).await else {
        return;
    };
    let path = std::env::temp_dir().join(format!(
        "podidentity-doctor-settings-{}.yaml",
        std::process::id()
    ));
    std::fs::write(&path, "clusterName: from-file\n").unwrap_or_else(|e| panic!("{e}"));
    let args = ConfigArgs {
        config: Some(path.clone()),
        ..ConfigArgs::default()
    };
    let config = loaded(&client, &args, &namespace, Some("pio")).await;
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
    let Some((client, namespace)) = cluster(&[("pio", IN_CLUSTER)]).await else {
        return;
    };
    // Another namespace, without the chart.
    let ops = podidentity_test_cluster::namespace(&client, "ops").await;
    let args = ConfigArgs::default();
    let by_name = loaded(&client, &args, &ops, Some("pio"))
        .await
        .err()
        .unwrap_or_default();
    for expected in [
        format!("ConfigMap {ops}/pio-pod-identity-operator-config"),
        "not found".into(),
        "--namespace".into(),
        "--release".into(),
        "--config FILE".into(),
    ] {
        assert!(by_name.contains(&expected), "{expected}: {by_name}");
    }
    let by_label = loaded(&client, &args, &ops, None)
        .await
        .err()
        .unwrap_or_default();
    for expected in [
        format!("in namespace {ops}"),
        "--namespace".into(),
        "--config FILE".into(),
    ] {
        assert!(by_label.contains(&expected), "{expected}: {by_label}");
    }
    let wrong_release = loaded(&client, &args, &namespace, Some("other"))
        .await
        .err()
        .unwrap_or_default();
    assert!(
        wrong_release.contains(&format!("{namespace}/other-pod-identity-operator-config")),
        "{wrong_release}"
    );
}

#[tokio::test]
async fn two_releases_in_one_namespace_ask_for_release() {
    let Some((client, namespace)) =
        cluster(&[("pio", IN_CLUSTER), ("blue", "clusterName: blue\n")]).await
    else {
        return;
    };
    let args = ConfigArgs::default();
    let err = loaded(&client, &args, &namespace, None)
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
    let blue = loaded(&client, &args, &namespace, Some("blue"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(blue.cluster_name, "blue");
}

#[tokio::test]
async fn a_bad_setting_in_the_config_map_is_named_with_the_config_map() {
    let Some((client, namespace)) =
        cluster(&[("pio", "clusterName: prod\ntrustPolicy: {maxBytes: lots}\n")]).await
    else {
        return;
    };
    let err = loaded(&client, &ConfigArgs::default(), &namespace, Some("pio"))
        .await
        .err()
        .unwrap_or_default();
    assert!(
        err.contains(&format!(
            "ConfigMap {namespace}/pio-pod-identity-operator-config (config.yaml): trustPolicy.maxBytes"
        )),
        "{err}"
    );
}

/// Lets `user` get (not list) the ConfigMaps of `namespace`. The authorizer sees the
/// RoleBinding a moment later: a test that needs the get waits for it.
async fn may_only_get_config_maps(admin: &kube::Client, namespace: &str, user: &str) {
    let role: Role = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "configmaps-get"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "configmaps-get"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmaps-get"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    Api::<Role>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await
        .unwrap_or_else(|e| panic!("Role in {namespace}: {e}"));
    Api::<RoleBinding>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap_or_else(|e| panic!("RoleBinding in {namespace}: {e}"));
}

#[tokio::test]
async fn a_listing_refused_asks_for_release() {
    let Some((admin, namespace)) = cluster(&[("pio", IN_CLUSTER)]).await else {
        return;
    };
    // A user RBAC lets get the ConfigMaps there but not list them.
    may_only_get_config_maps(&admin, &namespace, "someone").await;
    let Some(client) = podidentity_test_cluster::client_as("someone").await else {
        return;
    };
    let err = loaded(&client, &ConfigArgs::default(), &namespace, None)
        .await
        .err()
        .unwrap_or_default();
    for expected in [
        format!("listing the ConfigMaps of namespace {namespace}"),
        // The API server's own words, and its code.
        r#"configmaps is forbidden: User "someone" cannot list resource "configmaps""#.into(),
        "(403)".into(),
        "--release RELEASE".into(),
    ] {
        assert!(err.contains(&expected), "{expected}: {err}");
    }
    // By name, a get is enough (once the authorizer has seen the RoleBinding).
    let waited = Instant::now();
    let config = loop {
        match loaded(&client, &ConfigArgs::default(), &namespace, Some("pio")).await {
            Err(e) if e.contains("forbidden") && waited.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break other.unwrap_or_else(|e| panic!("{e}")),
        }
    };
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
