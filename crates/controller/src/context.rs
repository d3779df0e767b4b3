//! Everything a reconcile needs, built once and shared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource};
use podidentity_api::PodIdentityBinding;
use podidentity_api::config::OperatorConfig;
use podidentity_aws::api::IamApi;
use podidentity_iam::Guardrails;

pub struct Context {
    pub client: Client,
    pub iam: Arc<dyn IamApi>,
    pub config: OperatorConfig,
    pub guardrails: Guardrails,
    /// One recorder for the process (it deduplicates and aggregates events).
    pub recorder: Recorder,
    /// Failed passes per binding since its last success: the backoff exponent.
    failures: Mutex<HashMap<ObjectRef<PodIdentityBinding>, u32>>,
}

impl Context {
    pub fn new(client: Client, iam: Arc<dyn IamApi>, config: OperatorConfig) -> Self {
        let guardrails = Guardrails::from_config(&config);
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
            guardrails,
            recorder,
            failures: Mutex::new(HashMap::new()),
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
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(err) = self
            .recorder
            .publish(&event, &binding.object_ref(&()))
            .await
        {
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
