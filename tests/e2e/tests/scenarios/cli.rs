//! The binary as a user's kubectl plugin: `kubectl podidentity status` lists the
//! bindings as the API server holds them, with their role and conditions.

use podidentity_e2e::Scenario;
use serde_json::{Value, json};

/// Runs `kubectl-podidentity` (the real binary under the plugin's name) as the cluster's
/// admin; its exit code and stdout.
async fn kubectl_podidentity(s: &Scenario, args: &[&str]) -> (i32, String) {
    let plugin = s.dir.join("kubectl-podidentity");
    if !plugin.exists() {
        std::os::unix::fs::symlink(&s.cluster.binary, &plugin).expect("the plugin's name");
    }
    let output = s
        .run_as_user(&plugin, &s.cluster.admin_kubeconfig, args)
        .await;
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

pub async fn kubectl_podidentity_status_lists_bindings_as_the_cluster_holds_them(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("listed").await;
    s.create_service_account(&ns, "app", json!({})).await;
    let permissions = json!({"statements": [{"actions": ["s3:GetObject"], "resources": ["*"]}]});
    s.create_binding(
        &ns,
        "app",
        json!({"serviceAccountName": "app", "permissions": permissions}),
    )
    .await;
    let arn = s.wait_role_arn(&ns, "app").await;
    // A second binding naming the same ServiceAccount waits for it.
    s.create_binding(
        &ns,
        "second",
        json!({"serviceAccountName": "app", "permissions": permissions}),
    )
    .await;
    s.wait_condition(
        &ns,
        "second",
        "Ready",
        "False",
        Some("ServiceAccountConflict"),
    )
    .await;

    let (code, table) = kubectl_podidentity(&s, &["status", "-n", &ns]).await;
    assert_eq!(code, 0, "{table}");
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        vec![
            vec!["NAME", "SERVICE", "ACCOUNT", "ROLE", "READY", "REASON"],
            vec!["app", "app", arn.as_str(), "True", "Synced"],
            vec!["second", "app", "<none>", "False", "ServiceAccountConflict"],
        ],
        "{table}"
    );

    let (code, listed) = kubectl_podidentity(&s, &["status", "-A", "-o", "json"]).await;
    assert_eq!(code, 0, "{listed}");
    let rows: Vec<Value> = serde_json::from_str(&listed).expect("JSON rows");
    let ours: Vec<&Value> = rows
        .iter()
        .filter(|r| r["namespace"] == json!(ns))
        .collect();
    assert_eq!(ours.len(), 2, "{listed}");
    assert_eq!(ours[1]["name"], json!("second"));
    assert!(
        ours[1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("app")),
        "the Ready message says which binding holds the ServiceAccount: {listed}"
    );
    assert!(
        ours[0]["conditions"]
            .as_array()
            .is_some_and(|c| c.contains(&json!("RoleSynced=True"))),
        "{listed}"
    );
}
