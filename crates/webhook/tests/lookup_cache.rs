//! The lookup behind the webhook: watch caches first, one live GET on a ServiceAccount
//! miss (counted by a layer on the client of the real API server, each test in a namespace
//! of its own), a bounded wait when the API server hangs, and roles predicted from cached
//! bindings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Resource;
use kube::api::{Api, PostParams};
use kube::core::error_boundary::InvalidObject;
use kube::core::{DeserializeGuard, ObjectMeta, PartialObjectMeta};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::Event;
use podidentity_api::config::{AwsConfig, OperatorConfig};
use podidentity_api::{PodIdentityBinding, PodIdentityBindingSpec};
use podidentity_webhook::binding_cache::BindingCache;
use podidentity_webhook::identity::Predictor;
use podidentity_webhook::lookup::{CachedLookup, IdentityLookup, LookupError, WatchedBinding};

const ARN: &str = "arn:aws:iam::111122223333:role/orders";

/// The live look's timeout against the real API server: generous, since no test here is
/// about it (the hanging API server's test sets its own).
const LIVE_TIMEOUT: Duration = Duration::from_secs(10);

fn predictor() -> Predictor {
    let operator = OperatorConfig {
        cluster_name: "prod".into(),
        aws: AwsConfig {
            account_id: Some("111122223333".into()),
            ..AwsConfig::default()
        },
        ..OperatorConfig::default()
    };
    Predictor::new(operator, "eks.amazonaws.com")
}

fn metadata(namespace: &str, name: &str, annotations: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        annotations: Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..ObjectMeta::default()
    }
}

/// A ServiceAccount as the metadata watch caches it.
fn cached_sa(
    namespace: &str,
    name: &str,
    annotations: &[(&str, &str)],
) -> PartialObjectMeta<ServiceAccount> {
    PartialObjectMeta {
        metadata: metadata(namespace, name, annotations),
        ..PartialObjectMeta::default()
    }
}

/// A ServiceAccount as the API server holds it.
fn api_sa(namespace: &str, name: &str, annotations: &[(&str, &str)]) -> ServiceAccount {
    ServiceAccount {
        metadata: metadata(namespace, name, annotations),
        ..ServiceAccount::default()
    }
}

fn binding(namespace: &str, name: &str, service_account: &str) -> WatchedBinding {
    let mut binding = PodIdentityBinding::new(
        name,
        PodIdentityBindingSpec {
            service_account_name: service_account.into(),
            ..PodIdentityBindingSpec::default()
        },
    );
    binding.metadata.namespace = Some(namespace.into());
    DeserializeGuard(Ok(binding))
}

/// A binding the webhook's types cannot read (a field from a newer CRD).
fn unreadable(namespace: &str, name: &str) -> WatchedBinding {
    DeserializeGuard(Err(InvalidObject {
        error: "unknown variant `Audit`, expected `Allow` or `Deny`".into(),
        metadata: metadata(namespace, name, &[]),
    }))
}

fn synced<K: kube::Resource + Clone>(writer: &mut Writer<K>, objects: Vec<K>)
where
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    writer.apply_watcher_event(&Event::Init);
    for object in objects {
        writer.apply_watcher_event(&Event::InitApply(object));
    }
    writer.apply_watcher_event(&Event::InitDone);
}

/// A binding cache that has listed `bindings`, as its watch would fill it.
fn listed(cache: &BindingCache, bindings: Vec<WatchedBinding>) {
    cache.apply(Event::Init);
    for binding in bindings {
        cache.apply(Event::InitApply(binding));
    }
    cache.apply(Event::InitDone);
}

/// A real API server (the test control plane) holding a fresh namespace with the
/// ServiceAccounts and bindings a test puts there, and a client that records every
/// request it sends.
struct ApiServer {
    /// The client the lookup is given; its requests are in `requests`.
    client: kube::Client,
    /// The namespace made for this test (the fixtures' "shop").
    namespace: String,
    /// Each request the client sent, as `METHOD path?query`.
    requests: podidentity_test_cluster::Requests,
}

impl ApiServer {
    /// A fresh namespace holding `accounts` (name, annotations) and `bindings` (name,
    /// ServiceAccount); `None` when no control plane runs (the test is skipped).
    async fn with(
        accounts: &[(&str, &[(&str, &str)])],
        bindings: &[(&str, &str)],
    ) -> Option<ApiServer> {
        let admin = podidentity_test_cluster::client().await?;
        let namespace = podidentity_test_cluster::namespace(&admin, "shop").await;
        let service_accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &namespace);
        for (name, annotations) in accounts {
            service_accounts
                .create(
                    &PostParams::default(),
                    &api_sa(&namespace, name, annotations),
                )
                .await
                .unwrap_or_else(|err| panic!("ServiceAccount {namespace}/{name}: {err}"));
        }
        let binding_api: Api<PodIdentityBinding> = Api::namespaced(admin, &namespace);
        for (name, service_account) in bindings {
            let Ok(binding) = binding(&namespace, name, service_account).0 else {
                panic!("a readable binding");
            };
            binding_api
                .create(&PostParams::default(), &binding)
                .await
                .unwrap_or_else(|err| panic!("binding {namespace}/{name}: {err}"));
        }
        let (client, requests) = podidentity_test_cluster::client_recording().await?;
        Some(ApiServer {
            client,
            namespace,
            requests,
        })
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lines()
    }

    /// GETs of one ServiceAccount of the namespace (not lists, not other objects).
    fn service_account_gets(&self) -> usize {
        let prefix = format!(
            "GET {}/",
            ServiceAccount::url_path(&(), Some(&self.namespace))
        );
        self.requests()
            .iter()
            .filter(|r| r.strip_prefix(&prefix).is_some_and(|name| !name.is_empty()))
            .count()
    }

    /// LISTs of the namespace's bindings.
    fn binding_lists(&self) -> usize {
        let list = format!(
            "GET {}",
            PodIdentityBinding::url_path(&(), Some(&self.namespace))
        );
        self.requests()
            .iter()
            .filter(|r| r.split('?').next() == Some(list.as_str()))
            .count()
    }
}

async fn lookup_over(
    cached: Vec<PartialObjectMeta<ServiceAccount>>,
    bindings: Vec<WatchedBinding>,
    client: Option<kube::Client>,
    timeout: Duration,
) -> CachedLookup {
    let (sa_store, mut sa_writer) = reflector::store();
    synced(&mut sa_writer, cached);
    let binding_cache = Arc::new(BindingCache::new());
    listed(&binding_cache, bindings);
    let lookup = CachedLookup::new(sa_store, binding_cache, client, timeout, predictor());
    // The writer must live as long as the store is read (dropping it ends readiness).
    std::mem::forget(sa_writer);
    lookup
}

#[tokio::test]
async fn a_cached_service_account_costs_no_api_call() {
    let Some(server) = ApiServer::with(
        &[("orders", &[("eks.amazonaws.com/role-arn", "stale")])],
        &[],
    )
    .await
    else {
        return;
    };
    let shop = server.namespace.as_str();
    let lookup = lookup_over(
        vec![cached_sa(
            shop,
            "orders",
            &[("eks.amazonaws.com/role-arn", ARN)],
        )],
        vec![],
        Some(server.client.clone()),
        LIVE_TIMEOUT,
    )
    .await;
    let annotations = lookup
        .annotations(shop, "orders")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        annotations
            .and_then(|a| a.get("eks.amazonaws.com/role-arn").cloned())
            .as_deref(),
        Some(ARN)
    );
    assert_eq!(server.requests(), Vec::<String>::new(), "no request at all");
    assert_eq!(lookup.live_gets(), 0);
}

#[tokio::test]
async fn a_cache_miss_costs_exactly_one_live_get() {
    let Some(server) =
        ApiServer::with(&[("late", &[("eks.amazonaws.com/role-arn", ARN)])], &[]).await
    else {
        return;
    };
    let shop = server.namespace.as_str();
    let lookup = lookup_over(vec![], vec![], Some(server.client.clone()), LIVE_TIMEOUT).await;

    let found = lookup
        .annotations(shop, "late")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        found
            .and_then(|a| a.get("eks.amazonaws.com/role-arn").cloned())
            .as_deref(),
        Some(ARN)
    );
    assert_eq!(server.service_account_gets(), 1);
    assert_eq!(
        server.binding_lists(),
        0,
        "the role was found: {:?}",
        server.requests()
    );

    let missing = lookup
        .annotations(shop, "nobody")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(missing, None);
    assert_eq!(
        server.service_account_gets(),
        2,
        "one GET per miss, no retries: {:?}",
        server.requests()
    );
    assert_eq!(
        server.binding_lists(),
        1,
        "and, finding no role, one look at the namespace's bindings: {:?}",
        server.requests()
    );
    assert_eq!(server.requests().len(), 3, "{:?}", server.requests());
    assert_eq!(lookup.live_gets(), 3);
}

#[tokio::test]
async fn a_hanging_api_server_is_given_up_on_after_the_timeout() {
    // An API server that accepts the request and never answers.
    let service = tower::service_fn(|_request: http::Request<kube::client::Body>| async {
        futures::future::pending::<
            Result<
                http::Response<http_body_util::Full<hyper::body::Bytes>>,
                std::convert::Infallible,
            >,
        >()
        .await
    });
    let client = kube::Client::new(service, "default");
    let lookup = lookup_over(vec![], vec![], Some(client), Duration::from_millis(200)).await;
    let started = Instant::now();
    let result = lookup.annotations("shop", "orders").await;
    let waited = started.elapsed();
    assert!(
        matches!(result, Err(LookupError::Timeout { .. })),
        "{result:?}"
    );
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
}

#[tokio::test]
async fn a_cached_account_without_a_role_is_looked_at_live_once_per_few_seconds() {
    // The annotation has landed in the API server; the cache has not seen it yet.
    let Some(server) =
        ApiServer::with(&[("orders", &[("eks.amazonaws.com/role-arn", ARN)])], &[]).await
    else {
        return;
    };
    let shop = server.namespace.as_str();
    let lookup = lookup_over(
        vec![
            cached_sa(shop, "orders", &[]),
            cached_sa(shop, "plain", &[]),
        ],
        vec![],
        Some(server.client.clone()),
        LIVE_TIMEOUT,
    )
    .await;
    // Three pods at once, then one more after their answer.
    let together =
        futures::future::join_all((0..3).map(|_| lookup.annotations(shop, "orders"))).await;
    let after = lookup.annotations(shop, "orders").await;
    for answer in together.into_iter().chain([after]) {
        let annotations = answer
            .unwrap_or_else(|err| panic!("{err}"))
            .unwrap_or_default();
        assert_eq!(
            annotations
                .get("eks.amazonaws.com/role-arn")
                .map(String::as_str),
            Some(ARN),
            "the live answer wins over the stale cache"
        );
    }
    assert_eq!(
        (server.service_account_gets(), server.binding_lists()),
        (1, 1),
        "one look (GET and bindings) stands for a Deployment's pods arriving together: {:?}",
        server.requests()
    );
    // Not in the API server either (deleted meanwhile): the cached answer stands.
    let plain = lookup
        .annotations(shop, "plain")
        .await
        .unwrap_or_else(|err| panic!("{err}"))
        .unwrap_or_default();
    assert!(!plain.contains_key("eks.amazonaws.com/role-arn"));
    assert_eq!(
        (server.service_account_gets(), server.binding_lists()),
        (2, 2),
        "{:?}",
        server.requests()
    );
}

#[tokio::test]
async fn a_cached_binding_predicts_the_role_before_the_annotation_lands() {
    let lookup = lookup_over(
        vec![cached_sa("shop", "orders", &[])],
        vec![
            unreadable("shop", "aaa-newer"),
            binding("shop", "orders-s3", "orders"),
            binding("other", "orders-s3", "orders"),
        ],
        None,
        Duration::from_secs(1),
    )
    .await;
    let annotations: BTreeMap<String, String> = lookup
        .annotations("shop", "orders")
        .await
        .unwrap_or_else(|err| panic!("{err}"))
        .unwrap_or_default();
    assert_eq!(
        annotations
            .get("eks.amazonaws.com/role-arn")
            .map(String::as_str),
        Some("arn:aws:iam::111122223333:role/podidentity/prod/prod-shop.orders-s3")
    );
    // A binding in another namespace never covers this namespace's ServiceAccount.
    let elsewhere = lookup
        .annotations("shop", "payments")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(elsewhere, None);
}

#[tokio::test]
async fn readiness_waits_for_both_caches() {
    let (sa_store, mut sa_writer) = reflector::store::<PartialObjectMeta<ServiceAccount>>();
    let binding_cache = Arc::new(BindingCache::new());
    let lookup = CachedLookup::new(
        sa_store,
        binding_cache.clone(),
        None,
        Duration::from_secs(1),
        predictor(),
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!lookup.is_ready());
    synced(&mut sa_writer, vec![]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!lookup.is_ready(), "one cache is not enough");
    listed(&binding_cache, vec![]);
    for _ in 0..50 {
        if lookup.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(lookup.is_ready());
}

#[tokio::test]
async fn a_binding_the_cache_has_not_seen_yet_still_predicts_the_role() {
    // Created a moment ago: in the API server, not yet in the watch cache.
    let Some(server) = ApiServer::with(&[("orders", &[])], &[("orders-s3", "orders")]).await else {
        return;
    };
    let shop = server.namespace.as_str();
    let lookup = lookup_over(
        vec![cached_sa(shop, "orders", &[])],
        vec![],
        Some(server.client.clone()),
        LIVE_TIMEOUT,
    )
    .await;
    let annotations = lookup
        .annotations(shop, "orders")
        .await
        .unwrap_or_else(|err| panic!("{err}"))
        .unwrap_or_default();
    assert_eq!(
        annotations
            .get("eks.amazonaws.com/role-arn")
            .map(String::as_str),
        Some(
            format!("arn:aws:iam::111122223333:role/podidentity/prod/prod-{shop}.orders-s3")
                .as_str()
        )
    );
    assert_eq!(server.binding_lists(), 1, "{:?}", server.requests());
}
