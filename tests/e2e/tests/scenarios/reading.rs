//! Reading the cluster: one binding the operator's types cannot read (a field from a
//! newer CRD revision) gets its own condition and Event while every other binding goes
//! on, and a new webhook still becomes ready; a CRD newer than the binary stops the
//! controller at start; the webhook caches ServiceAccount metadata without managedFields,
//! and looks live at a cached ServiceAccount without a role.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use podidentity_e2e::Scenario;
use podidentity_e2e::chart::OPERATOR_NAMESPACE;
use podidentity_e2e::chart::RELEASE;
use podidentity_e2e::operator::{Operator, Replica};
use podidentity_e2e::scenario::condition;
use podidentity_webhook::identity::Predictor;
use podidentity_webhook::lookup::{CachedLookup, IdentityLookup};
use serde_json::json;

const EFFECT: &str = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/permissions/properties/statements/items/properties/effect/enum";

pub async fn an_unreadable_binding_stops_nothing_else(s: Scenario) {
    let (rendered, mut controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("newer").await;
    // A newer CRD revision allows an effect this operator does not know.
    s.change_crd(|crd| {
        if let Some(values) = crd.pointer_mut(EFFECT).and_then(|v| v.as_array_mut()) {
            values.push(json!("Audit"));
        }
    })
    .await;
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("podidentity.io", "v1alpha1", "PodIdentityBinding"),
        "podidentitybindings",
    );
    let untyped: Api<DynamicObject> = Api::namespaced_with(s.client(), &ns, &resource);
    let newer: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "podidentity.io/v1alpha1",
        "kind": "PodIdentityBinding",
        "metadata": {"name": "newer"},
        "spec": {"serviceAccountName": "audited", "permissions": {"statements": [{"effect": "Audit", "actions": ["s3:*"], "resources": ["*"]}]}},
    }))
    .expect("binding");
    untyped
        .create(&PostParams::default(), &newer)
        .await
        .expect("the newer CRD accepts it");
    s.create_service_account(&ns, "app", json!({})).await;
    s.create_binding(
        &ns,
        "app",
        json!({"serviceAccountName": "app", "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["*"]}]}}),
    )
    .await;
    s.wait_ready(&ns, "app").await;
    let note = s.wait_event(&ns, "newer", "InvalidObject").await;
    assert!(note.contains("Audit"), "{note}");
    let reported = podidentity_e2e::wait::until(
        "the unreadable binding's condition",
        Duration::from_secs(30),
        || {
            let untyped = untyped.clone();
            async move {
                let object = untyped.get("newer").await.map_err(|e| e.to_string())?;
                let ready = object.data["status"]["conditions"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
                    .ok_or_else(|| "no Ready".to_string())?;
                Ok(ready)
            }
        },
    )
    .await;
    assert_eq!(reported["status"], json!("False"));
    assert_eq!(reported["reason"], json!("InvalidObject"));
    assert_eq!(
        controller.readyz().await,
        Some(200),
        "the controller stays ready"
    );

    // A webhook started now lists bindings with the unreadable one among them.
    let mut webhook =
        Operator::webhook(&s.cluster, &rendered, &s.dir, &format!("{}-webhook", s.tag))
            .await
            .expect("webhook");
    webhook.wait_ready(Duration::from_secs(30)).await;

    // A controller built before the newer CRD refuses to start against it.
    s.change_crd(|crd| {
        let next = (podidentity_api::crd::SCHEMA_REVISION + 1).to_string();
        crd["metadata"]["annotations"]["podidentity.io/schema-revision"] = json!(next);
    })
    .await;
    controller.process.kill();
    let mut refused = Operator::controller(
        &s.cluster,
        &rendered,
        &s.dir,
        &Replica::named(&format!("{}-refused", s.tag)),
    )
    .await
    .expect("start");
    let code = refused.wait_exit(Duration::from_secs(30)).await;
    assert_ne!(code, Some(0));
    let log = refused.process.log_tail(20);
    assert!(log.contains("newer than this operator"), "{log}");
    // Still readable binding's status untouched by the refused controller.
    assert!(
        condition(&s.wait_ready(&ns, "app").await, "Ready").is_some_and(|c| c.status == "True")
    );
}

pub async fn the_webhook_cache_holds_metadata_and_looks_again(s: Scenario) {
    let _rendered = s.install(json!({})).await;
    let ns = s.namespace("cache").await;
    // With a field of its own, so the API server keeps managedFields for it.
    s.create_service_account(&ns, "app", json!({"team": "shop"}))
        .await;
    // The webhook's own client: the chart's webhook ServiceAccount and RBAC.
    let kubeconfig = s.dir.join("webhook-lib.kubeconfig");
    s.cluster
        .service_account_kubeconfig(
            OPERATOR_NAMESPACE,
            &format!("{RELEASE}-webhook"),
            &kubeconfig,
        )
        .await
        .expect("token");
    let client = podidentity_e2e::cluster::client_from(&kubeconfig)
        .await
        .expect("client");
    let lookup = Arc::new(podidentity_webhook::lookup::watch_cluster(
        client,
        Duration::from_secs(1),
        Predictor::annotations_only("eks.amazonaws.com"),
    ));
    podidentity_e2e::wait::until("the caches", Duration::from_secs(30), || {
        let lookup = lookup.clone();
        async move { podidentity_e2e::wait::check(lookup.is_ready(), || "not ready".into()) }
    })
    .await;
    let live = s.service_accounts(&ns).get("app").await.expect("account");
    assert!(
        live.metadata.managed_fields.is_some(),
        "the API server keeps managedFields"
    );
    let cached =
        podidentity_e2e::wait::until("the account cached", Duration::from_secs(30), || {
            let lookup = lookup.clone();
            let ns = ns.clone();
            async move {
                lookup
                    .cached_service_account(&ns, "app")
                    .ok_or_else(|| "not yet".to_string())
            }
        })
        .await;
    assert!(
        cached.metadata.managed_fields.is_none(),
        "the cache drops them"
    );

    // The race of the original webhook (#174): the annotation lands after the account was
    // cached, and the pod comes before the watch brings it. A lookup over a cache that is
    // behind (frozen as it was) still finds the role with one live GET.
    let (frozen, mut writer) = kube::runtime::reflector::store();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
    writer.apply_watcher_event(&kube::runtime::watcher::Event::InitApply((*cached).clone()));
    writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
    let no_bindings = std::sync::Arc::new(podidentity_webhook::binding_cache::BindingCache::new());
    no_bindings.apply(kube::runtime::watcher::Event::Init);
    no_bindings.apply(kube::runtime::watcher::Event::InitDone);
    let behind = CachedLookup::new(
        frozen,
        no_bindings,
        Some(s.client()),
        Duration::from_secs(1),
        Predictor::annotations_only("eks.amazonaws.com"),
    );
    let arn = "arn:aws:iam::123456789012:role/made-elsewhere";
    s.service_accounts(&ns)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": arn}}}),
            ),
        )
        .await
        .expect("annotate");
    let found = behind
        .annotations(&ns, "app")
        .await
        .expect("lookup")
        .unwrap_or_default();
    assert_eq!(
        found.get("eks.amazonaws.com/role-arn").map(String::as_str),
        Some(arn)
    );
    assert_eq!(behind.live_gets(), 1);
    drop(writer);
}
