//! Many AWS accounts from one operator, on the real API server under the chart's RBAC:
//! moto acts in the account an AssumeRole names, so the harness has three accounts (the
//! operator's own and two teams'). PodIdentityPolicies place namespaces; their roles are
//! made in that account, trusting that account's provider, each account's calls counted
//! apart at the proxy by the credentials assumed into it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams};
use podidentity_aws::api::Iam;
use podidentity_e2e::Scenario;
use podidentity_e2e::chart::OPERATOR_NAMESPACE;
use podidentity_e2e::iam_proxy::{Call, Fault};
use podidentity_e2e::operator::sample;
use podidentity_e2e::scenario::{ACCOUNT, condition};
use podidentity_e2e::wait::{check, until};
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
    let (rendered, controller) = s.start_controller(accounts()).await;
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

    // doctor, given the same configuration, reads the role where it lives and looks for
    // the provider in that account, as STS does.
    let (_code, report) = s.doctor(&rendered, &[&format!("{a}/orders")]).await;
    let link = |name: &str| {
        report["links"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["link"] == json!(name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} link in {report:#}"))
    };
    assert_eq!(link("role")["health"], json!("ok"), "{report:#}");
    let provider = link("oidcProvider").to_string();
    assert!(
        provider.contains(&format!("arn:aws:iam::{TEAM_A}:oidc-provider/")),
        "doctor looks for account A's provider: {provider}"
    );

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

/// With `oidc.manage`, the provider is kept in each account a policy places namespaces in
/// (the roles there trust it), and in no account nothing is placed in.
pub async fn each_placed_account_gets_the_oidc_provider(s: Scenario) {
    let mut values = accounts();
    values["oidc"] = json!({
        "manage": true,
        "checkInterval": "1s",
        "thumbprints": ["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"],
    });
    let (_rendered, controller) = s.start_controller(values).await;
    let a = s
        .namespace_labelled("provider", json!({PLACED: "provider"}))
        .await;
    s.apply_policy("place-provider", placing("provider", TEAM_A))
        .await;
    s.create_service_account(&a, "orders", json!({})).await;
    s.create_binding(
        &a,
        "orders",
        json!({"serviceAccountName": "orders", "permissions": sends_to(TEAM_A, &a)}),
    )
    .await;
    s.wait_ready(&a, "orders").await;

    let maps: Api<ConfigMap> = Api::namespaced(s.client(), OPERATOR_NAMESPACE);
    let kept = |data: &BTreeMap<String, String>| {
        data.get("accountProviders")
            .is_some_and(|p| p.contains(&format!("{TEAM_A}: InSync")))
    };
    let data = until(
        "account A's provider kept",
        Duration::from_secs(60),
        || async {
            let data = maps
                .get_opt("podidentity-oidc")
                .await
                .ok()
                .flatten()
                .and_then(|m| m.data)
                .unwrap_or_default();
            match kept(&data) {
                true => Ok(data),
                false => Err(format!("the status is {data:#?}")),
            }
        },
    )
    .await;
    let issuer = data.get("issuer").cloned().unwrap_or_default();
    let host_path = issuer.trim_start_matches("https://");
    let in_account = |account: &str| format!("arn:aws:iam::{account}:oidc-provider/{host_path}");

    // Made in account A as in the operator's own: the issuer, STS, this cluster's tag.
    let moto_a = s.moto_in(TEAM_A).await;
    let made = Iam::new(&moto_a)
        .oidc_provider(&in_account(TEAM_A))
        .await
        .unwrap_or_else(|e| panic!("account A's provider: {e}"));
    assert_eq!(made.url, host_path);
    assert_eq!(made.client_ids, vec!["sts.amazonaws.com".to_string()]);
    assert_eq!(
        made.tags.get("podidentity.io/cluster"),
        Some(&s.cluster_name)
    );
    // The role there trusts exactly that provider.
    let role = s
        .roles_made_by(&moto_a)
        .await
        .into_iter()
        .find(|r| r.name == s.role_name(&a, "orders"))
        .expect("the role in account A");
    assert!(
        role.trust_policy.contains(&in_account(TEAM_A)),
        "{}",
        role.trust_policy
    );
    // Account B has nothing placed in it: no provider made there.
    let in_b = Iam::new(&s.moto_in(TEAM_B).await)
        .oidc_provider(&in_account(TEAM_B))
        .await;
    assert!(in_b.is_err(), "a provider in account B: {in_b:?}");
    assert!(
        !data
            .get("accountProviders")
            .is_some_and(|p| p.contains(TEAM_B)),
        "{data:#?}"
    );

    // Idle: the keeper passes every second and writes nothing in any account.
    let mark = s.iam.mark();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let writes = s.iam.writes_since(mark);
    assert!(writes.is_empty(), "idle writes: {writes:?}");

    // Leave the operator's own account without the provider the keeper made (the doctor
    // and oidc scenarios make theirs).
    drop(controller);
    let shared = podidentity_aws::sdk::sdk_config(&podidentity_aws::testing::emulator_settings(
        &s.cluster.moto,
    ))
    .await;
    let _ = aws_sdk_iam::Client::new(&shared)
        .delete_open_id_connect_provider()
        .open_id_connect_provider_arn(in_account(ACCOUNT))
        .send()
        .await;
}

/// The role ARN each pod of `ns` was given (`None`: none), by pod name.
async fn pod_role_arns(s: &Scenario, ns: &str) -> BTreeMap<String, Option<String>> {
    let pods: Api<Pod> = Api::namespaced(s.client(), ns);
    let listed = pods
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    listed
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|pod| {
            let arn = pod.spec.as_ref().and_then(|spec| {
                spec.containers[0]
                    .env
                    .iter()
                    .flatten()
                    .find(|e| e.name == "AWS_ROLE_ARN")
                    .and_then(|e| e.value.clone())
            });
            (pod.metadata.name.unwrap_or_default(), arn)
        })
        .collect()
}

/// Whether the role an ARN names exists, in the account it names.
async fn role_exists(s: &Scenario, arn: &str) -> bool {
    let account = arn.split(':').nth(4).unwrap_or_default();
    let name = arn.rsplit('/').next().unwrap_or_default();
    Iam::new(&s.moto_in(account).await)
        .get_role(name)
        .await
        .is_ok()
}

/// A namespace moved from account A to account B under a running Deployment: the role is
/// made in B, the ServiceAccount switches to it, the pods on A's role are counted and
/// (with `restartPods`) rolled, and A's role goes only once no pod uses it. At every poll,
/// every ARN a pod or the ServiceAccount carries names a role that exists.
pub async fn a_namespace_moved_between_accounts_keeps_every_pod_on_a_role_that_exists(s: Scenario) {
    let mut values = accounts();
    values["allowPodRestarts"] = json!(true);
    let (rendered, _controller) = s.start_controller(values).await;
    let ns = s
        .namespace_labelled("moving", json!({PLACED: "moving"}))
        .await;
    let _webhook = s.start_webhook_for(&rendered, Some(&ns)).await;
    let placed_in = |account: &str| {
        json!({
            "namespaceSelector": {"matchLabels": {PLACED: "moving"}},
            "account": account,
            "allowedResources": ["arn:aws:s3:::${namespace}.*"],
        })
    };
    s.apply_policy("place-moving", placed_in(TEAM_A)).await;
    s.create_service_account(&ns, "web", json!({})).await;
    s.create_binding(
        &ns,
        "web",
        json!({
            "serviceAccountName": "web",
            "permissions": {"statements": [{"actions": ["s3:GetObject"],
                "resources": [format!("arn:aws:s3:::{ns}.data/*")]}]},
        }),
    )
    .await;
    s.wait_ready(&ns, "web").await;
    let name = s.role_name(&ns, "web");
    let arn_in = |account: &str| {
        format!(
            "arn:aws:iam::{account}:role/podidentity/{}/{name}",
            s.cluster_name
        )
    };
    let (in_a, in_b) = (arn_in(TEAM_A), arn_in(TEAM_B));

    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"serviceAccountName": "web",
                    "containers": [{"name": "app", "image": "registry.example/web:1"}]}}},
    }))
    .expect("deployment");
    let deployments: Api<Deployment> = Api::namespaced(s.client(), &ns);
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create the deployment");
    until("two pods on A's role", Duration::from_secs(60), || async {
        let arns = pod_role_arns(&s, &ns).await;
        let on_a = arns
            .values()
            .filter(|a| a.as_deref() == Some(&in_a))
            .count();
        check(arns.len() == 2 && on_a == 2, || format!("{arns:?}"))
    })
    .await;

    // Every ARN a pod or the ServiceAccount shows names a role that exists, at each poll.
    let violations = std::sync::Mutex::new(Vec::<String>::new());
    let audit = || async {
        let mut shown: Vec<(String, String)> = pod_role_arns(&s, &ns)
            .await
            .into_iter()
            .filter_map(|(pod, arn)| Some((format!("pod {pod}"), arn?)))
            .collect();
        if let Some(arn) = s
            .annotations(&ns, "web")
            .await
            .get("eks.amazonaws.com/role-arn")
        {
            shown.push(("ServiceAccount web".into(), arn.clone()));
        }
        for (who, arn) in shown {
            if !role_exists(&s, &arn).await {
                violations
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(format!("{who} names {arn}, which does not exist"));
            }
        }
    };
    let moving = |binding: &podidentity_api::PodIdentityBinding| {
        let status = binding.status.clone().unwrap_or_default();
        let migrating = condition(binding, "Migrating")
            .map(|c| format!("{} {}: {}", c.status, c.reason, c.message))
            .unwrap_or_default();
        (status, migrating)
    };

    // Move the namespace: the platform admin points the policy at account B.
    s.apply_policy("place-moving", placed_in(TEAM_B)).await;
    let waiting = until(
        "the role made in B and A's waiting for 2 pods",
        Duration::from_secs(90),
        || async {
            audit().await;
            let binding = s
                .bindings(&ns)
                .get("web")
                .await
                .map_err(|e| e.to_string())?;
            let (status, migrating) = moving(&binding);
            let recorded = status.account_move.clone().unwrap_or_default();
            let waits = status.role_arn.as_deref() == Some(in_b.as_str())
                && recorded.from_role_arns == vec![in_a.clone()]
                && recorded.pods_remaining == Some(2)
                && migrating.starts_with("True MovingAccount");
            check(waits, || format!("{status:?} / {migrating}")).map(|_| binding)
        },
    )
    .await;
    assert_eq!(
        s.annotations(&ns, "web")
            .await
            .get("eks.amazonaws.com/role-arn"),
        Some(&in_b),
        "the ServiceAccount names B's role"
    );
    assert_eq!(
        condition(&waiting, "Ready").map(|c| c.status.clone()),
        Some("True".into()),
        "Ready in B while A's pods run"
    );
    // Without restartPods nothing rolls, and A's role stays.
    tokio::time::sleep(Duration::from_secs(6)).await;
    audit().await;
    assert!(
        role_exists(&s, &in_a).await,
        "A's role went with pods on it"
    );
    let arns = pod_role_arns(&s, &ns).await;
    assert!(
        arns.values().all(|a| a.as_deref() == Some(&in_a)),
        "{arns:?}"
    );

    // With restartPods the Deployment rolls onto B's role, and A's role goes after.
    s.patch_spec(&ns, "web", json!({"injection": {"restartPods": true}}))
        .await;
    until("A's role retired", Duration::from_secs(120), || async {
        audit().await;
        let binding = s
            .bindings(&ns)
            .get("web")
            .await
            .map_err(|e| e.to_string())?;
        let (status, migrating) = moving(&binding);
        let gone = !role_exists(&s, &in_a).await;
        check(
            gone && status.account_move.is_none() && migrating.is_empty(),
            || format!("A's role gone: {gone}; {status:?} / {migrating}"),
        )
    })
    .await;
    let violations = violations
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    assert!(violations.is_empty(), "{violations:#?}");
    let arns = pod_role_arns(&s, &ns).await;
    assert!(
        !arns.is_empty() && arns.values().all(|a| a.as_deref() == Some(&in_b)),
        "{arns:?}"
    );
    assert!(role_exists(&s, &in_b).await);
    let events = s.events(&ns, "web").await;
    let retired: Vec<String> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("RoleRetired"))
        .filter_map(|e| e.note.clone())
        .collect();
    assert!(
        retired
            .iter()
            .any(|n| n.contains(&in_a) && n.contains("deleted") && n.contains(TEAM_B)),
        "{retired:#?}"
    );
}
