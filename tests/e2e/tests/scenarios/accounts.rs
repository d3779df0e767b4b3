//! Many AWS accounts from one operator, on the real API server under the chart's RBAC:
//! moto acts in the account an AssumeRole names, so the harness has three accounts (the
//! operator's own and two teams'). PodIdentityPolicies place namespaces; their roles are
//! made in that account, trusting that account's provider, each account's calls counted
//! apart at the proxy by the credentials assumed into it.

use std::time::Duration;

use podidentity_e2e::Scenario;
use podidentity_e2e::iam_proxy::{Call, Fault};
use podidentity_e2e::operator::sample;
use podidentity_e2e::scenario::{ACCOUNT, condition};
use serde_json::{Value, json};

const TEAM_A: &str = "444455556666";
const TEAM_B: &str = "777788889999";
/// The label the placing policies select by (no other scenario's namespace carries it).
const PLACED: &str = "podidentity-e2e/account";
const IDLE_WINDOW: Duration = Duration::from_secs(25);

fn accounts() -> Value {
    let accounts: Vec<Value> = [TEAM_A, TEAM_B]
        .iter()
        .map(|id| {
            json!({
                "id": id,
                "roleArn": format!("arn:aws:iam::{id}:role/podidentity-operator"),
                "maxRequestsPerSecond": 20,
            })
        })
        .collect();
    json!({"driftInterval": "10s", "accounts": accounts})
}

fn placing(value: &str, account: &str) -> Value {
    json!({
        "namespaceSelector": {"matchLabels": {PLACED: value}},
        "account": account,
        "allowedResources": ["arn:aws:sqs:us-east-1:${account}:${namespace}_*"],
    })
}

fn sends_to(account: &str, namespace: &str) -> Value {
    json!({"statements": [{
        "actions": ["sqs:SendMessage"],
        "resources": [format!("arn:aws:sqs:us-east-1:{account}:{namespace}_orders")],
    }]})
}

/// Calls since `mark` in `account` (`None`: the operator's own), as `action role`.
fn calls_in(s: &Scenario, mark: usize, account: Option<&str>, writes_only: bool) -> Vec<String> {
    let calls: Vec<Call> = if writes_only {
        s.iam.writes_since(mark)
    } else {
        s.iam.calls_since(mark)
    };
    calls
        .into_iter()
        .filter(|c| c.account.as_deref() == account)
        .map(|c| format!("{} {}", c.action, c.role.unwrap_or_default()))
        .collect()
}

pub async fn bindings_in_two_accounts_get_their_roles_there(s: Scenario) {
    let (_rendered, controller) = s.start_controller(accounts()).await;
    let mark = s.iam.mark();
    let a = s.namespace_labelled("team-a", json!({PLACED: "a"})).await;
    let b = s.namespace_labelled("team-b", json!({PLACED: "b"})).await;
    let own = s.namespace("own").await;
    s.apply_policy("place-a", placing("a", TEAM_A)).await;
    s.apply_policy("place-b", placing("b", TEAM_B)).await;
    for (ns, account) in [(&a, TEAM_A), (&b, TEAM_B), (&own, ACCOUNT)] {
        s.create_service_account(ns, "orders", json!({})).await;
        s.create_binding(
            ns,
            "orders",
            json!({"serviceAccountName": "orders", "permissions": sends_to(account, ns)}),
        )
        .await;
    }
    // The issuer, as the operator's own account's role trusts it.
    s.wait_ready(&own, "orders").await;
    let own_trust = s
        .iam_role(&s.role_name(&own, "orders"))
        .await
        .map(|r| r.trust_policy)
        .unwrap_or_default();
    let issuer = own_trust
        .split_once(&format!("arn:aws:iam::{ACCOUNT}:oidc-provider/"))
        .and_then(|(_, rest)| rest.split('"').next())
        .unwrap_or_else(|| panic!("no provider in {own_trust}"))
        .to_string();
    for (ns, account) in [(&a, TEAM_A), (&b, TEAM_B), (&own, ACCOUNT)] {
        let binding = s.wait_ready(ns, "orders").await;
        let name = s.role_name(ns, "orders");
        let arn = format!(
            "arn:aws:iam::{account}:role/podidentity/{}/{name}",
            s.cluster_name
        );
        let status = binding.status.clone().unwrap_or_default();
        assert_eq!(status.role_arn.as_deref(), Some(arn.as_str()));
        assert_eq!(
            s.annotations(ns, "orders")
                .await
                .get("eks.amazonaws.com/role-arn"),
            Some(&arn),
            "the ServiceAccount names the role in {account}"
        );
        // The role is in that account, trusting that account's provider, and in no other.
        for other in [TEAM_A, TEAM_B, ACCOUNT] {
            let moto = s.moto_in(other).await;
            let role = podidentity_aws::api::Iam::new(&moto)
                .get_role(&name)
                .await
                .ok();
            if other == account {
                let role = role.unwrap_or_else(|| panic!("{name} is not in account {account}"));
                let provider = format!("arn:aws:iam::{account}:oidc-provider/{issuer}");
                assert!(
                    role.trust_policy.contains(&provider),
                    "{name} trusts {}, not {provider}",
                    role.trust_policy
                );
            } else {
                assert!(role.is_none(), "{name} was made in account {other} too");
            }
        }
    }
    // Each account's writes went there, through its own credentials.
    for (ns, account) in [(&a, Some(TEAM_A)), (&b, Some(TEAM_B)), (&own, None)] {
        let writes = calls_in(&s, mark, account, true);
        let made = s.role_name(ns, "orders");
        assert_eq!(
            writes,
            [
                format!("CreateRole {made}"),
                format!("PutRolePolicy {made}")
            ],
            "writes in {account:?}"
        );
    }

    // The metrics count each account's calls under its id.
    let metrics = controller.metrics().await;
    for account in [TEAM_A, TEAM_B, ACCOUNT] {
        let series = format!(
            r#"podidentity_iam_calls_total{{operation="CreateRole",outcome="ok",account="{account}"}}"#
        );
        assert_eq!(sample(&metrics, &series), 1.0, "{series} in\n{metrics}");
    }

    // Idle: nothing written in any account while each is swept with its own client.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = s.iam.mark();
    tokio::time::sleep(IDLE_WINDOW).await;
    for account in [Some(TEAM_A), Some(TEAM_B), None] {
        let writes = calls_in(&s, idle, account, true);
        assert_eq!(writes, Vec::<String>::new(), "idle writes in {account:?}");
        let sweeps = calls_in(&s, idle, account, false)
            .iter()
            .filter(|c| c.starts_with("GetAccountAuthorizationDetails"))
            .count();
        assert!(
            sweeps >= 1,
            "account {account:?} swept {sweeps} times in {IDLE_WINDOW:?}"
        );
        eprintln!(
            "    idle {IDLE_WINDOW:?}, account {}: 0 writes, {sweeps} sweep pages",
            account.unwrap_or(ACCOUNT)
        );
    }

    // Deleted: each role goes from its own account.
    for ns in [&a, &b] {
        s.delete_binding(ns, "orders").await;
        s.wait_gone(ns, "orders").await;
    }
    for account in [TEAM_A, TEAM_B] {
        let moto = s.moto_in(account).await;
        assert_eq!(
            s.roles_made_by(&moto).await.len(),
            0,
            "roles left in {account}"
        );
    }
}

pub async fn a_policy_naming_an_unknown_account_refuses_with_no_iam_write(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(accounts()).await;
    let mark = s.iam.mark();
    let ns = s.namespace_labelled("lost", json!({PLACED: "lost"})).await;
    s.apply_policy("place-lost", placing("lost", "999988887777"))
        .await;
    s.create_service_account(&ns, "orders", json!({})).await;
    s.create_binding(
        &ns,
        "orders",
        json!({"serviceAccountName": "orders", "permissions": sends_to(ACCOUNT, &ns)}),
    )
    .await;
    let binding = s
        .wait_condition(&ns, "orders", "Ready", "False", Some("GuardrailViolation"))
        .await;
    let message = condition(&binding, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("(spec.account)") && message.contains("999988887777"),
        "{message}"
    );
    assert_eq!(
        s.iam.writes_since(mark).len(),
        0,
        "{:?}",
        s.iam.writes_since(mark)
    );
}

pub async fn one_throttled_account_leaves_the_others_at_their_pace(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(accounts()).await;
    let a = s.namespace_labelled("slow", json!({PLACED: "slow"})).await;
    let b = s.namespace_labelled("fast", json!({PLACED: "fast"})).await;
    s.apply_policy("place-slow", placing("slow", TEAM_A)).await;
    s.apply_policy("place-fast", placing("fast", TEAM_B)).await;
    // IAM throttles everything in account A from here on.
    s.iam.inject_in(TEAM_A, "*", Fault::Throttle, 1_000_000);
    let mark = s.iam.mark();
    const EACH: usize = 4;
    for i in 0..EACH {
        for (ns, account) in [(&a, TEAM_A), (&b, TEAM_B)] {
            let name = format!("app{i}");
            s.create_service_account(ns, &name, json!({})).await;
            s.create_binding(
                ns,
                &name,
                json!({"serviceAccountName": name, "permissions": sends_to(account, ns)}),
            )
            .await;
        }
    }
    let started = std::time::Instant::now();
    for i in 0..EACH {
        s.wait_ready(&b, &format!("app{i}")).await;
    }
    let fast = started.elapsed();
    // Meanwhile A's bindings are not Ready: every call there was throttled.
    for i in 0..EACH {
        let binding = s
            .bindings(&a)
            .get(&format!("app{i}"))
            .await
            .expect("the throttled account's binding");
        let ready = condition(&binding, "Ready").map(|c| c.status.clone());
        assert_ne!(
            ready.as_deref(),
            Some("True"),
            "app{i} Ready through throttling"
        );
    }
    let calls = s.iam.calls_since(mark);
    let throttled = calls
        .iter()
        .filter(|c| c.account.as_deref() == Some(TEAM_A) && c.faulted)
        .count();
    let other_faulted = calls
        .iter()
        .filter(|c| c.account.as_deref() != Some(TEAM_A) && c.faulted)
        .count();
    assert!(throttled > 0, "account A was never asked");
    assert_eq!(other_faulted, 0, "a fault reached another account");
    // Once IAM lets account A through again, its bindings catch up.
    s.iam.clear_faults();
    for i in 0..EACH {
        s.wait_ready(&a, &format!("app{i}")).await;
    }
    eprintln!(
        "    account {TEAM_B}: {EACH} bindings Ready in {fast:?} while account {TEAM_A} answered {throttled} calls with Throttling; A caught up {:?} after the faults cleared",
        started.elapsed() - fast
    );
}
