//! Where ServiceAccounts and bindings come from: in-memory watch caches (reflector
//! stores: ServiceAccount metadata without managedFields, and bindings, each read
//! through `DeserializeGuard` so one unreadable binding cannot stop the cache). A
//! ServiceAccount missing from the cache, or cached without a role that no binding
//! covers, costs one live look with a short timeout: a GET of the ServiceAccount and a
//! LIST of its namespace's bindings, memoized per ServiceAccount for a few seconds, since
//! the caches may be behind an annotation or a binding that just landed
//! (amazon-eks-pod-identity-webhook issue #174).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use podidentity_api::PodIdentityBinding;

use podidentity_iam::service_account_owner;

use crate::binding_cache::BindingCache;
use crate::identity::Predictor;

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(
        "live look at ServiceAccount {namespace}/{name} (its GET or its namespace's bindings) timed out after {timeout:?}"
    )]
    Timeout {
        namespace: String,
        name: String,
        timeout: Duration,
    },
    #[error(
        "live look at ServiceAccount {namespace}/{name} (its GET or its namespace's bindings) failed: {source}"
    )]
    Api {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// The annotations that decide a pod's injection (see [`Predictor::effective_annotations`]),
/// or `None` when the ServiceAccount is unknown and no binding covers it.
pub trait IdentityLookup: Send + Sync {
    fn annotations<'a>(
        &'a self,
        namespace: &'a str,
        service_account: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, LookupError>>;

    /// Whether the caches have synced (readiness).
    fn is_ready(&self) -> bool;
}

/// Cache-backed lookup with a single live GET on a ServiceAccount miss.
/// One live look: when it began, and the annotations it saw (`None`: no such
/// ServiceAccount), shared by every admission that asks while it runs.
type Recheck = (
    Instant,
    Arc<tokio::sync::OnceCell<Option<BTreeMap<String, String>>>>,
);

/// A binding as the watch delivers it, readable or not.
pub type WatchedBinding = DeserializeGuard<PodIdentityBinding>;

/// How long a live look at a cached ServiceAccount without a role stands for the next
/// pods of that ServiceAccount (a Deployment's replicas arrive together).
const RECHECK_AFTER: Duration = Duration::from_secs(5);

pub struct CachedLookup {
    service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
    bindings: Arc<BindingCache>,
    live: Option<kube::Client>,
    live_get_timeout: Duration,
    predictor: Predictor,
    ready: Arc<AtomicBool>,
    live_gets: AtomicU64,
    /// Live looks at cached ServiceAccounts without a role, by (namespace, name).
    rechecked: Mutex<HashMap<(String, String), Recheck>>,
}

impl CachedLookup {
    pub fn new(
        service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
        bindings: Arc<BindingCache>,
        live: Option<kube::Client>,
        live_get_timeout: Duration,
        predictor: Predictor,
    ) -> Self {
        let ready = Arc::new(AtomicBool::new(false));
        let (sa_store, flag) = (service_accounts.clone(), ready.clone());
        // Ready once the ServiceAccounts have listed everything once (bindings: below).
        tokio::spawn(async move {
            if sa_store.wait_until_ready().await.is_ok() {
                flag.store(true, Ordering::Release);
            }
        });
        Self {
            service_accounts,
            bindings,
            live,
            live_get_timeout,
            predictor,
            ready,
            live_gets: AtomicU64::new(0),
            rechecked: Mutex::new(HashMap::new()),
        }
    }

    /// The ServiceAccount as the cache holds it (diagnostics: what the webhook sees).
    pub fn cached_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<PartialObjectMeta<ServiceAccount>>> {
        self.service_accounts
            .get(&ObjectRef::new(name).within(namespace))
    }

    /// Live GETs made so far (cache misses, and looks at cached ServiceAccounts without a
    /// role).
    pub fn live_gets(&self) -> u64 {
        self.live_gets.load(Ordering::Relaxed)
    }

    /// The ServiceAccount's annotations from the cache, and whether they came from it;
    /// a miss is looked up live.
    async fn service_account_annotations(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(Option<BTreeMap<String, String>>, bool), LookupError> {
        let key = ObjectRef::new(name).within(namespace);
        if let Some(cached) = self.service_accounts.get(&key) {
            return Ok((
                Some(cached.metadata.annotations.clone().unwrap_or_default()),
                true,
            ));
        }
        Ok((self.live_annotations(namespace, name).await?, false))
    }

    /// One live call about the ServiceAccount `namespace/name`: counted, bounded by the
    /// timeout, its failure named.
    async fn live_call<T>(
        &self,
        namespace: &str,
        name: &str,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, LookupError> {
        self.live_gets.fetch_add(1, Ordering::Relaxed);
        tokio::time::timeout(self.live_get_timeout, call)
            .await
            .map_err(|_| LookupError::Timeout {
                namespace: namespace.into(),
                name: name.into(),
                timeout: self.live_get_timeout,
            })?
            .map_err(|source| LookupError::Api {
                namespace: namespace.into(),
                name: name.into(),
                source,
            })
    }

    /// One live GET of the ServiceAccount's metadata, bounded by the timeout.
    async fn live_annotations(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, LookupError> {
        let Some(client) = &self.live else {
            return Ok(None);
        };
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        let fetched = self
            .live_call(namespace, name, api.get_metadata_opt(name))
            .await?;
        Ok(fetched.map(|sa| sa.metadata.annotations.unwrap_or_default()))
    }

    /// A live look, when the caches say no role: the ServiceAccount (unless `fetched`
    /// already is one) and the bindings of its namespace, at most once per
    /// `RECHECK_AFTER` per ServiceAccount. A failed look keeps what the caches say.
    async fn recheck(
        &self,
        namespace: &str,
        name: &str,
        fetched: Option<Option<BTreeMap<String, String>>>,
    ) -> Option<BTreeMap<String, String>> {
        let key = (namespace.to_string(), name.to_string());
        // The pods of a Deployment arrive together: the first starts the look, the others
        // wait for its answer.
        let look = match self.rechecked.lock() {
            Ok(mut rechecked) => match rechecked.get(&key) {
                Some((at, look)) if at.elapsed() < RECHECK_AFTER => look.clone(),
                _ => {
                    rechecked.retain(|_, (at, _)| at.elapsed() < RECHECK_AFTER);
                    let look = Arc::default();
                    rechecked.insert(key, (Instant::now(), Arc::clone(&look)));
                    look
                }
            },
            Err(_) => Arc::default(),
        };
        look.get_or_init(|| async {
            match self.look_live(namespace, name, fetched).await {
                Ok(seen) => seen,
                Err(err) => {
                    tracing::warn!(error = %err, "live look at a ServiceAccount without a role failed");
                    None
                }
            }
        })
        .await
        .clone()
    }

    async fn look_live(
        &self,
        namespace: &str,
        name: &str,
        fetched: Option<Option<BTreeMap<String, String>>>,
    ) -> Result<Option<BTreeMap<String, String>>, LookupError> {
        // Both at once: a slow API server costs one timeout, not two.
        let own = async {
            match fetched {
                Some(own) => Ok(own),
                None => self.live_annotations(namespace, name).await,
            }
        };
        let bindings = async {
            let (Some(client), true) = (&self.live, self.predictor.predicts()) else {
                return Ok(Vec::new());
            };
            let api: Api<WatchedBinding> = Api::namespaced(client.clone(), namespace);
            let listed = self
                .live_call(namespace, name, api.list(&ListParams::default()))
                .await?;
            Ok(listed.items)
        };
        let (own, bindings) = futures::try_join!(own, bindings)?;
        let owner = service_account_owner(
            bindings.iter().filter_map(|b| b.0.as_ref().ok()),
            namespace,
            name,
        );
        Ok(self
            .predictor
            .effective_annotations(namespace, name, own.as_ref(), owner))
    }
}

impl IdentityLookup for CachedLookup {
    fn annotations<'a>(
        &'a self,
        namespace: &'a str,
        service_account: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, LookupError>> {
        Box::pin(async move {
            let (own, cached) = self
                .service_account_annotations(namespace, service_account)
                .await?;
            // Most ServiceAccounts already carry their role: no need to look at bindings.
            if own
                .as_ref()
                .is_some_and(|annotations| self.predictor.names_role(annotations))
            {
                return Ok(own);
            }
            let covering = self.bindings.covering(namespace, service_account);
            // The same owner the controller picks when several bindings name it.
            let owner = service_account_owner(
                covering.iter().map(|c| &c.binding),
                namespace,
                service_account,
            );
            let prediction = owner.and_then(|owner| {
                covering
                    .iter()
                    .find(|c| std::ptr::eq(&c.binding, owner))
                    .and_then(|c| c.prediction(&self.predictor))
            });
            let effective = self.predictor.effective_annotations_predicted(
                namespace,
                service_account,
                own.as_ref(),
                prediction.as_ref(),
            );
            // No role by the caches: they may be behind an annotation or a binding that
            // just landed (the original webhook's issue #174).
            if self.live.is_some()
                && !effective
                    .as_ref()
                    .is_some_and(|a| self.predictor.names_role(a))
            {
                let fetched = (!cached).then(|| own.clone());
                if let Some(live) = self.recheck(namespace, service_account, fetched).await
                    && self.predictor.names_role(&live)
                {
                    return Ok(Some(live));
                }
            }
            Ok(effective)
        })
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && self.bindings.is_listed()
            && self.predictor.rules_listed()
    }
}

/// Starts the two watches that feed the caches and returns the lookup over them.
pub fn watch_cluster(
    client: kube::Client,
    live_get_timeout: Duration,
    predictor: Predictor,
) -> CachedLookup {
    let (sa_store, sa_writer) = reflector::store();
    let bindings = Arc::new(BindingCache::new());
    let binding_cache = bindings.clone();
    // Metadata is enough (annotations), and much smaller than whole objects.
    let sa_api: Api<PartialObjectMeta<ServiceAccount>> = Api::all(client.clone());
    let binding_api: Api<WatchedBinding> = Api::all(client.clone());
    tokio::spawn(
        reflector::reflector(
            sa_writer,
            // Annotations are all it needs; managedFields and kubectl's applied copy can
            // be most of an object.
            crate::watch::relisting_watcher(sa_api, watcher::Config::default())
                .modify(|sa| podidentity_api::slim_metadata(&mut sa.metadata)),
        )
        .default_backoff()
        .for_each(|event| async move {
            if let Err(err) = event {
                tracing::warn!(error = %err, "ServiceAccount watch failed; retrying");
            }
        }),
    );
    tokio::spawn(
        crate::watch::relisting_watcher(binding_api, watcher::Config::default())
            .default_backoff()
            .for_each(move |event| {
                match event {
                    Ok(event) => binding_cache.apply(event),
                    Err(err) => {
                        tracing::warn!(error = %err, "PodIdentityBinding watch failed; retrying")
                    }
                }
                futures::future::ready(())
            }),
    );
    CachedLookup::new(
        sa_store,
        bindings,
        Some(client),
        live_get_timeout,
        predictor,
    )
}
