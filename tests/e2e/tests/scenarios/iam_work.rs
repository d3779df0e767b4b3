//! The IAM calls a binding costs, counted at the proxy in front of moto: three for a new
//! binding however the controller meets it (created while it was down, or with its
//! ServiceAccount changing in the same second); a managed policy that does not exist is
//! the user's to fix, and nothing that succeeded is sent again; and convergence to one
//! role through kill -9, throttling and 5xx.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use podidentity_e2e::Scenario;
use podidentity_e2e::iam_proxy::Fault;
use podidentity_e2e::operator::Replica;
use podidentity_e2e::scenario::condition;
use podidentity_e2e::wait::{check, until};
use serde_json::json;

fn spec(account: &str, policy: &str) -> serde_json::Value {
    json!({
        "serviceAccountName": account,
        "permissions": {
            "statements": [{"actions": ["s3:GetObject"], "resources": ["*"]}],
            "managedPolicyArns": [policy],
        },
    })
}

const SQS_READ: &str = "arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess";

pub async fn three_calls_when_created_while_the_controller_was_down(s: Scenario) {
    const BINDINGS: usize = 10;
    let ns = s.namespace("down").await;
    for i in 0..BINDINGS {
        let name = format!("app{i}");
        s.create_service_account(&ns, &name, json!({})).await;
        s.create_binding(&ns, &name, spec(&name, SQS_READ)).await;
    }
    let rendered = s.install(json!({})).await;
    // A slow IAM: each pass takes longer than the events that wake the binding again.
    s.iam
        .inject("*", Fault::Delay(Duration::from_millis(250)), 10_000);
    let mut controller = s
        .controller(&rendered, &Replica::named(&format!("{}-controller", s.tag)))
        .await;
    // Their ServiceAccounts change while the controller starts and works.
    let touching = async {
        for round in 0..60 {
            for i in 0..BINDINGS {
                let _ = s
                    .service_accounts(&ns)
                    .patch(
                        &format!("app{i}"),
                        &PatchParams::default(),
                        &Patch::Merge(
                            json!({"metadata": {"labels": {"round": round.to_string()}}}),
                        ),
                    )
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let ((), _) = tokio::join!(touching, controller.wait_ready(Duration::from_secs(30)));
    for i in 0..BINDINGS {
        let name = format!("app{i}");
        s.wait_ready(&ns, &name).await;
        let mut calls = s.calls_for(&s.role_name(&ns, &name));
        calls.sort();
        assert_eq!(
            calls,
            ["AttachRolePolicy", "CreateRole", "PutRolePolicy"],
            "{name}: exactly three calls, no reads"
        );
    }
}

pub async fn a_managed_policy_that_does_not_exist_is_the_users_to_fix(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("typo").await;
    s.create_service_account(&ns, "app", json!({})).await;
    let typo = "arn:aws:iam::aws:policy/AmazonSQSReadOnlyAcess";
    s.create_binding(&ns, "app", spec("app", typo)).await;
    let binding = s
        .wait_condition(&ns, "app", "Ready", "False", Some("ManagedPolicyNotFound"))
        .await;
    let stalled = condition(&binding, "Stalled").expect("Stalled");
    assert_eq!(stalled.status, "True");
    assert!(stalled.message.contains(typo), "{}", stalled.message);
    let status = binding.status.clone().unwrap_or_default();
    assert_eq!(
        status.role_arn.as_deref(),
        Some(s.role_arn(&ns, "app").as_str()),
        "the role it made is shown"
    );
    let role = s.role_name(&ns, "app");
    assert!(s.iam_role(&role).await.is_some(), "and kept");
    s.wait_event(&ns, "app", "ManagedPolicyNotFound").await;

    // Wake it again and again: nothing that succeeded is sent again.
    for round in 0..5 {
        s.service_accounts(&ns)
            .patch(
                "app",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"round": round.to_string()}}})),
            )
            .await
            .expect("touch");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let calls = s.calls_for(&role);
    let count = |action: &str| calls.iter().filter(|c| *c == action).count();
    assert_eq!(count("CreateRole"), 1, "{calls:?}");
    assert_eq!(count("PutRolePolicy"), 1, "{calls:?}");
    assert_eq!(count("AttachRolePolicy"), 1, "no retry loop: {calls:?}");

    // The user fixes the spec: the same role gets the right policy.
    s.patch_spec(
        &ns,
        "app",
        json!({"permissions": {"managedPolicyArns": [SQS_READ]}}),
    )
    .await;
    s.wait_ready(&ns, "app").await;
    assert_eq!(s.attached(&role).await, [SQS_READ]);
    assert_eq!(
        s.calls_for(&role)
            .iter()
            .filter(|c| *c == "CreateRole")
            .count(),
        1
    );
}

pub async fn kill_9_between_calls_converges_to_one_role(s: Scenario) {
    let ns = s.namespace("crash").await;
    s.create_service_account(&ns, "app", json!({})).await;
    let rendered = s.install(json!({})).await;
    let replica = Replica::named(&format!("{}-controller", s.tag));
    // The role gets made; its policies cannot be (moto is "down" for them).
    s.iam.inject("PutRolePolicy", Fault::Unavailable, 1000);
    let mut controller = s.controller(&rendered, &replica).await;
    controller.wait_ready(Duration::from_secs(30)).await;
    s.create_binding(&ns, "app", spec("app", SQS_READ)).await;
    let role = s.role_name(&ns, "app");
    until(
        "CreateRole, then a failing PutRolePolicy",
        Duration::from_secs(30),
        || async {
            let calls = s.calls_for(&role);
            check(
                calls.contains(&"CreateRole".to_string())
                    && calls.contains(&"PutRolePolicy".to_string()),
                || format!("{calls:?}"),
            )
        },
    )
    .await;
    controller.process.kill();
    s.iam.clear_faults();
    let mut again = s.controller(&rendered, &replica).await;
    again.wait_ready(Duration::from_secs(30)).await;
    let binding = s.wait_ready(&ns, "app").await;
    let made = s.iam_role(&role).await.expect("role");
    assert_eq!(
        binding.status.and_then(|st| st.role_id).as_deref(),
        Some(made.id.as_str())
    );
    assert_eq!(s.attached(&role).await, [SQS_READ]);
    let created = s
        .iam
        .calls()
        .into_iter()
        .filter(|c| c.action == "CreateRole" && c.status == 200)
        .count();
    assert_eq!(created, 1, "one role, created once");
}

pub async fn throttling_and_5xx_still_converge(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("flaky").await;
    s.iam.inject("CreateRole", Fault::Throttle, 3);
    s.iam.inject("AttachRolePolicy", Fault::Unavailable, 2);
    s.iam.inject("PutRolePolicy", Fault::DropAfter, 1);
    for i in 0..5 {
        let name = format!("app{i}");
        s.create_service_account(&ns, &name, json!({})).await;
        s.create_binding(&ns, &name, spec(&name, SQS_READ)).await;
    }
    for i in 0..5 {
        s.wait_ready(&ns, &format!("app{i}")).await;
        let role = s.role_name(&ns, &format!("app{i}"));
        assert_eq!(s.attached(&role).await, [SQS_READ]);
    }
    let created = s
        .iam
        .calls()
        .into_iter()
        .filter(|c| c.action == "CreateRole" && c.status == 200)
        .count();
    assert_eq!(created, 5, "one role per binding");
    assert!(
        s.iam.calls().iter().filter(|c| c.faulted).count() >= 6,
        "the faults were met"
    );
}
