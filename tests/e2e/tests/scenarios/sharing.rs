//! Forty bindings naming one ServiceAccount: one owns it (the oldest, then by name), the
//! others say whose it is and write nothing; no fight over the annotation; and when the
//! owner goes, the next in line takes over by itself (there used to be 7,312 PATCHes of
//! one ServiceAccount in 12 s).

use std::time::Duration;

use kube::api::ListParams;
use podidentity_e2e::Scenario;
use podidentity_e2e::scenario::condition;
use podidentity_e2e::wait::{check, until};
use podidentity_iam::service_account_owner;
use serde_json::json;

const BINDINGS: usize = 40;

async fn owner_now(s: &Scenario, ns: &str) -> String {
    let bindings = s
        .bindings(ns)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    service_account_owner(&bindings, ns, "shared")
        .and_then(|b| b.metadata.name.clone())
        .expect("an owner")
}

/// Waits until `owner` is Ready with the annotation, and every other binding names it.
async fn settled(s: &Scenario, ns: &str, owner: &str, others: &[String]) {
    s.wait_ready(ns, owner).await;
    let arn = s.role_arn(ns, owner);
    for other in others {
        let binding = s
            .wait_condition(ns, other, "Ready", "False", Some("ServiceAccountConflict"))
            .await;
        let message = condition(&binding, "Ready")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        assert!(
            message.contains(&format!("{ns}/{owner}")),
            "{other}: {message}"
        );
        // The Event follows the status write: wait for it too, or it may land in the
        // quiet window that follows.
        s.wait_event(ns, other, "ServiceAccountConflict").await;
    }
    until(
        "the owner's role on the ServiceAccount",
        Duration::from_secs(30),
        || async {
            let annotations = s.annotations(ns, "shared").await;
            check(
                annotations.get("eks.amazonaws.com/role-arn") == Some(&arn),
                || format!("{annotations:?}"),
            )
        },
    )
    .await;
}

pub async fn one_owner_no_fight_and_a_hand_over(s: Scenario) {
    let (_rendered, controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("shared").await;
    s.create_service_account(&ns, "shared", json!({})).await;
    let names: Vec<String> = (0..BINDINGS).map(|i| format!("b{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        s.create_binding(
            &ns,
            name,
            json!({
                "serviceAccountName": "shared",
                "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": [format!("arn:aws:s3:::bucket-{i}/*")]}]},
            }),
        )
        .await;
    }
    let owner = owner_now(&s, &ns).await;
    let others: Vec<String> = names.iter().filter(|n| **n != owner).cloned().collect();
    settled(&s, &ns, &owner, &others).await;
    // Only the owner made a role.
    let roles_made = names
        .iter()
        .filter(|n| {
            s.calls_for(&s.role_name(&ns, n))
                .contains(&"CreateRole".to_string())
        })
        .count();
    assert_eq!(roles_made, 1, "waiting bindings make no role");

    // Twelve quiet seconds: nobody writes the ServiceAccount, or anything else.
    let quiet = s.audit_now();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let writes = s.writes_by(&controller.user, quiet);
    assert!(
        writes.is_empty(),
        "settled bindings write nothing: {} writes, e.g. {:?}",
        writes.len(),
        writes
            .iter()
            .take(5)
            .map(|w| (&w.verb, w.kind(), &w.name))
            .collect::<Vec<_>>()
    );
    let account_writes = s
        .writes_by(&controller.user, s.audit_mark)
        .into_iter()
        .filter(|w| w.resource.as_deref() == Some("serviceaccounts"))
        .count();
    assert!(
        account_writes <= 2,
        "the ServiceAccount was written {account_writes} times for one owner"
    );

    // The owner goes: the next in line takes over, with nobody's help.
    let handover = s.audit_now();
    s.delete_binding(&ns, &owner).await;
    s.wait_gone(&ns, &owner).await;
    let next = owner_now(&s, &ns).await;
    assert_ne!(next, owner);
    let rest: Vec<String> = others.iter().filter(|n| **n != next).cloned().collect();
    settled(&s, &ns, &next, &rest).await;
    let account_writes = s
        .writes_by(&controller.user, handover)
        .into_iter()
        .filter(|w| w.resource.as_deref() == Some("serviceaccounts"))
        .count();
    assert!(
        account_writes <= 3,
        "hand-over took {account_writes} ServiceAccount writes"
    );
}
