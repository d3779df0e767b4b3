//! The handles every wing shares, built once: the Kubernetes client, IAM, the
//! configuration, the event recorder, the metrics, and the named caches. What a binding's passes
//! remember between them is the binding wing's (`binding::memory`), not here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use podidentity_api::PodIdentityBinding;
use podidentity_api::conditions::{MAX_EVENT_NOTE, shortened};
use podidentity_api::config::OperatorConfig;
use podidentity_aws::api::IamApi;
use podidentity_aws::eks::AssociationApi;

use crate::binding::association_count::AssociationCount;
use crate::binding::managed_policies::ManagedPolicyDocuments;
use crate::binding::quota::SiblingVerdicts;
use crate::caches::{Bindings, Secrets, Watched};
use crate::error::Error;
use crate::policy::view::{NamespaceMeta, PolicyView, WatchedPolicy};
use crate::process::check::Check;
use crate::process::lanes::AccountLanes;
use crate::process::metrics::Metrics;

pub struct Context {
    pub client: Client,
    /// IAM in the operator's own account.
    pub iam: Arc<dyn IamApi>,
    /// IAM in each other configured account, by id, each with its own credentials
    /// (assumed) and request budget.
    pub account_iam: BTreeMap<String, Arc<dyn IamApi>>,
    pub config: OperatorConfig,
    /// The guardrails per namespace: the configuration's and its PodIdentityPolicies'.
    pub policies: PolicyView,
    /// Managed policy documents, judged before a role gets them.
    pub managed_policies: ManagedPolicyDocuments,
    /// One recorder for the process (it deduplicates and aggregates events).
    pub recorder: Recorder,
    /// The process's metrics (`/metrics`).
    pub metrics: Arc<Metrics>,
    /// Where bindings are read from (the ServiceAccount ownership rule, the quota).
    pub bindings: Bindings,
    /// Where the operator's credentials Secrets are read from.
    pub secrets: Secrets,
    /// The quota's verdicts on siblings, each judged once per change.
    pub sibling_verdicts: SiblingVerdicts,
    /// EKS Pod Identity associations (`None`: no EKS client; Pod Identity bindings fail
    /// with that said).
    pub associations: Option<Arc<dyn AssociationApi>>,
    /// The cluster's Pod Identity associations, against `eks.maxAssociations`.
    pub association_count: AssociationCount,
    /// Places for passes in flight, per account.
    pub lanes: AccountLanes,
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
            account_iam: BTreeMap::new(),
            config,
            policies,
            managed_policies: ManagedPolicyDocuments::default(),
            recorder,
            metrics: Arc::new(Metrics::new()),
            bindings: Bindings::Live,
            secrets: Secrets::Live,
            sibling_verdicts: SiblingVerdicts::default(),
            associations: None,
            association_count: AssociationCount::default(),
            lanes: AccountLanes::default(),
        }
    }

    /// Acts in account `id` through this client.
    pub fn with_account(mut self, id: &str, iam: Arc<dyn IamApi>) -> Self {
        self.account_iam.insert(id.to_string(), iam);
        self.lanes = AccountLanes::new(self.account_iam.keys().map(String::as_str));
        self
    }

    /// IAM in `account` (`None`, or the operator's own id: its own).
    pub fn iam_in(&self, account: Option<&str>) -> Result<&dyn IamApi, Error> {
        match self.account_or_own(account) {
            None => Ok(self.iam.as_ref()),
            Some(id) => self
                .account_iam
                .get(id)
                .map(AsRef::as_ref)
                .ok_or_else(|| Error::AccountNotConfigured(id.to_string())),
        }
    }

    /// An account id as [`Context::iam_in`] and the lanes take it: `None` for the
    /// operator's own.
    pub fn account_or_own<'a>(&self, account: Option<&'a str>) -> Option<&'a str> {
        account.filter(|id| self.config.aws.account_id.as_deref() != Some(*id))
    }

    /// The account a role ARN names, as [`Context::iam_in`] takes it (`None`: the
    /// operator's own, or no account in it).
    pub fn account_of<'a>(&self, role_arn: &'a str) -> Option<&'a str> {
        self.account_or_own(podidentity_api::config::account_of_arn(role_arn))
    }

    /// Keeps EKS Pod Identity associations through this client.
    pub fn with_associations(mut self, associations: Arc<dyn AssociationApi>) -> Self {
        self.associations = Some(associations);
        self
    }

    /// Counts into these metrics (the ones `/metrics` serves).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
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

    /// The bindings of one namespace (readable or not).
    pub async fn bindings_in(&self, namespace: &str) -> Result<Vec<Arc<Watched>>, kube::Error> {
        self.bindings.in_namespace(&self.client, namespace).await
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

    /// An Event on a binding with its own `action`. Events alike in type, reason and action
    /// are kept as one series whose note is the first one's; a distinct action keeps a
    /// distinct note (a migration's direction).
    pub async fn event_for_action(
        &self,
        binding: &PodIdentityBinding,
        type_: EventType,
        action: &str,
        reason: &str,
        note: String,
    ) {
        self.publish(&binding.object_ref(&()), type_, action, reason, note)
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
        self.publish(regarding, type_, "Reconcile", reason, note)
            .await;
    }

    async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        action: &str,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(shortened(note, MAX_EVENT_NOTE)),
            action: action.into(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(error = %err, reason, "could not publish an Event");
        }
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
