//! Leader election on a coordination.k8s.io Lease, the way client-go's leaderelection
//! does it (no crate for kube 4 does all of it; see docs/controller.md):
//!
//! - Every lease call has a timeout (the retry period): kube's client sets none, and a
//!   renewal that hangs must not keep a leader believing it leads.
//! - The holder renews every retry period and stops leading when it has not renewed for
//!   the renew deadline, which is shorter than the lease duration: it stops writing while
//!   the others still consider the lease held.
//! - Expiry is judged on this process's monotonic clock, from when it last saw the lease
//!   record change, never from the `renewTime` another node wrote.
//! - Acquiring and renewing are compare-and-swap replaces (the resourceVersion read), so
//!   two candidates can never both succeed.
//!
//! [`Leadership::may_write`] is checked at every write (IAM and Kubernetes, see `fence`),
//! so a leader that was stopped (SIGSTOP) or cut off stops writing by itself at its renew
//! deadline, before anyone can take over.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, PostParams};

#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its pod name).
    pub holder: String,
    /// How long the others wait, after they last saw the lease change, before taking it.
    pub lease_duration: Duration,
    /// How long the holder goes on writing without a successful renewal.
    pub renew_deadline: Duration,
    /// Between attempts; also the timeout of one lease call.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// client-go's defaults: 15 s, 10 s, 2 s.
    pub fn new(namespace: &str, name: &str, holder: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            holder: holder.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// The timings must leave the holder time to stop before anyone takes over.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.renew_deadline >= self.lease_duration {
            problems.push(format!(
                "--renew-deadline ({:?}) must be shorter than --lease-duration ({:?}): the leader must stop writing before another replica may take over",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period.saturating_mul(2) > self.renew_deadline {
            problems.push(format!(
                "--retry-period ({:?}) must be at most half of --renew-deadline ({:?}), so a failed renewal is tried again in time",
                self.retry_period, self.renew_deadline
            ));
        }
        if self.lease_duration.as_secs() < 1 {
            problems.push("--lease-duration must be at least 1s".into());
        }
        problems
    }
}

/// Whether this process may write: always, without leader election; with it, only while
/// it holds the lease and renewed it within the renew deadline.
#[derive(Clone, Debug)]
pub struct Leadership {
    state: Option<Arc<Held>>,
}

#[derive(Debug)]
struct Held {
    renewed: Mutex<Option<Instant>>,
    deadline: Duration,
}

impl Leadership {
    /// No leader election: the only replica always writes.
    pub fn always() -> Self {
        Self { state: None }
    }

    /// Elected: writes only while holding the lease.
    pub fn elected(renew_deadline: Duration) -> Self {
        Self {
            state: Some(Arc::new(Held {
                renewed: Mutex::new(None),
                deadline: renew_deadline,
            })),
        }
    }

    pub fn may_write(&self) -> bool {
        match &self.state {
            None => true,
            Some(held) => held
                .renewed
                .lock()
                .ok()
                .and_then(|r| *r)
                .is_some_and(|at| at.elapsed() < held.deadline),
        }
    }

    /// The same answer as a gate the IAM client and fenced connections ask.
    pub fn write_gate(&self) -> podidentity_aws::sdk::WriteGate {
        let leadership = self.clone();
        podidentity_aws::sdk::WriteGate(Arc::new(move || leadership.may_write()))
    }

    /// A renewal (or acquisition) sent at `sent` succeeded: the deadline runs from the
    /// moment the request left, which is no later than the API server stored it.
    fn renewed(&self, sent: Instant) {
        if let Some(held) = &self.state
            && let Ok(mut renewed) = held.renewed.lock()
        {
            *renewed = Some(sent);
        }
    }

    fn resign(&self) {
        if let Some(held) = &self.state
            && let Ok(mut renewed) = held.renewed.lock()
        {
            *renewed = None;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("the lease call timed out after {0:?}")]
    Timeout(Duration),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Why a holder stopped leading.
#[derive(Debug, PartialEq, Eq)]
pub enum Lost {
    /// Another replica holds the lease now.
    TakenBy(String),
    /// No renewal succeeded within the renew deadline.
    DeadlineExceeded,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::TakenBy(holder) => write!(f, "now held by {holder}"),
            Lost::DeadlineExceeded => f.write_str("no renewal succeeded within the renew deadline"),
        }
    }
}

/// What this process last saw of the lease, and when, by its own clock.
#[derive(Debug)]
struct Observed {
    resource_version: String,
    holder: String,
    duration: Duration,
    at: Instant,
}

pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    leadership: Leadership,
    observed: Option<Observed>,
}

impl Elector {
    /// `client` must not be fenced: the lease calls are what decide the fence.
    pub fn new(client: kube::Client, settings: LeaseSettings, leadership: Leadership) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            leadership,
            observed: None,
        }
    }

    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    async fn call<T>(
        &self,
        future: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, ElectionError> {
        tokio::time::timeout(self.settings.retry_period, future)
            .await
            .map_err(|_| ElectionError::Timeout(self.settings.retry_period))?
            .map_err(ElectionError::from)
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.settings.holder.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: acquired.or_else(|| Some(now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Notes what the lease looks like now; the clock of an unchanged record keeps running.
    fn observe(&mut self, lease: &Lease) {
        let resource_version = lease.resource_version().unwrap_or_default();
        if self
            .observed
            .as_ref()
            .is_some_and(|o| o.resource_version == resource_version)
        {
            return;
        }
        let spec = lease.spec.clone().unwrap_or_default();
        self.observed = Some(Observed {
            resource_version,
            holder: spec.holder_identity.unwrap_or_default(),
            duration: Duration::from_secs(
                u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
            ),
            at: Instant::now(),
        });
    }

    /// Whether another holder's lease has run out, as this process has watched it.
    fn expired(&self) -> bool {
        self.observed
            .as_ref()
            .is_none_or(|o| o.holder.is_empty() || o.at.elapsed() > o.duration)
    }

    /// One attempt to acquire or renew; `Ok(Some(holder))` when another holds it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Option<String>, ElectionError> {
        let sent = Instant::now();
        let Some(mut lease) = self.call(self.api.get_opt(&self.settings.name)).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self
                .call(self.api.create(&PostParams::default(), &lease))
                .await
            {
                Ok(created) => {
                    self.leadership.renewed(sent);
                    self.observe(&created);
                    Ok(None)
                }
                Err(ElectionError::Kube(kube::Error::Api(status))) if status.code == 409 => {
                    Ok(Some("another replica".into()))
                }
                Err(err) => Err(err),
            };
        };
        self.observe(&lease);
        let current = lease.spec.clone().unwrap_or_default();
        let holder = current.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.settings.holder;
        if !ours && !self.expired() {
            self.leadership.resign();
            return Ok(Some(holder));
        }
        let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours { current.acquire_time } else { None };
        lease.spec = Some(self.spec(transitions, acquired));
        // The resourceVersion read makes this a compare-and-swap.
        match self
            .call(
                self.api
                    .replace(&self.settings.name, &PostParams::default(), &lease),
            )
            .await
        {
            Ok(replaced) => {
                self.leadership.renewed(sent);
                self.observe(&replaced);
                Ok(None)
            }
            Err(ElectionError::Kube(kube::Error::Api(status))) if status.code == 409 => {
                Ok(Some("another replica".into()))
            }
            Err(err) => Err(err),
        }
    }

    /// Waits until this process holds the lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(None) => return,
                Ok(Some(holder)) => tracing::debug!(%holder, "the leader lease is held"),
                Err(err) => tracing::warn!(error = %err, "leader lease attempt failed"),
            }
            tokio::time::sleep(self.settings.retry_period).await;
        }
    }

    /// Renews every retry period until leadership is lost; says why.
    pub async fn hold(&mut self) -> Lost {
        loop {
            tokio::time::sleep(self.settings.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(None) => {}
                Ok(Some(holder)) => {
                    self.leadership.resign();
                    return Lost::TakenBy(holder);
                }
                Err(err) => tracing::warn!(error = %err, "could not renew the leader lease"),
            }
            if !self.leadership.may_write() {
                return Lost::DeadlineExceeded;
            }
        }
    }

    /// Gives the lease up (on shutdown), so another replica need not wait for it to run
    /// out. Only if it is still ours; best effort.
    pub async fn release(&mut self) {
        self.leadership.resign();
        let Ok(Some(mut lease)) = self.call(self.api.get_opt(&self.settings.name)).await else {
            return;
        };
        let mine = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.settings.holder.as_str());
        if !mine {
            return;
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = None;
            spec.acquire_time = None;
        }
        if let Err(err) = self
            .call(
                self.api
                    .replace(&self.settings.name, &PostParams::default(), &lease),
            )
            .await
        {
            tracing::warn!(error = %err, "could not release the leader lease");
        }
    }
}
