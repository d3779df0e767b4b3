//! Faults of the control plane: the API server restarted and etcd killed while bindings
//! come and go, watches that come back with `410 Gone` and re-list, and the webhook while
//! the API server is gone. Each ends with what a user would check: every binding Ready or
//! gone, one role per binding and none left over, no finalizer stuck.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use podidentity_api::PodIdentityBinding;
use podidentity_e2e::Scenario;
use podidentity_e2e::control_plane::ControlPlane;
use podidentity_e2e::load;
use podidentity_e2e::operator::{Operator, Replica};
use podidentity_e2e::partition::PartitionProxy;
use podidentity_e2e::scenario::ACCOUNT;
use podidentity_e2e::wait::{check, until};
use serde_json::{Value, json};

fn plane(s: &Scenario) -> &ControlPlane {
    s.cluster
        .plane
        .as_ref()
        .expect("the fault scenarios need the harness's own control plane")
}

/// Calls `call` until the API server answers it (it restarts, etcd is gone): a retry of a
/// call that landed before its answer was lost finds `AlreadyExists` or `NotFound`, which
/// count as done. Returns how many attempts failed on the way.
async fn through_outage<T, F, Fut>(what: &str, mut call: F) -> usize
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut failed = 0;
    loop {
        match call().await {
            Ok(_) => return failed,
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
                return failed;
            }
            Err(err) => {
                failed += 1;
                assert!(Instant::now() < deadline, "{what}: still failing: {err}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

fn binding_spec(account: &str) -> PodIdentityBinding {
    serde_json::from_value(json!({
        "apiVersion": "podidentity.io/v1alpha1",
        "kind": "PodIdentityBinding",
        "metadata": {"name": account},
        "spec": {
            "serviceAccountName": account,
            "permissions": {"statements": [{"actions": ["sqs:ReceiveMessage"], "resources": ["*"]}]},
        },
    }))
    .expect("binding")
}

/// Creates `count` ServiceAccounts and bindings one after another, deleting every third
/// binding soon after it was made, through whatever outage comes; `made` counts the
/// bindings created so far. Returns the names kept and the names deleted, and how many
/// calls the outages failed.
async fn churn(
    client: kube::Client,
    ns: String,
    count: usize,
    made: Arc<AtomicUsize>,
) -> (Vec<String>, Vec<String>, usize) {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let bindings: Api<PodIdentityBinding> = Api::namespaced(client, &ns);
    let (mut kept, mut deleted, mut failed) = (Vec::new(), Vec::new(), 0);
    let (post, delete) = (PostParams::default(), DeleteParams::default());
    for i in 0..count {
        let name = format!("app{i:02}");
        let account: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("account");
        failed += through_outage("create a ServiceAccount", || {
            accounts.create(&post, &account)
        })
        .await;
        let binding = binding_spec(&name);
        failed += through_outage("create a binding", || bindings.create(&post, &binding)).await;
        made.fetch_add(1, Ordering::SeqCst);
        if i % 3 == 2 {
            // Deleted while its first pass may still be going.
            tokio::time::sleep(Duration::from_millis(100 * (i as u64 % 4))).await;
            failed += through_outage("delete a binding", || bindings.delete(&name, &delete)).await;
            deleted.push(name);
        } else {
            kept.push(name);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    (kept, deleted, failed)
}

async fn wait_made(made: &AtomicUsize, at_least: usize) {
    until(
        &format!("{at_least} bindings created"),
        Duration::from_secs(120),
        || async {
            let now = made.load(Ordering::SeqCst);
            check(now >= at_least, || format!("{now} so far"))
        },
    )
    .await;
}

/// The invariants after a fault: the kept bindings Ready with their own role, the
/// ServiceAccounts annotated with it, the deleted bindings gone (no finalizer stuck), and
/// no role under the scenario's path but theirs (none orphaned, none twice).
async fn converged(s: &Scenario, ns: &str, kept: &[String], deleted: &[String]) {
    for name in kept {
        let binding = s.wait_ready(ns, name).await;
        let arn = s.role_arn(ns, name);
        assert_eq!(
            binding.status.and_then(|st| st.role_arn).as_deref(),
            Some(arn.as_str())
        );
        assert_eq!(
            s.annotations(ns, name)
                .await
                .get("eks.amazonaws.com/role-arn"),
            Some(&arn)
        );
    }
    for name in deleted {
        s.wait_gone(ns, name).await;
    }
    let expected: BTreeSet<String> = kept.iter().map(|b| s.role_name(ns, b)).collect();
    until(
        "exactly one role per kept binding",
        Duration::from_secs(60),
        || async {
            let differences = s.roles_differing_from(&expected).await;
            check(differences.is_empty(), || {
                // Each deleted binding whose role is still there, with its history.
                let stories: Vec<String> = deleted
                    .iter()
                    .filter(|b| {
                        let role = s.role_name(ns, b);
                        differences.iter().any(|d| d.contains(&role))
                    })
                    .map(|b| format!("{b}:\n{}", s.story_of(ns, b)))
                    .collect();
                format!("{differences:?}\n{}", stories.join("\n"))
            })
        },
    )
    .await;
    let all: Api<PodIdentityBinding> = s.bindings(ns);
    let left = all.list(&Default::default()).await.expect("list bindings");
    let stuck: Vec<String> = left
        .items
        .iter()
        .filter(|b| b.metadata.deletion_timestamp.is_some())
        .map(|b| b.metadata.name.clone().unwrap_or_default())
        .collect();
    assert!(stuck.is_empty(), "finalizers stuck: {stuck:?}");
    assert_eq!(left.items.len(), kept.len());
}

/// A pod in `namespace` running as `service_account`, as the API server would send it.
fn pod_review(namespace: &str, service_account: &str) -> Vec<u8> {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0b7b1b0e-7c1c-4c55-9f0e-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"generateName": "app-", "namespace": namespace},
                "spec": {
                    "serviceAccountName": service_account,
                    "containers": [{"name": "app", "image": "registry.example/app:1"}],
                },
            },
        },
    });
    serde_json::to_vec(&review).expect("review")
}

/// The webhook's answer for a pod of `service_account`: the role ARN its patch sets, if
/// it patches (`Err` when it did not answer 200).
async fn admitted_role(
    s: &Scenario,
    webhook: &Operator,
    namespace: &str,
    service_account: &str,
) -> Result<Option<String>, String> {
    let https = webhook.https.expect("the webhook serves HTTPS");
    let body = pod_review(namespace, service_account);
    let (status, answer) = load::once(https, &s.cluster.ca_pem, body.into())
        .await
        .map_err(|e| e.0)?;
    if status != 200 {
        return Err(format!("{status}: {answer}"));
    }
    let answer: Value = serde_json::from_str(&answer).map_err(|e| e.to_string())?;
    let response = &answer["response"];
    if response["allowed"] != json!(true) {
        return Err(format!("not allowed: {response}"));
    }
    let Some(patch) = response["patch"].as_str() else {
        return Ok(None);
    };
    let patch = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .map_err(|e| e.to_string())?;
    let patch: Value = serde_json::from_slice(&patch).map_err(|e| e.to_string())?;
    let text = patch.to_string();
    let arn = text
        .split('"')
        .find(|part| part.starts_with("arn:aws:iam::"))
        .map(String::from);
    Ok(arn)
}

pub async fn restarts_of_the_api_server_and_etcd_lose_and_duplicate_nothing(s: Scenario) {
    let plane = plane(&s);
    let (rendered, mut controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("faults").await;
    let webhook = s.start_webhook_for(&rendered, Some(&ns)).await;
    let made = Arc::new(AtomicUsize::new(0));
    let creating = tokio::spawn(churn(s.client(), ns.clone(), 50, made.clone()));

    wait_made(&made, 15).await;
    plane
        .restart_apiserver(&s.client())
        .await
        .expect("restart the API server");
    wait_made(&made, 32).await;
    plane.restart_etcd(&s.client()).await.expect("restart etcd");
    let (kept, deleted, failed) = creating.await.expect("the churn");
    eprintln!(
        "faults: {} bindings kept, {} deleted, {failed} calls failed by the outages",
        kept.len(),
        deleted.len()
    );
    converged(&s, &ns, &kept, &deleted).await;

    // Nothing written twice: one CreateRole per kept role, none for a role it deleted
    // without making, and the controller still the process it was.
    for name in &kept {
        let role = s.role_name(&ns, name);
        let creates = s
            .calls_for(&role)
            .iter()
            .filter(|a| a.as_str() == "CreateRole")
            .count();
        assert_eq!(creates, 1, "{role} created once");
    }
    assert!(
        controller.process.running(),
        "the controller lived through both"
    );

    // The webhook's watches came back: a ServiceAccount annotated after the restarts is
    // served to the API server's own admission of a pod.
    let arn = format!("arn:aws:iam::{ACCOUNT}:role/after-the-faults");
    s.create_service_account(&ns, "late", json!({"eks.amazonaws.com/role-arn": arn}))
        .await;
    let pods: Api<Pod> = Api::namespaced(s.client(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "late"},
        "spec": {"serviceAccountName": "late", "containers": [{"name": "app", "image": "registry.example/app:1"}]},
    }))
    .expect("pod");
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create a pod");
    let env: Vec<String> = created
        .spec
        .iter()
        .flat_map(|spec| &spec.containers)
        .flat_map(|c| c.env.iter().flatten())
        .map(|e| format!("{}={}", e.name, e.value.clone().unwrap_or_default()))
        .collect();
    assert!(
        env.contains(&format!("AWS_ROLE_ARN={arn}")),
        "the webhook mutated the pod: {env:?}"
    );
    drop(webhook);
}

pub async fn changes_while_the_watches_were_down_are_acted_on_after_the_relist(s: Scenario) {
    let plane = plane(&s);
    let rendered = s.install(json!({})).await;
    let proxy = PartitionProxy::start(&s.cluster.url)
        .await
        .expect("a proxy in front of the API server");
    let mut replica = Replica::named(&format!("{}-controller", s.tag));
    replica.api_server = Some(proxy.url.clone());
    let mut controller = s.controller(&rendered, &replica).await;
    controller.wait_ready(Duration::from_secs(60)).await;

    let team = format!("{}-team", s.tag);
    let by_policy = s
        .namespace_labelled("relist-policy", json!({"team": team}))
        .await;
    let by_label = s.namespace("relist-label").await;
    let policy = s
        .apply_policy(
            "relist",
            json!({"namespaceSelector": {"matchLabels": {"team": team}}, "allowedActions": ["s3:*", "sqs:*"]}),
        )
        .await;
    for ns in [&by_policy, &by_label] {
        s.create_service_account(ns, "app", json!({})).await;
        s.create_binding(
            ns,
            "app",
            json!({"serviceAccountName": "app", "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["*"]}]}}),
        )
        .await;
    }
    for ns in [&by_policy, &by_label] {
        s.wait_ready(ns, "app").await;
    }

    // The API server gone for the controller; meanwhile the policy stops allowing S3 and
    // the other namespace gets the label the policy selects.
    proxy.down();
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.apply_policy(
        "relist",
        json!({"namespaceSelector": {"matchLabels": {"team": team}}, "allowedActions": ["sqs:*"]}),
    )
    .await;
    s.label_namespace(&by_label, json!({"team": team})).await;
    // A restart empties the API server's watch cache: watches resumed from before it are
    // answered 410 Gone, and the controller re-lists.
    plane
        .restart_apiserver(&s.client())
        .await
        .expect("restart the API server");
    let healed = s.audit_now();
    proxy.heal();

    for ns in [&by_policy, &by_label] {
        let binding = s
            .wait_condition(ns, "app", "Ready", "False", Some("GuardrailViolation"))
            .await;
        let message = podidentity_e2e::scenario::condition(&binding, "Ready")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        assert!(
            message.contains(&format!("PodIdentityPolicy {policy} (allowedActions)")),
            "{ns}: {message}"
        );
    }
    // It re-listed (the changes came as a listing, not as watch events), and found them
    // there.
    let log = controller.process.log_tail(400);
    for found in [
        "PodIdentityPolicy changed while the watch was down",
        "namespace labels changed while the watch was down",
    ] {
        assert!(log.contains(found), "{found}:\n{log}");
    }
    let cluster_audit = s.cluster.audit.as_ref().expect("the audit log");
    let listed: BTreeSet<String> = cluster_audit
        .since(healed)
        .into_iter()
        .filter(|e| e.user == controller.user && e.verb == "list")
        .filter_map(|e| e.resource)
        .collect();
    for resource in ["podidentitypolicies", "namespaces"] {
        assert!(
            listed.contains(resource),
            "the controller re-listed {resource}: {listed:?}"
        );
    }
}

pub async fn the_webhook_answers_from_its_cache_while_the_api_server_is_down(s: Scenario) {
    let plane = plane(&s);
    let rendered = s.install(json!({})).await;
    let ns = s.namespace("outage").await;
    let known = format!("arn:aws:iam::{ACCOUNT}:role/known-before");
    s.create_service_account(&ns, "known", json!({"eks.amazonaws.com/role-arn": known}))
        .await;
    s.create_service_account(&ns, "later", json!({})).await;
    // A binding the controller has not acted on yet: the webhook predicts its role.
    s.create_service_account(&ns, "bound", json!({})).await;
    s.create_binding(
        &ns,
        "bound",
        json!({"serviceAccountName": "bound", "permissions": {"statements": [{"actions": ["sqs:ReceiveMessage"], "resources": ["*"]}]}}),
    )
    .await;
    let predicted = s.role_arn(&ns, "bound");
    let proxy = PartitionProxy::start(&s.cluster.url)
        .await
        .expect("a proxy in front of the API server");
    let mut webhook = Operator::webhook_via(
        &s.cluster,
        &rendered,
        &s.dir,
        &format!("{}-webhook", s.tag),
        &proxy.url,
    )
    .await
    .expect("start the webhook");
    webhook.wait_ready(Duration::from_secs(60)).await;
    until("the webhook's caches", Duration::from_secs(30), || async {
        let role = admitted_role(&s, &webhook, &ns, "bound").await?;
        check(role.as_deref() == Some(predicted.as_str()), || {
            format!("{role:?}")
        })
    })
    .await;

    // The API server down (killed): every admission still answered, from the caches.
    let killed = plane.stop_apiserver();
    for _ in 0..10 {
        assert_eq!(
            admitted_role(&s, &webhook, &ns, "known").await,
            Ok(Some(known.clone()))
        );
        assert_eq!(
            admitted_role(&s, &webhook, &ns, "bound").await,
            Ok(Some(predicted.clone()))
        );
    }
    // Without a role by the caches: allowed unchanged, after one bounded live look.
    let started = Instant::now();
    assert_eq!(admitted_role(&s, &webhook, &ns, "later").await, Ok(None));
    eprintln!(
        "faults: an admission without a role while the API server is down took {:?}",
        started.elapsed()
    );
    plane
        .start_apiserver(killed, &s.client())
        .await
        .expect("start the API server again");

    // Gone for the webhook alone while an account is annotated: seen once it is back.
    proxy.down();
    let later = format!("arn:aws:iam::{ACCOUNT}:role/annotated-during-the-outage");
    s.service_accounts(&ns)
        .patch(
            "later",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": later}}}),
            ),
        )
        .await
        .expect("annotate");
    assert_eq!(
        admitted_role(&s, &webhook, &ns, "known").await,
        Ok(Some(known.clone())),
        "still answering while cut off"
    );
    proxy.heal();
    until(
        "the annotation made during the outage",
        Duration::from_secs(60),
        || async {
            let role = admitted_role(&s, &webhook, &ns, "later").await?;
            check(role.as_deref() == Some(later.as_str()), || {
                format!("{role:?}")
            })
        },
    )
    .await;
    // From its cache, not a live look: cut off again, it still knows.
    proxy.down();
    assert_eq!(
        admitted_role(&s, &webhook, &ns, "later").await,
        Ok(Some(later.clone()))
    );
    proxy.heal();
    assert!(webhook.process.running());
}
