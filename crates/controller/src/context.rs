//! Everything a reconcile needs, built once and shared.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use podidentity_api::PodIdentityBinding;
use podidentity_api::conditions::{MAX_EVENT_NOTE, shortened};
use podidentity_api::config::OperatorConfig;
use podidentity_aws::api::IamApi;

use crate::binding::Watched;
use crate::binding::conditions::Assessment;
use crate::binding::managed_policies::ManagedPolicyDocuments;
use crate::binding::secret::Secrets;
use crate::policy::view::{NamespaceMeta, PolicyView, WatchedPolicy};
use crate::process::health::Check;

pub struct Context {
    pub client: Client,
    pub iam: Arc<dyn IamApi>,
    pub config: OperatorConfig,
    /// The guardrails per namespace: the configuration's and its PodIdentityPolicies'.
    pub policies: PolicyView,
    /// Managed policy documents, judged before a role gets them.
    pub managed_policies: ManagedPolicyDocuments,
    /// One recorder for the process (it deduplicates and aggregates events).
    pub recorder: Recorder,
    /// Where bindings are read from for the ServiceAccount ownership rule.
    bindings: Bindings,
    /// Where the operator's credentials Secrets are read from.
    pub secrets: Secrets,
    /// Credentials Secrets this process created ("namespace/name" → binding uid), for the
    /// moment before its watch brings them.
    created_secrets: Mutex<HashMap<String, String>>,
    /// Failed passes per binding since its last success: the backoff exponent.
    failures: Mutex<HashMap<ObjectRef<PodIdentityBinding>, u32>>,
    /// What this process last made IAM hold, per binding uid.
    applied: Mutex<HashMap<String, Applied>>,
    /// What stopped a binding's role for good (a conflict, a permanent IAM error), per
    /// uid: IAM is not asked again for that generation until the re-check.
    blocked: Mutex<HashMap<String, Blocked>>,
    /// The status this process last wrote per binding uid, and the resourceVersion it
    /// wrote over: a pass from a cache still at that version skips the same write.
    status_writes: Mutex<HashMap<String, OwnWrite>>,
    /// Bindings the drift sweep found out of line (by uid): their next pass reads the role
    /// and converges it, whatever their status says.
    drifted: Mutex<HashSet<String>>,
    /// Bindings waiting on others of their namespace (the owner of their ServiceAccount, or
    /// older bindings holding the namespace's quota), by namespace: any change to a binding
    /// of that namespace wakes them.
    waiting: Mutex<HashMap<String, HashSet<ObjectRef<PodIdentityBinding>>>>,
    /// The quota's verdicts on siblings, each judged once per change.
    pub sibling_verdicts: crate::binding::SiblingVerdicts,
}

/// Bindings from the controller's watch cache, or (tests without a watch) live lists.
enum Bindings {
    Cached(Store<Watched>),
    Live,
}

/// A role this process made or converged for a binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub generation: Option<i64>,
    /// Of the desired role that was applied.
    pub fingerprint: u64,
    pub role: RoleFacts,
    /// Managed policies of the spec that IAM does not have (tried once per generation):
    /// the binding is stalled on them, and the drift sweep does not count them as drift.
    pub missing_policies: Vec<String>,
    /// When IAM is asked again whether the missing policies exist now (reads only).
    pub missing_recheck_at: Option<std::time::Instant>,
}

/// What stopped one generation of a binding's role, until a change or the re-check.
#[derive(Clone, Debug)]
pub struct Blocked {
    pub generation: Option<i64>,
    pub fingerprint: u64,
    /// What the status says meanwhile.
    pub assessment: Assessment,
    /// When IAM is asked again (the conflicting role may have gone, a permission may have
    /// been granted).
    pub recheck_at: std::time::Instant,
}

/// A status write of this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnWrite {
    /// The binding's resourceVersion the status was computed from.
    pub over: String,
    /// The write reported an object the operator could not read (`InvalidObject`).
    pub unreadable: bool,
}

/// The role as IAM named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleFacts {
    pub name: String,
    pub arn: String,
    pub id: String,
}

/// A digest of a value's JSON (a desired role, a status), to tell whether it is what this
/// process applied or wrote.
pub fn fingerprint(value: &impl serde::Serialize) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(value)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

impl Context {
    pub fn new(client: Client, iam: Arc<dyn IamApi>, config: OperatorConfig) -> Self {
        let policies = PolicyView::new(&config);
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: podidentity_api::FIELD_MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Self {
            client,
            iam,
            config,
            policies,
            managed_policies: ManagedPolicyDocuments::default(),
            recorder,
            bindings: Bindings::Live,
            secrets: Secrets::Live,
            created_secrets: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            applied: Mutex::new(HashMap::new()),
            status_writes: Mutex::new(HashMap::new()),
            blocked: Mutex::new(HashMap::new()),
            drifted: Mutex::new(HashSet::new()),
            waiting: Mutex::new(HashMap::new()),
            sibling_verdicts: Default::default(),
        }
    }

    /// Reads bindings from the controller's watch cache instead of listing them.
    pub fn with_bindings_cache(mut self, store: Store<Watched>) -> Self {
        self.bindings = Bindings::Cached(store);
        self
    }

    /// Judges bindings by the policies and namespace labels of these watch caches.
    pub fn with_policy_caches(
        mut self,
        policies: Store<WatchedPolicy>,
        namespaces: Store<NamespaceMeta>,
    ) -> Self {
        self.policies = self.policies.watching(policies, namespaces);
        self
    }

    /// Reads the operator's Secrets from its watch instead of live.
    pub fn with_secrets_cache(mut self, store: Store<Secret>, listed: Check) -> Self {
        self.secrets = Secrets::Cached { store, listed };
        self
    }

    pub fn remember_secret(&self, namespace: &str, name: &str, binding: &PodIdentityBinding) {
        if let Ok(mut made) = self.created_secrets.lock() {
            made.insert(
                format!("{namespace}/{name}"),
                binding.uid().unwrap_or_default(),
            );
        }
    }

    /// Whether this process created that Secret for that binding.
    pub fn made_secret(&self, namespace: &str, name: &str, binding: &PodIdentityBinding) -> bool {
        self.created_secrets
            .lock()
            .is_ok_and(|made| made.get(&format!("{namespace}/{name}")) == binding.uid().as_ref())
    }

    /// Whether the short form may have made a binding `namespace/name`: false only when
    /// the watch cache holds none of that name labelled as the short form's (without a
    /// cache, always true). A binding a user made under that name is not the short form's
    /// to take back, so it is no reason to look.
    pub fn short_form_binding_may_exist(&self, namespace: &str, name: &str) -> bool {
        match &self.bindings {
            Bindings::Cached(store) => store
                .get(&ObjectRef::new(name).within(namespace))
                .is_some_and(|binding| {
                    crate::binding::short_form::labelled_as_made(binding.meta())
                }),
            Bindings::Live => true,
        }
    }

    /// The bindings of one namespace (readable or not).
    pub async fn bindings_in(&self, namespace: &str) -> Result<Vec<Arc<Watched>>, kube::Error> {
        match &self.bindings {
            // Only the namespace's bindings are copied out of the cache: a pass costs the
            // same at 10,000 bindings as at ten.
            Bindings::Cached(store) => {
                Ok(store.state_filter(|b| b.meta().namespace.as_deref() == Some(namespace)))
            }
            Bindings::Live => {
                let api: Api<Watched> = Api::namespaced(self.client.clone(), namespace);
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

    /// Publishes an Event on the binding; a failure to publish is logged, never fatal.
    pub async fn event(
        &self,
        binding: &PodIdentityBinding,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        self.event_on(&binding.object_ref(&()), type_, reason, note)
            .await;
    }

    /// Publishes an Event on any object; a failure to publish is logged, never fatal.
    pub async fn event_on(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(shortened(note, MAX_EVENT_NOTE)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(error = %err, reason, "could not publish an Event");
        }
    }

    /// Exponential backoff per binding (5s doubling, at most 5 minutes, jittered).
    pub fn backoff(&self, binding: &ObjectRef<PodIdentityBinding>) -> Duration {
        let attempt = self.failures.lock().map(|mut f| {
            let n = f.entry(binding.clone()).or_default();
            *n += 1;
            *n
        });
        let attempt = attempt.unwrap_or(1).min(7);
        let base = Duration::from_secs(5) * 2u32.pow(attempt - 1);
        let base = base.min(Duration::from_secs(300));
        base + jitter(base / 5)
    }

    /// A successful pass resets the backoff.
    pub fn succeeded(&self, binding: &ObjectRef<PodIdentityBinding>) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(binding);
        }
    }

    /// What this process last applied for a binding.
    pub fn applied(&self, uid: &str) -> Option<Applied> {
        self.applied.lock().ok()?.get(uid).cloned()
    }

    pub fn remember_applied(&self, uid: &str, applied: Applied) {
        if let Ok(mut map) = self.applied.lock() {
            map.insert(uid.to_string(), applied);
        }
    }

    /// Forgets a binding's role (deleted, or it must be looked at again).
    pub fn forget(&self, uid: &str) {
        if let Ok(mut map) = self.applied.lock() {
            map.remove(uid);
        }
    }

    pub fn blocked(&self, uid: &str) -> Option<Blocked> {
        self.blocked.lock().ok()?.get(uid).cloned()
    }

    pub fn remember_blocked(&self, uid: &str, blocked: Option<Blocked>) {
        if let Ok(mut map) = self.blocked.lock() {
            match blocked {
                Some(blocked) => map.insert(uid.to_string(), blocked),
                None => map.remove(uid),
            };
        }
    }

    /// The last status write of this process for a binding.
    pub fn own_status_write(&self, uid: &str) -> Option<OwnWrite> {
        self.status_writes.lock().ok()?.get(uid).cloned()
    }

    pub fn remember_status_write(&self, uid: &str, write: OwnWrite) {
        if let Ok(mut map) = self.status_writes.lock() {
            map.insert(uid.to_string(), write);
        }
    }

    /// Forgets everything about a binding that is gone.
    pub fn forget_binding(&self, uid: &str) {
        self.forget(uid);
        self.remember_blocked(uid, None);
        if let Ok(mut map) = self.status_writes.lock() {
            map.remove(uid);
        }
        if let Ok(mut set) = self.drifted.lock() {
            set.remove(uid);
        }
        if let Ok(mut made) = self.created_secrets.lock() {
            made.retain(|_, owner| owner != uid);
        }
    }

    /// The sweep found this binding's role out of line (or gone).
    pub fn mark_drifted(&self, uid: &str) {
        self.forget(uid);
        if let Ok(mut set) = self.drifted.lock() {
            set.insert(uid.to_string());
        }
    }

    /// Whether the sweep flagged this binding; clears the flag.
    pub fn take_drifted(&self, uid: &str) -> bool {
        self.drifted.lock().is_ok_and(|mut set| set.remove(uid))
    }

    /// Records whether a binding waits on others of its namespace (its ServiceAccount's
    /// owner, or the quota).
    pub fn set_waiting(&self, binding: &ObjectRef<PodIdentityBinding>, waiting: bool) {
        let Some(namespace) = binding.namespace.clone() else {
            return;
        };
        if let Ok(mut map) = self.waiting.lock() {
            let set = map.entry(namespace.clone()).or_default();
            if waiting {
                set.insert(binding.clone());
            } else {
                set.remove(binding);
                if set.is_empty() {
                    map.remove(&namespace);
                }
            }
        }
    }

    /// The bindings of `namespace` waiting on another, except `changed` itself.
    pub fn waiting_in(
        &self,
        namespace: &str,
        changed: &ObjectRef<PodIdentityBinding>,
    ) -> Vec<ObjectRef<PodIdentityBinding>> {
        self.waiting
            .lock()
            .ok()
            .and_then(|map| map.get(namespace).cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|b| b != changed)
            .collect()
    }
}

/// A cheap pseudo-random duration below `max` (spreads retries; no need for a CSPRNG).
pub fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let max_millis = max.as_millis().max(1) as u64;
    Duration::from_millis(u64::from(nanos) % max_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::BoxFuture;
    use podidentity_aws::api::{IamRequest, IamResponse};
    use podidentity_aws::error::{AwsError, ErrorKind};

    struct NoIam;

    impl IamApi for NoIam {
        fn call(&self, _: IamRequest) -> BoxFuture<'_, Result<IamResponse, AwsError>> {
            Box::pin(async { Err(AwsError::new(ErrorKind::Other, "none", "no IAM here")) })
        }
    }

    fn binding(name: &str, uid: &str) -> PodIdentityBinding {
        let mut binding = PodIdentityBinding::new(name, Default::default());
        binding.metadata.namespace = Some("shop".into());
        binding.metadata.uid = Some(uid.into());
        binding
    }

    #[tokio::test]
    async fn a_deleted_binding_leaves_nothing_behind_and_its_neighbours_keep_theirs() {
        let client = kube_fake_client::ClientBuilder::new()
            .build()
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        let ctx = Context::new(client, Arc::new(NoIam), OperatorConfig::default());
        let (gone, kept) = (binding("gone", "uid-gone"), binding("kept", "uid-kept"));
        for (b, uid) in [(&gone, "uid-gone"), (&kept, "uid-kept")] {
            ctx.remember_secret("shop", &format!("{}-creds", b.name_any()), b);
            ctx.mark_drifted(uid);
            ctx.remember_status_write(
                uid,
                OwnWrite {
                    over: "1".into(),
                    unreadable: false,
                },
            );
        }

        ctx.forget_binding("uid-gone");

        assert!(!ctx.made_secret("shop", "gone-creds", &gone));
        assert!(!ctx.take_drifted("uid-gone"));
        assert!(ctx.own_status_write("uid-gone").is_none());
        assert!(ctx.made_secret("shop", "kept-creds", &kept));
        assert!(ctx.own_status_write("uid-kept").is_some());
        assert!(ctx.take_drifted("uid-kept"));
    }
}
