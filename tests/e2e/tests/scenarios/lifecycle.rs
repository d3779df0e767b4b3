//! A binding's life as a user lives it: create, `kubectl wait`, printer columns, update in
//! place, delete.

use std::time::Duration;

use podidentity_aws::api::Iam;
use podidentity_e2e::Scenario;
use serde_json::json;

pub async fn create_wait_update_delete(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("shop").await;
    s.create_service_account(&ns, "orders", json!({})).await;
    s.create_binding(
        &ns,
        "orders-s3",
        json!({
            "serviceAccountName": "orders",
            "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::shop-orders/*"]}]},
        }),
    )
    .await;
    let (ok, out, err) = s
        .cluster
        .kubectl(&[
            "wait",
            "--for=condition=Ready",
            "pib/orders-s3",
            "-n",
            &ns,
            "--timeout=60s",
        ])
        .await;
    assert!(ok, "kubectl wait: {out} {err}");
    let binding = s.wait_ready(&ns, "orders-s3").await;
    let arn = s.role_arn(&ns, "orders-s3");
    assert_eq!(
        binding.status.as_ref().and_then(|s| s.role_arn.clone()),
        Some(arn.clone())
    );
    assert_eq!(
        s.annotations(&ns, "orders")
            .await
            .get("eks.amazonaws.com/role-arn"),
        Some(&arn)
    );
    let role = Iam::new(&s.moto)
        .get_role(&s.role_name(&ns, "orders-s3"))
        .await
        .expect("the role exists in IAM");
    assert_eq!(role.arn, arn);

    let (ok, out, err) = s.cluster.kubectl(&["get", "pib", "-n", &ns]).await;
    assert!(ok, "{err}");
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "SERVICE", "ACCOUNT", "ROLE", "ARN", "READY", "REASON", "AGE"
        ]
    );
    let row = out.lines().nth(1).unwrap_or_default();
    for cell in ["orders-s3", "orders", arn.as_str(), "True", "Synced"] {
        assert!(row.contains(cell), "printer row {row:?} lacks {cell}");
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}
