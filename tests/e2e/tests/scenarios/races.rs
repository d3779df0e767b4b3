//! The races a real API server produces around the finalizer (a second event before the
//! cache saw the first pass's write; a binding deleted while its finalizer is added; a
//! finalizer removed from an object already gone) are not failures: no error, no backoff.

use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams};
use podidentity_e2e::Scenario;
use podidentity_e2e::operator::family_sum;
use serde_json::json;

pub async fn finalizer_races_are_not_errors(s: Scenario) {
    let (_rendered, controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("races").await;
    let accounts = s.service_accounts(&ns);
    let bindings = s.bindings(&ns);
    let spec = |account: &str| {
        json!({
            "serviceAccountName": account,
            "permissions": {"statements": [{"actions": ["sqs:ReceiveMessage"], "resources": ["*"]}]},
        })
    };
    // A binding and, at once, a change to its ServiceAccount: two events in a row.
    for i in 0..10 {
        let account = format!("app{i}");
        s.create_service_account(&ns, &account, json!({})).await;
        s.create_binding(&ns, &format!("b{i}"), spec(&account))
            .await;
        accounts
            .patch(
                &account,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
            )
            .await
            .expect("touch");
    }
    // Bindings deleted right after they are made, while the finalizer goes on.
    for i in 0..5 {
        let name = format!("brief{i}");
        s.create_binding(&ns, &name, spec("app0")).await;
        if i % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        bindings
            .delete(&name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    for i in 0..10 {
        s.wait_ready(&ns, &format!("b{i}")).await;
    }
    for i in 0..5 {
        s.wait_gone(&ns, &format!("brief{i}")).await;
    }
    // Deleted with the binding already going: cleanup then finalizer removal.
    for i in 5..10 {
        bindings
            .delete(&format!("b{i}"), &DeleteParams::default())
            .await
            .expect("delete");
    }
    for i in 5..10 {
        s.wait_gone(&ns, &format!("b{i}")).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let metrics = controller.metrics().await;
    let errors = family_sum(&metrics, "podidentity_reconcile_errors_total", "");
    assert_eq!(
        errors,
        0.0,
        "no pass failed: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("podidentity_reconcile_errors_total"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let log = controller.process.log_tail(2000);
    assert!(
        !log.contains("reconcile failed"),
        "nothing was retried with backoff:\n{log}"
    );
}
