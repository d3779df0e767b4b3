//! Monitoring: every metric the chart's Grafana dashboard and alerts use is one the
//! operator exports, read from the `/metrics` of the controller and the webhook as the
//! chart starts them.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use podidentity_aws::api::IamRequest;
use podidentity_e2e::Scenario;
use podidentity_e2e::iam_proxy::Fault;
use podidentity_e2e::operator::Operator;
use podidentity_e2e::scenario::ACCOUNT;
use serde_json::json;

fn chart_file(name: &str) -> String {
    let path = podidentity_e2e::chart::repo_root()
        .join("charts/pod-identity-operator/files")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The series names (`podidentity_...`) a dashboard or rule file queries.
fn queried_series(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("podidentity_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        found.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    found
}

/// Every series name an exposition can answer: each family's samples as its type names
/// them (a counter `_total`; a histogram `_bucket`, `_sum`, `_count`), whether or not it
/// has samples yet.
fn exported_series(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let mut words = declared.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.insert(format!("{name}{suffix}"));
            }
        } else if !line.starts_with('#') {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// Polls `/metrics` of `process` until it holds `wanted`.
async fn metrics_with(process: &Operator, wanted: &str) -> String {
    podidentity_e2e::wait::until(wanted, Duration::from_secs(60), || async {
        let metrics = process.metrics().await;
        if metrics.contains(wanted) {
            Ok(metrics)
        } else {
            Err(metrics)
        }
    })
    .await
}

pub async fn the_dashboard_and_alerts_query_only_metrics_the_operator_exports(s: Scenario) {
    // A family with labels is exported once it has a series: the scenario makes each
    // happen (a failed pass, drift, an admission), as a running cluster would.
    let (rendered, controller) = s.start_controller(json!({"driftInterval": "10s"})).await;
    let ns = s.namespace("watched").await;
    let webhook = s.start_webhook_for(&rendered, Some(&ns)).await;
    // IAM unavailable for every attempt of the first CreateRole: a failed pass.
    s.iam.inject("CreateRole", Fault::Unavailable, 5);
    s.create_service_account(&ns, "app", json!({})).await;
    s.create_binding(
        &ns,
        "app",
        json!({"serviceAccountName": "app", "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["*"]}]}}),
    )
    .await;
    s.wait_ready(&ns, "app").await;
    // Drift: a policy attached by hand, found by the sweep and taken off again.
    let role = s.role_name(&ns, "app");
    s.change_iam(IamRequest::AttachRolePolicy {
        name: role.clone(),
        arn: "arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess".into(),
    })
    .await;
    // A pod the webhook admits.
    let pods: Api<Pod> = Api::namespaced(s.client(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "app"},
        "spec": {"serviceAccountName": "app", "containers": [{"name": "app", "image": "registry.example/app:1"}]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create a pod");

    let webhook_metrics = metrics_with(&webhook, "podidentity_webhook_admissions_total{").await;
    metrics_with(
        &controller,
        &format!("podidentity_drift_corrections_total{{role=\"{role}\"}}"),
    )
    .await;
    let controller_metrics = metrics_with(&controller, "podidentity_reconcile_errors_total{").await;
    let exported: BTreeSet<String> = exported_series(&controller_metrics)
        .into_iter()
        .chain(exported_series(&webhook_metrics))
        .collect();
    for (file, text) in [
        ("dashboard.json", chart_file("dashboard.json")),
        ("alerts.yaml", chart_file("alerts.yaml")),
    ] {
        let queried = queried_series(&text);
        assert!(queried.len() >= 4, "{file} queries {queried:?}");
        let unknown: Vec<&String> = queried.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} queries series the operator does not export: {unknown:?}\nexported: {exported:?}"
        );
    }
    // The budget's waits are observed on the real calls that made the role.
    assert!(
        controller_metrics.contains(&format!(
            "podidentity_iam_budget_wait_seconds_count{{account=\"{ACCOUNT}\"}}"
        )),
        "{controller_metrics}"
    );
}
