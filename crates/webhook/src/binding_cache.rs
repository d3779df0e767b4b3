//! The webhook's cache of PodIdentityBindings, indexed by the ServiceAccount each one
//! names, with each binding's predicted annotations worked out at most once per version.
//! A pod's lookup costs one hash lookup whatever the number of bindings; a scan of every
//! binding (and a fresh prediction) per admission grew with the cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use kube::runtime::watcher::Event;
use podidentity_api::PodIdentityBinding;

use crate::identity::Predictor;
use crate::lookup::WatchedBinding;

/// (namespace, name).
type Key = (String, String);

/// What a binding predicts, and the version of the policies it was worked out at.
type Prediction = (u64, Option<BTreeMap<String, String>>);

/// One cached binding and, once asked for, what it predicts.
#[derive(Debug)]
pub struct CachedBinding {
    pub binding: PodIdentityBinding,
    prediction: Mutex<Option<Prediction>>,
}

impl CachedBinding {
    fn new(mut binding: PodIdentityBinding) -> Self {
        podidentity_api::slim_metadata(&mut binding.metadata);
        Self {
            binding,
            prediction: Mutex::new(None),
        }
    }

    /// The annotations the controller will write for this binding (see
    /// [`Predictor::predict`]), worked out on first use and again only when the policies
    /// or namespace labels have changed since.
    pub fn prediction(&self, predictor: &Predictor) -> Option<BTreeMap<String, String>> {
        let version = predictor.rules_version();
        let mut cached = self.prediction.lock().ok()?;
        if let Some((at, prediction)) = cached.as_ref()
            && *at == version
        {
            return prediction.clone();
        }
        let prediction = self.predict(predictor);
        *cached = Some((version, prediction.clone()));
        prediction
    }

    fn predict(&self, predictor: &Predictor) -> Option<BTreeMap<String, String>> {
        let namespace = self.binding.metadata.namespace.as_deref()?;
        self.binding.metadata.name.as_deref()?;
        predictor.predict(
            podidentity_iam::BindingRef::of(namespace, &self.binding),
            &self.binding.spec,
        )
    }

    /// Whether a prediction is held (tests of the cache).
    #[cfg(test)]
    fn has_prediction(&self) -> bool {
        self.prediction.lock().is_ok_and(|p| p.is_some())
    }
}

#[derive(Default)]
struct Index {
    /// Bindings by (namespace, ServiceAccount name).
    by_account: HashMap<Key, Vec<Arc<CachedBinding>>>,
    /// The ServiceAccount each binding names, by (namespace, binding name).
    account_of: HashMap<Key, Key>,
}

impl Index {
    fn insert(&mut self, binding: PodIdentityBinding) {
        let (Some(namespace), Some(name)) = (
            binding.metadata.namespace.clone(),
            binding.metadata.name.clone(),
        ) else {
            return;
        };
        let key = (namespace.clone(), name);
        self.remove(&key);
        let account = (namespace, binding.spec.service_account_name.clone());
        self.by_account
            .entry(account.clone())
            .or_default()
            .push(Arc::new(CachedBinding::new(binding)));
        self.account_of.insert(key, account);
    }

    fn remove(&mut self, key: &Key) {
        let Some(account) = self.account_of.remove(key) else {
            return;
        };
        if let Some(list) = self.by_account.get_mut(&account) {
            list.retain(|b| b.binding.metadata.name.as_deref() != Some(key.1.as_str()));
            if list.is_empty() {
                self.by_account.remove(&account);
            }
        }
    }
}

/// Readable bindings by ServiceAccount, fed by a watch. Unreadable bindings (a newer
/// schema, a hand-edited status) are left out: they predict nothing, as before.
#[derive(Default)]
pub struct BindingCache {
    index: RwLock<Index>,
    /// The next index, filled while the watch (re)lists.
    relisting: RwLock<Option<Index>>,
    listed: AtomicBool,
}

fn key_of(binding: &WatchedBinding) -> Option<Key> {
    let metadata = match &binding.0 {
        Ok(binding) => &binding.metadata,
        Err(invalid) => &invalid.metadata,
    };
    Some((metadata.namespace.clone()?, metadata.name.clone()?))
}

impl BindingCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one watch event, as a reflector store would (taking the binding, not a
    /// copy of it).
    pub fn apply(&self, event: Event<WatchedBinding>) {
        match event {
            Event::Init => {
                if let Ok(mut next) = self.relisting.write() {
                    *next = Some(Index::default());
                }
            }
            Event::InitApply(binding) => {
                if let (Ok(mut next), Ok(readable)) = (self.relisting.write(), binding.0)
                    && let Some(next) = next.as_mut()
                {
                    next.insert(readable);
                }
            }
            Event::InitDone => {
                let next = self.relisting.write().ok().and_then(|mut next| next.take());
                if let (Some(next), Ok(mut index)) = (next, self.index.write()) {
                    *index = next;
                }
                self.listed.store(true, Ordering::Release);
            }
            Event::Apply(binding) => {
                let key = key_of(&binding);
                if let Ok(mut index) = self.index.write() {
                    match (binding.0, key) {
                        (Ok(readable), _) => index.insert(readable),
                        (Err(_), Some(key)) => index.remove(&key),
                        (Err(_), None) => {}
                    }
                }
            }
            Event::Delete(binding) => {
                if let (Some(key), Ok(mut index)) = (key_of(&binding), self.index.write()) {
                    index.remove(&key);
                }
            }
        }
    }

    /// Whether the watch has listed every binding once.
    pub fn is_listed(&self) -> bool {
        self.listed.load(Ordering::Acquire)
    }

    /// The bindings in `namespace` that name `service_account`.
    pub fn covering(&self, namespace: &str, service_account: &str) -> Vec<Arc<CachedBinding>> {
        let Ok(index) = self.index.read() else {
            return Vec::new();
        };
        // Borrowed lookup would need a custom key type; two short Strings are cheap beside
        // the admission itself.
        index
            .by_account
            .get(&(namespace.to_string(), service_account.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// How many bindings it holds.
    pub fn len(&self) -> usize {
        self.index
            .read()
            .map(|index| index.account_of.len())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::DeserializeGuard;
    use kube::core::error_boundary::InvalidObject;
    use podidentity_api::PodIdentityBindingSpec;

    fn binding(name: &str, account: &str) -> WatchedBinding {
        let mut b = PodIdentityBinding::new(
            name,
            PodIdentityBindingSpec {
                service_account_name: account.into(),
                ..PodIdentityBindingSpec::default()
            },
        );
        b.metadata.namespace = Some("shop".into());
        DeserializeGuard(Ok(b))
    }

    fn names(cache: &BindingCache, account: &str) -> Vec<String> {
        let mut names: Vec<String> = cache
            .covering("shop", account)
            .iter()
            .filter_map(|c| c.binding.metadata.name.clone())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn bindings_follow_the_service_account_they_name() {
        let cache = BindingCache::new();
        cache.apply(Event::Init);
        cache.apply(Event::InitApply(binding("a", "orders")));
        assert!(!cache.is_listed());
        assert!(
            names(&cache, "orders").is_empty(),
            "not swapped in before InitDone"
        );
        cache.apply(Event::InitDone);
        assert!(cache.is_listed());
        assert_eq!(names(&cache, "orders"), ["a"]);

        cache.apply(Event::Apply(binding("b", "orders")));
        assert_eq!(names(&cache, "orders"), ["a", "b"]);
        // A binding that now names another ServiceAccount leaves the old one.
        cache.apply(Event::Apply(binding("a", "payments")));
        assert_eq!(names(&cache, "orders"), ["b"]);
        assert_eq!(names(&cache, "payments"), ["a"]);
        cache.apply(Event::Delete(binding("b", "orders")));
        assert!(names(&cache, "orders").is_empty());
        assert!(cache.covering("other", "payments").is_empty());
        assert_eq!(cache.len(), 1);

        // A binding that became unreadable predicts nothing any more.
        let metadata = kube::core::ObjectMeta {
            name: Some("a".into()),
            namespace: Some("shop".into()),
            ..kube::core::ObjectMeta::default()
        };
        cache.apply(Event::Apply(DeserializeGuard(Err(InvalidObject {
            error: "unknown field".into(),
            metadata,
        }))));
        assert!(names(&cache, "payments").is_empty());

        // A relist replaces everything.
        cache.apply(Event::Apply(binding("c", "orders")));
        cache.apply(Event::Init);
        cache.apply(Event::InitApply(binding("d", "orders")));
        cache.apply(Event::InitDone);
        assert_eq!(names(&cache, "orders"), ["d"]);
    }

    #[test]
    fn a_cached_binding_drops_managed_fields_and_the_applied_copy() {
        let mut watched = binding("a", "orders");
        if let Ok(b) = &mut watched.0 {
            b.metadata.managed_fields = Some(vec![Default::default()]);
            b.metadata.annotations = Some(
                [
                    (podidentity_api::LAST_APPLIED.to_string(), "{}".to_string()),
                    ("team".to_string(), "payments".to_string()),
                ]
                .into(),
            );
        }
        let cache = BindingCache::new();
        cache.apply(Event::Apply(watched));
        let cached = cache.covering("shop", "orders");
        let [one] = cached.as_slice() else {
            panic!("one binding: {cached:?}")
        };
        assert!(one.binding.metadata.managed_fields.is_none());
        assert_eq!(
            one.binding.metadata.annotations,
            Some([("team".to_string(), "payments".to_string())].into())
        );
    }

    #[test]
    fn a_prediction_is_worked_out_once_per_version() {
        let predictor = Predictor::new(crate::test_operator(), "eks.amazonaws.com");
        let cache = BindingCache::new();
        cache.apply(Event::Apply(binding("a", "orders")));
        let first = cache.covering("shop", "orders");
        let predicted = first[0].prediction(&predictor);
        let PodIdentityBinding { spec, .. } = &first[0].binding;
        assert_eq!(
            predicted,
            predictor.predict(podidentity_iam::BindingRef::new("shop", "a"), spec)
        );
        assert!(
            predicted
                .as_ref()
                .and_then(|p| p.get("eks.amazonaws.com/role-arn"))
                .is_some_and(|arn| arn.starts_with("arn:aws:iam::111122223333:role/"))
        );
        // The same entry answers again without working it out anew.
        let again = cache.covering("shop", "orders");
        assert!(Arc::ptr_eq(&first[0], &again[0]));
        assert!(again[0].has_prediction());
        // A new version is a new entry with its own prediction.
        cache.apply(Event::Apply(binding("a", "orders")));
        let updated = cache.covering("shop", "orders");
        assert!(!Arc::ptr_eq(&first[0], &updated[0]));
        assert!(!updated[0].has_prediction());
    }

    /// Pods of a Pod Identity binding's ServiceAccount get no IRSA variables from the
    /// prediction: the SDKs would prefer them over Pod Identity's credentials.
    #[test]
    fn a_pod_identity_binding_predicts_no_irsa_role() {
        let mut operator = crate::test_operator();
        operator.aws.region = Some("eu-west-1".into());
        let predictor = Predictor::new(operator, "eks.amazonaws.com");
        let mut watched = binding("a", "orders");
        if let Ok(b) = &mut watched.0 {
            b.spec.identity.mechanism = Some(podidentity_api::Mechanism::PodIdentity);
        }
        let cache = BindingCache::new();
        cache.apply(Event::Apply(watched));
        let covering = cache.covering("shop", "orders");
        let predicted = covering[0].prediction(&predictor);
        assert_eq!(predicted, Some(BTreeMap::new()));
        let effective =
            predictor.effective_annotations_predicted("shop", "orders", None, predicted.as_ref());
        assert!(
            !effective.as_ref().is_some_and(|a| predictor.names_role(a)),
            "{effective:?}"
        );
    }

    /// A role made before revision 3 keeps its legacy name, and pods get that ARN, not
    /// the one the controller would derive for a new binding.
    #[test]
    fn a_binding_whose_status_records_the_legacy_name_predicts_that_role() {
        let predictor = Predictor::new(crate::test_operator(), "eks.amazonaws.com");
        let arn_of = |recorded: Option<&str>| {
            let mut watched = binding("a", "orders");
            if let Ok(b) = &mut watched.0 {
                b.status = Some(podidentity_api::PodIdentityBindingStatus {
                    role_name: recorded.map(str::to_string),
                    ..Default::default()
                });
            }
            let cache = BindingCache::new();
            cache.apply(Event::Apply(watched));
            let covering = cache.covering("shop", "orders");
            covering[0]
                .prediction(&predictor)
                .and_then(|p| p.get("eks.amazonaws.com/role-arn").cloned())
        };
        let role = |name: &str| format!("arn:aws:iam::111122223333:role/podidentity/prod/{name}");
        assert_eq!(arn_of(Some("prod-shop-a")), Some(role("prod-shop-a")));
        assert_eq!(arn_of(None), Some(role("prod-shop.a")));
        assert_eq!(arn_of(Some("something-else")), Some(role("prod-shop.a")));
    }
}
