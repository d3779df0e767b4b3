//! The PodIdentityPolicies and namespace labels bindings are judged by, read from the
//! controller's watches. Without them (tests that call a pass directly) the
//! configuration's guardrails apply alone.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use podidentity_api::PodIdentityPolicy;
use podidentity_api::config::OperatorConfig;
use podidentity_iam::Guardrails;
use podidentity_iam::namespace_policy::NamespacePolicy;

/// A policy as the watch delivers it: readable, or not (it then fails closed).
pub type WatchedPolicy = DeserializeGuard<PodIdentityPolicy>;

/// A namespace's metadata (its labels are what policies select by).
pub type NamespaceMeta = PartialObjectMeta<Namespace>;

pub struct PolicyView {
    base: Guardrails,
    watched: Option<Watched>,
}

struct Watched {
    policies: Store<WatchedPolicy>,
    namespaces: Store<NamespaceMeta>,
}

impl PolicyView {
    pub fn new(config: &OperatorConfig) -> Self {
        Self {
            base: Guardrails::from_config(config),
            watched: None,
        }
    }

    /// Judges by the policies and namespaces these watch caches hold.
    pub fn watching(
        mut self,
        policies: Store<WatchedPolicy>,
        namespaces: Store<NamespaceMeta>,
    ) -> Self {
        self.watched = Some(Watched {
            policies,
            namespaces,
        });
        self
    }

    fn policies(&self) -> Vec<NamespacePolicy> {
        let Some(watched) = &self.watched else {
            return Vec::new();
        };
        NamespacePolicy::read_all(watched.policies.state().iter().map(|p| p.as_ref()))
    }

    /// The labels of one namespace (none when it is not in the cache).
    pub fn labels_of(&self, namespace: &str) -> BTreeMap<String, String> {
        self.watched
            .as_ref()
            .and_then(|w| w.namespaces.get(&ObjectRef::new(namespace)))
            .and_then(|ns| ns.metadata.labels.clone())
            .unwrap_or_default()
    }

    /// The guardrails for one namespace's bindings.
    pub fn for_namespace(&self, namespace: &str) -> Guardrails {
        let labels = BTreeMap::from([(namespace.to_string(), self.labels_of(namespace))]);
        self.base.clone().with_policies(self.policies(), labels)
    }

    /// The guardrails for every namespace at once (the sweep and policy status judge
    /// them all).
    pub fn for_all(&self) -> Guardrails {
        self.base
            .clone()
            .with_policies(self.policies(), self.all_labels())
    }

    /// Every namespace the cache holds, with its labels.
    fn all_labels(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let Some(watched) = &self.watched else {
            return BTreeMap::new();
        };
        watched
            .namespaces
            .state()
            .iter()
            .filter_map(|ns| {
                Some((
                    ns.metadata.name.clone()?,
                    ns.metadata.labels.clone().unwrap_or_default(),
                ))
            })
            .collect()
    }
}
