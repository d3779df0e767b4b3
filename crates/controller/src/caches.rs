//! The watch caches the wings read through `Context`, each with a live twin for tests
//! that run without a watch: the bindings, and the operator's own Secrets.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use podidentity_api::PodIdentityBinding;

use crate::error::Error;
use crate::process::check::Check;

/// A binding as the watch delivers it: readable, or not (a field from a newer CRD, a
/// status edited by hand) without failing the whole watch.
pub type Watched = DeserializeGuard<PodIdentityBinding>;

/// A binding looked up in the cache.
pub enum Lookup {
    Found(Arc<Watched>),
    Absent,
    /// No cache (tests): nothing can be ruled out.
    NoCache,
}

/// Bindings from the controller's watch cache, or (tests without a watch) live lists.
#[derive(Clone)]
pub enum Bindings {
    Cached(Store<Watched>),
    Live,
}

impl Bindings {
    /// The bindings of one namespace (readable or not).
    pub async fn in_namespace(
        &self,
        client: &Client,
        namespace: &str,
    ) -> Result<Vec<Arc<Watched>>, kube::Error> {
        match self {
            // Only the namespace's bindings are copied out of the cache: a pass costs the
            // same at 10,000 bindings as at ten.
            Bindings::Cached(store) => {
                Ok(store.state_filter(|b| b.meta().namespace.as_deref() == Some(namespace)))
            }
            Bindings::Live => {
                let api: Api<Watched> = Api::namespaced(client.clone(), namespace);
                Ok(api
                    .list(&ListParams::default())
                    .await?
                    .items
                    .into_iter()
                    .map(Arc::new)
                    .collect())
            }
        }
    }

    /// The cached binding `namespace/name`.
    pub fn cached(&self, namespace: &str, name: &str) -> Lookup {
        match self {
            Bindings::Cached(store) => match store.get(&ObjectRef::new(name).within(namespace)) {
                Some(binding) => Lookup::Found(binding),
                None => Lookup::Absent,
            },
            Bindings::Live => Lookup::NoCache,
        }
    }
}

/// The label on every Secret the operator writes; its Secret watch selects on it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "podidentity-operator");

pub fn selector() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

/// Where the operator's Secrets are read from: its watch (the controller), or live reads
/// (tests without a watch).
#[derive(Clone)]
pub enum Secrets {
    Cached { store: Store<Secret>, listed: Check },
    Live,
}

impl Secrets {
    /// The operator's Secret of that name, if it is one of the operator's.
    pub async fn get(
        &self,
        api: &Api<Secret>,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Secret>, Error> {
        match self {
            Secrets::Cached { store, listed } => {
                let mut listed = listed.clone();
                listed.wait().await;
                Ok(store
                    .get(&ObjectRef::new(name).within(namespace))
                    .map(|s| s.as_ref().clone()))
            }
            Secrets::Live => Ok(api.get_opt(name).await?.filter(|s| {
                s.labels().get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
            })),
        }
    }

    /// The names of the binding's own Secrets in its namespace.
    pub async fn owned_by_binding(
        &self,
        api: &Api<Secret>,
        namespace: &str,
        binding: &PodIdentityBinding,
    ) -> Result<Vec<String>, Error> {
        match self {
            // Only the namespace's Secrets are looked at, and only names copied out.
            Secrets::Cached { store, .. } => Ok(store
                .state_filter(|s| {
                    s.namespace().as_deref() == Some(namespace) && owned_by(s, binding)
                })
                .iter()
                .map(|s| s.name_any())
                .collect()),
            Secrets::Live => Ok(api
                .list(&ListParams::default().labels(&selector()))
                .await?
                .items
                .iter()
                .filter(|s| owned_by(s, binding))
                .map(ResourceExt::name_any)
                .collect()),
        }
    }
}

/// Whether the binding is the Secret's controller owner.
pub fn owned_by(secret: &Secret, binding: &PodIdentityBinding) -> bool {
    let uid = binding.uid();
    secret
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
}
