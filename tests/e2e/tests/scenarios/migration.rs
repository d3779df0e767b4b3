//! A Deployment's ServiceAccount moved IRSA → Pod Identity → IRSA on a Ready binding.
//! While it moves, every poll reads the role's trust, the pods and the association and
//! checks that each running pod's credentials are admitted by some trust statement: a
//! pod whose SDKs would take IRSA's web identity needs the OIDC statement for its
//! ServiceAccount, one that would take Pod Identity's container credentials needs the
//! `pods.eks.amazonaws.com` statement and the association.
//!
//! No EKS Pod Identity webhook runs here: the pod template carries the two variables it
//! would give (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`).
//! While the ServiceAccount is annotated, our webhook adds IRSA's, which the SDKs prefer.
//! The Deployment uses `Recreate`: with no kubelet, new pods never become available, so a
//! rolling update would never take the old ones away.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use podidentity_api::{Mechanism, PodIdentityBinding};
use podidentity_e2e::Scenario;
use podidentity_e2e::scenario::condition;
use podidentity_e2e::wait::{check, until};
use serde_json::{Value, json};

const FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";

/// What a pod's SDKs would use, by the variables in its (first) container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Uses {
    Irsa,
    PodIdentity,
    Nothing,
}

fn uses(pod: &Pod, role_arn: &str) -> Uses {
    let env = |name: &str| {
        pod.spec.as_ref()?.containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    let web_identity =
        env("AWS_ROLE_ARN").is_some() && env("AWS_WEB_IDENTITY_TOKEN_FILE").is_some();
    if web_identity {
        assert_eq!(env("AWS_ROLE_ARN").as_deref(), Some(role_arn));
        Uses::Irsa
    } else if env(FULL_URI).is_some() {
        Uses::PodIdentity
    } else {
        Uses::Nothing
    }
}

/// Which mechanisms the role's trust admits for `namespace/account`.
#[derive(Clone, Copy, Debug, Default)]
struct Trusts {
    irsa: bool,
    pod_identity: bool,
}

async fn trusts(s: &Scenario, role: &str, namespace: &str, account: &str) -> (Trusts, Value) {
    let Some(state) = s.iam_role(role).await else {
        return (Trusts::default(), Value::Null);
    };
    let trust: Value = serde_json::from_str(&state.trust_policy).expect("the trust is JSON");
    let subject = format!("system:serviceaccount:{namespace}:{account}");
    let mut found = Trusts::default();
    for statement in trust["Statement"].as_array().into_iter().flatten() {
        let equals = statement["Condition"]["StringEquals"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if statement["Principal"]["Federated"].is_string()
            && statement["Action"] == json!("sts:AssumeRoleWithWebIdentity")
            && equals
                .iter()
                .any(|(key, value)| key.ends_with(":sub") && value == &json!(subject))
        {
            found.irsa = true;
        }
        if statement["Principal"]["Service"] == json!("pods.eks.amazonaws.com")
            && statement["Action"] == json!(["sts:AssumeRole", "sts:TagSession"])
            && equals
                .get("aws:RequestTag/kubernetes-service-account")
                .is_none_or(|v| v == &json!(account))
        {
            found.pod_identity = true;
        }
    }
    (found, trust)
}

async fn pods(s: &Scenario, ns: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(s.client(), ns)
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list pods")
        .items
}

/// Reads trust and association, then the pods, then trust and association again: a pod
/// is unadmitted only if neither read admits what it uses (the operator may widen or
/// narrow between reads, but narrows only once no pod uses what it takes away).
async fn unadmitted(s: &Scenario, ns: &str, role: &str, role_arn: &str) -> Vec<String> {
    let (before, _) = trusts(s, role, ns, "web").await;
    let associated_before = s.association(ns, "web").await.is_some();
    let listed = pods(s, ns).await;
    let (after, trust) = trusts(s, role, ns, "web").await;
    let associated_after = s.association(ns, "web").await.is_some();
    let mut wrong = Vec::new();
    for pod in &listed {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let admitted = match uses(pod, role_arn) {
            Uses::Irsa => before.irsa || after.irsa,
            Uses::PodIdentity => {
                (before.pod_identity || after.pod_identity)
                    && (associated_before || associated_after)
            }
            Uses::Nothing => true,
        };
        if !admitted {
            wrong.push(format!(
                "{name} uses {:?}; trust {trust}; associated {associated_before}/{associated_after}",
                uses(pod, role_arn)
            ));
        }
    }
    wrong
}

/// What the pods use, by count.
async fn mix(s: &Scenario, ns: &str, role_arn: &str) -> Vec<(Uses, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for pod in pods(s, ns).await {
        *counts.entry(uses(&pod, role_arn)).or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

/// One line for what the status shows of a migration.
fn step_of(binding: &PodIdentityBinding) -> String {
    let status = binding.status.clone().unwrap_or_default();
    let migrating = condition(binding, "Migrating")
        .map(|c| format!("Migrating={} {}: {}", c.status, c.reason, c.message));
    format!(
        "mechanism {:?}, migration {:?}, {}",
        status.mechanism.map(|m| m.to_string()),
        status
            .migration
            .map(|m| (m.from.to_string(), m.to.to_string(), m.pods_remaining)),
        migrating.unwrap_or_else(|| "no Migrating condition".into())
    )
}

/// Polls until the binding satisfies `done`, checking every pod at every poll; returns
/// the steps the status showed, in order, without repeats.
async fn watch_until(
    s: &Scenario,
    ns: &str,
    (role, role_arn): (&str, &str),
    what: &str,
    done: impl Fn(&PodIdentityBinding) -> bool,
) -> Vec<String> {
    // Locked between awaits only: the polls run one at a time.
    let seen = std::sync::Mutex::new((Vec::<String>::new(), Vec::<String>::new()));
    let api = s.bindings(ns);
    until(what, Duration::from_secs(120), || async {
        let wrong = unadmitted(s, ns, role, role_arn).await;
        let binding = api.get("web").await.map_err(|e| e.to_string())?;
        let step = step_of(&binding);
        {
            let mut seen = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            seen.1.extend(wrong);
            if seen.0.last() != Some(&step) {
                seen.0.push(step.clone());
            }
        }
        let current = binding
            .status
            .as_ref()
            .is_some_and(|s| s.observed_generation == binding.metadata.generation);
        check(current && done(&binding), || step)
    })
    .await;
    let (steps, violations) = seen
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    assert!(
        violations.is_empty(),
        "pods whose credentials no trust statement admitted: {violations:#?}\nsteps: {steps:#?}"
    );
    steps
}

/// The migration to `mechanism` is over: recorded, no Migrating condition, Ready.
fn migrated_to(mechanism: Mechanism) -> impl Fn(&PodIdentityBinding) -> bool {
    move |binding| {
        let status = binding.status.clone().unwrap_or_default();
        status.mechanism == Some(mechanism)
            && status.migration.is_none()
            && condition(binding, "Migrating").is_none()
            && condition(binding, "Ready").is_some_and(|c| c.status == "True")
    }
}

/// Waiting for `n` pods of the old mechanism, as the status shows it.
fn waiting_for(n: i64) -> impl Fn(&PodIdentityBinding) -> bool {
    move |binding| {
        let status = binding.status.clone().unwrap_or_default();
        status.migration.and_then(|m| m.pods_remaining) == Some(n)
            && condition(binding, "Migrating")
                .is_some_and(|c| c.status == "True" && c.reason == "WaitingForPods")
            && condition(binding, "Ready").is_some_and(|c| c.status == "True")
    }
}

fn tally(calls: &[podidentity_e2e::iam_proxy::Call]) -> String {
    let writes: Vec<&str> = calls
        .iter()
        .filter(|c| !c.is_read())
        .map(|c| c.action.as_str())
        .collect();
    let reads = calls.len() - writes.len();
    format!("{} writes {writes:?}, {reads} reads", writes.len())
}

fn event_reasons(events: &[k8s_openapi::api::events::v1::Event]) -> Vec<String> {
    events.iter().filter_map(|e| e.reason.clone()).collect()
}

pub async fn a_deployment_moves_to_pod_identity_and_back_with_trust_for_every_pod(s: Scenario) {
    s.eks_cluster().await;
    let (rendered, _controller) = s.start_controller(json!({"allowPodRestarts": true})).await;
    let ns = s.namespace("migrate").await;
    let _webhook = s.start_webhook_for(&rendered, Some(&ns)).await;
    s.create_service_account(&ns, "web", json!({})).await;
    s.create_binding(
        &ns,
        "web",
        json!({
            "serviceAccountName": "web",
            "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::web/*"]}]},
        }),
    )
    .await;
    s.wait_ready(&ns, "web").await;
    let (role, arn) = (s.role_name(&ns, "web"), s.role_arn(&ns, "web"));

    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"serviceAccountName": "web", "containers": [{"name": "app",
                    "image": "registry.example/web:1",
                    "env": [{"name": FULL_URI, "value": "http://169.254.170.23/v1/credentials"},
                            {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                             "value": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"}]}]}}},
    }))
    .expect("deployment");
    let deployments: Api<Deployment> = Api::namespaced(s.client(), &ns);
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create the deployment");
    until("two pods on IRSA", Duration::from_secs(60), || async {
        let now = mix(&s, &ns, &arn).await;
        check(now == vec![(Uses::Irsa, 2)], || format!("{now:?}"))
    })
    .await;
    let (irsa_only, _) = trusts(&s, &role, &ns, "web").await;
    assert!(irsa_only.irsa && !irsa_only.pod_identity);

    // IRSA → Pod Identity, first without restarts: the migration waits for the two pods.
    let before = s.iam.calls().len();
    let names = (role.as_str(), arn.as_str());
    s.patch_spec(
        &ns,
        "web",
        json!({"identity": {"mechanism": "PodIdentity"}}),
    )
    .await;
    let mut steps = watch_until(&s, &ns, names, "waiting for the IRSA pods", waiting_for(2)).await;
    let (both, document) = trusts(&s, &role, &ns, "web").await;
    assert!(
        both.irsa && both.pod_identity,
        "both trusted while waiting: {document}"
    );
    assert!(
        s.association(&ns, "web").await.is_some(),
        "delivered: the association"
    );
    assert!(
        !s.annotations(&ns, "web")
            .await
            .contains_key("eks.amazonaws.com/role-arn"),
        "the IRSA annotation is gone from the ServiceAccount"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let still = s.bindings(&ns).get("web").await.expect("binding");
    assert!(waiting_for(2)(&still), "still waiting: {}", step_of(&still));
    // With restartPods the Deployment is rolled once and the migration finishes.
    s.patch_spec(&ns, "web", json!({"injection": {"restartPods": true}}))
        .await;
    steps.extend(
        watch_until(
            &s,
            &ns,
            names,
            "the migration to Pod Identity",
            migrated_to(Mechanism::PodIdentity),
        )
        .await,
    );
    let calls = s.iam.calls();
    let to_pod_identity = tally(&calls[before..]);
    let (trust, document) = trusts(&s, &role, &ns, "web").await;
    assert!(
        trust.pod_identity && !trust.irsa,
        "Pod Identity's trust only: {document}"
    );
    let association = s.association(&ns, "web").await.expect("the association");
    assert_eq!(association.options.role_arn, arn);
    assert!(
        !s.annotations(&ns, "web")
            .await
            .contains_key("eks.amazonaws.com/role-arn"),
        "the IRSA annotation is gone"
    );
    assert_eq!(mix(&s, &ns, &arn).await, vec![(Uses::PodIdentity, 2)]);
    let template = deployments
        .get("web")
        .await
        .expect("deployment")
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    assert_eq!(
        template.get("podidentity.io/restarted-for-role"),
        Some(&format!("{arn} (PodIdentity)")),
        "rolled once for the move"
    );
    let events = s.events(&ns, "web").await;
    let reasons = event_reasons(&events);
    for wanted in [
        "MigrationStarted",
        "WaitingForPods",
        "PodsRestarted",
        "MigrationComplete",
    ] {
        assert!(reasons.iter().any(|r| r == wanted), "{wanted}: {reasons:?}");
    }
    let waiting: Vec<String> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("WaitingForPods"))
        .filter_map(|e| e.note.clone())
        .collect();
    assert!(
        waiting
            .iter()
            .any(|n| n.contains("2 running pods still use IRSA")
                && n.contains("set spec.injection.restartPods: true")),
        "{waiting:#?}"
    );
    let restarted: Vec<String> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("PodsRestarted"))
        .filter_map(|e| e.note.clone())
        .collect();
    assert!(
        restarted
            .iter()
            .any(|n| n.contains("still use IRSA") && n.contains("Restarted: Deployment/web")),
        "{restarted:#?}"
    );

    // Pod Identity → IRSA, with restarts on: the pods on Pod Identity are rolled at once.
    let before = s.iam.calls().len();
    s.patch_spec(&ns, "web", json!({"identity": {"mechanism": null}}))
        .await;
    let back_steps = watch_until(
        &s,
        &ns,
        names,
        "the migration to IRSA",
        migrated_to(Mechanism::Irsa),
    )
    .await;
    let calls = s.iam.calls();
    let to_irsa = tally(&calls[before..]);
    let events = s.events(&ns, "web").await;
    let completions = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("MigrationComplete"))
        .count();
    assert_eq!(completions, 2, "{:?}", event_reasons(&events));
    let waiting_back = events
        .iter()
        .filter_map(|e| e.note.clone())
        .find(|note| note.contains("still use PodIdentity"))
        .unwrap_or_default();
    assert!(
        waiting_back.contains("Restarted: Deployment/web"),
        "{waiting_back}: {:?}",
        event_reasons(&events)
    );
    let (trust, document) = trusts(&s, &role, &ns, "web").await;
    assert!(
        trust.irsa && !trust.pod_identity,
        "IRSA's trust only: {document}"
    );
    assert!(
        s.association(&ns, "web").await.is_none(),
        "the association goes once no pod uses it"
    );
    assert_eq!(
        s.annotations(&ns, "web")
            .await
            .get("eks.amazonaws.com/role-arn"),
        Some(&arn)
    );
    assert_eq!(mix(&s, &ns, &arn).await, vec![(Uses::Irsa, 2)]);
    let status = s
        .bindings(&ns)
        .get("web")
        .await
        .expect("binding")
        .status
        .unwrap_or_default();
    assert_eq!(status.association, None);

    // Idle: nothing written.
    let idle_from = s.iam.calls().len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle: Vec<String> = s.iam.calls()[idle_from..]
        .iter()
        .filter(|c| !c.is_read())
        .map(|c| c.action.clone())
        .collect();
    assert!(idle.is_empty(), "idle writes: {idle:?}");

    let seen: BTreeSet<String> = event_reasons(&s.events(&ns, "web").await)
        .into_iter()
        .collect();
    eprintln!("    migration IRSA → Pod Identity: {to_pod_identity}");
    eprintln!("    steps: {steps:#?}");
    eprintln!("    migration Pod Identity → IRSA: {to_irsa}");
    eprintln!("    steps: {back_steps:#?}");
    eprintln!("    events: {seen:?}");
    for event in s.events(&ns, "web").await {
        eprintln!(
            "      {} {}: {}",
            event.type_.unwrap_or_default(),
            event.reason.unwrap_or_default(),
            event.note.unwrap_or_default()
        );
    }
}
