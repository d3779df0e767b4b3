//! What Ready promises beyond the role: with `verifyAssumable`, that STS exchanged a real
//! token of the ServiceAccount for the role (and a refused exchange keeps Ready false);
//! and pods that started before their ServiceAccount was annotated, counted, named and
//! restarted once.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use podidentity_e2e::Scenario;
use podidentity_e2e::iam_proxy::Fault;
use podidentity_e2e::scenario::condition;
use podidentity_e2e::wait::check;
use serde_json::{Value, json};

fn spec(account: &str) -> Value {
    json!({
        "serviceAccountName": account,
        "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["*"]}]},
    })
}

/// STS exchanges the proxy answered for `role_arn` (faulted or not).
fn exchanges(s: &Scenario, role_arn: &str) -> usize {
    s.iam
        .calls()
        .iter()
        .filter(|c| c.action == "AssumeRoleWithWebIdentity")
        .filter(|c| c.params.get("RoleArn").map(String::as_str) == Some(role_arn))
        .count()
}

/// TokenRequests the operator made for `namespace/account`, per the audit log.
fn token_requests(s: &Scenario, user: &str, namespace: &str, account: &str) -> usize {
    s.writes_by(user, s.audit_mark)
        .iter()
        .filter(|e| {
            e.subresource.as_deref() == Some("token")
                && e.namespace.as_deref() == Some(namespace)
                && e.name.as_deref() == Some(account)
        })
        .count()
}

pub async fn ready_only_after_sts_exchanged_a_token(s: Scenario) {
    let (_rendered, controller) = s.start_controller(json!({"verifyAssumable": true})).await;
    let ns = s.namespace("gate").await;

    // Assumable: one TokenRequest and one exchange, then nothing more while idle.
    s.create_service_account(&ns, "app", json!({})).await;
    s.create_binding(&ns, "app", spec("app")).await;
    let ready = s.wait_ready(&ns, "app").await;
    let assumable = condition(&ready, "RoleAssumable").expect("RoleAssumable");
    assert_eq!(
        (&*assumable.status, &*assumable.reason),
        ("True", "Assumed")
    );
    let arn = s.role_arn(&ns, "app");
    assert_eq!(exchanges(&s, &arn), 1, "one AssumeRoleWithWebIdentity");
    assert_eq!(
        token_requests(&s, &controller.user, &ns, "app"),
        1,
        "one TokenRequest"
    );
    // A pass that changes nothing in IAM (a label) asks STS nothing.
    s.bindings(&ns)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .expect("label the binding");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(exchanges(&s, &arn), 1, "no exchange without a role change");

    // STS refuses (scripted: moto accepts any token): Ready stays False, retried.
    s.iam
        .inject("AssumeRoleWithWebIdentity", Fault::AccessDenied, 1000);
    s.create_service_account(&ns, "refused", json!({})).await;
    s.create_binding(&ns, "refused", spec("refused")).await;
    let refused = s
        .wait_condition(
            &ns,
            "refused",
            "RoleAssumable",
            "False",
            Some("NotAssumable"),
        )
        .await;
    let why = condition(&refused, "RoleAssumable").expect("RoleAssumable");
    assert_eq!(&*why.reason, "NotAssumable");
    assert!(why.message.contains("doctor"), "{}", why.message);
    assert_eq!(
        condition(&refused, "Ready").map(|c| (c.status.to_string(), c.reason.to_string())),
        Some(("False".into(), "NotAssumable".into()))
    );
    let refused_arn = s.role_arn(&ns, "refused");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let binding = s.bindings(&ns).get("refused").await.expect("binding");
    assert_eq!(
        condition(&binding, "Ready").map(|c| c.status.to_string()),
        Some("False".into()),
        "still not Ready while STS refuses"
    );
    let tries = exchanges(&s, &refused_arn);
    assert!(
        (2..=4).contains(&tries),
        "retried with backoff: {tries} exchanges in ~8 s"
    );

    // STS lets it in: Ready follows within the backoff.
    s.iam.clear_faults();
    let ready = s.wait_ready(&ns, "refused").await;
    assert_eq!(
        condition(&ready, "RoleAssumable").map(|c| c.status.to_string()),
        Some("True".into())
    );
}

async fn create_deployment(s: &Scenario, ns: &str, name: &str, account: &str) {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"serviceAccountName": account,
                    "containers": [{"name": "app", "image": "registry.example/app:1"}]}}},
    }))
    .expect("deployment");
    Api::<Deployment>::namespaced(s.client(), ns)
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create the deployment");
}

async fn pods_of(s: &Scenario, ns: &str, label: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(s.client(), ns)
        .list(&ListParams::default().labels(label))
        .await
        .expect("list pods")
        .items
}

fn role_arn_env(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "AWS_ROLE_ARN")
        .and_then(|e| e.value.clone())
}

pub async fn pods_that_started_early_get_one_rollout(s: Scenario) {
    let (rendered, _controller) = s.start_controller(json!({"allowPodRestarts": true})).await;
    let ns = s.namespace("early").await;
    let _webhook = s.start_webhook_for(&rendered, Some(&ns)).await;

    // Pods first (kube-controller-manager makes them; no binding yet, so no role), and a
    // bare pod beside them.
    s.create_service_account(&ns, "web", json!({})).await;
    create_deployment(&s, &ns, "web", "web").await;
    let bare: Pod = serde_json::from_value(
        json!({"metadata": {"name": "bare", "labels": {"app": "bare"}},
        "spec": {"serviceAccountName": "web", "containers": [{"name": "app", "image": "x"}]}}),
    )
    .expect("pod");
    Api::<Pod>::namespaced(s.client(), &ns)
        .create(&PostParams::default(), &bare)
        .await
        .expect("create the bare pod");
    podidentity_e2e::wait::until("the deployment's pods", Duration::from_secs(30), || async {
        let pods = pods_of(&s, &ns, "app=web").await;
        check(pods.len() == 2, || format!("{} pods", pods.len()))
    })
    .await;
    let early: BTreeSet<String> = pods_of(&s, &ns, "app=web")
        .await
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();

    let mut with_restarts = spec("web");
    with_restarts["injection"] = json!({"restartPods": true});
    s.create_binding(&ns, "web", with_restarts).await;
    s.wait_ready(&ns, "web").await;
    let arn = s.role_arn(&ns, "web");
    let note = s.wait_event(&ns, "web", "PodsNeedRestart").await;
    assert!(
        note.contains("Deployment/web") && note.contains("bare"),
        "{note}"
    );
    for pod in &early {
        assert!(note.contains(pod.as_str()), "{pod} named: {note}");
    }
    let deployments: Api<Deployment> = Api::namespaced(s.client(), &ns);
    let restarted = deployments.get("web").await.expect("deployment");
    let template = restarted
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    assert_eq!(
        template.get("podidentity.io/restarted-for-role"),
        Some(&arn)
    );
    assert!(template.contains_key("kubectl.kubernetes.io/restartedAt"));

    // The rollout's new pods come through the webhook with the role.
    podidentity_e2e::wait::until("a pod of the rollout", Duration::from_secs(30), || async {
        let pods = pods_of(&s, &ns, "app=web").await;
        let new = pods
            .iter()
            .find(|p| !early.contains(p.metadata.name.as_deref().unwrap_or_default()));
        check(
            new.is_some_and(|p| role_arn_env(p).as_deref() == Some(arn.as_str())),
            || format!("{} pods, new one: {:?}", pods.len(), new.map(role_arn_env)),
        )
    })
    .await;

    // More passes (the old pods linger: no kubelet makes the new ones available) restart
    // nothing again: one rollout, one new ReplicaSet; the bare pod is never deleted.
    for round in 0..3 {
        s.bindings(&ns)
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"round": round.to_string()}}})),
            )
            .await
            .expect("touch the binding");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let sets = Api::<ReplicaSet>::namespaced(s.client(), &ns)
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("replica sets");
    assert_eq!(sets.items.len(), 2, "one rollout, not two");
    let after = deployments.get("web").await.expect("deployment");
    assert_eq!(after.metadata.generation, restarted.metadata.generation);
    assert_eq!(
        pods_of(&s, &ns, "app=bare").await.len(),
        1,
        "a bare pod is never deleted"
    );
    let binding = s.bindings(&ns).get("web").await.expect("binding");
    let counted = binding.status.and_then(|s| s.pods_needing_restart);
    assert_eq!(
        counted,
        Some(3),
        "two early pods of the Deployment and the bare one"
    );
}
