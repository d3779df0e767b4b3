//! Leader election on a coordination.k8s.io Lease: only the holder reconciles and writes
//! status. Compare-and-swap on the Lease's resourceVersion decides races; a holder that
//! cannot renew before the lease runs out must stop (the caller exits the process).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};

#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its pod name).
    pub holder: String,
    pub duration: Duration,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the lease (acquired or renewed).
    Held,
    /// Someone else holds a lease that has not run out.
    HeldBy(String),
}

/// One acquire-or-renew attempt.
pub async fn try_acquire(
    client: &kube::Client,
    settings: &LeaseSettings,
) -> Result<Attempt, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let now = Timestamp::now();
    let seconds = i32::try_from(settings.duration.as_secs()).unwrap_or(i32::MAX);
    let spec = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(settings.holder.clone()),
        lease_duration_seconds: Some(seconds),
        acquire_time: acquired.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let Some(mut lease) = api.get_opt(&settings.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(settings.name.clone()),
                namespace: Some(settings.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec(0, None)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Held),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Ok(Attempt::HeldBy("another replica".into()))
            }
            Err(err) => Err(err),
        };
    };
    let current = lease.spec.clone().unwrap_or_default();
    let holder = current.holder_identity.clone().unwrap_or_default();
    let expires = current.renew_time.as_ref().map(|t| {
        t.0.checked_add(SignedDuration::from_secs(i64::from(
            current.lease_duration_seconds.unwrap_or(seconds),
        )))
        .unwrap_or(t.0)
    });
    let ours = holder == settings.holder;
    let expired = expires.is_none_or(|expires| expires < now);
    if !ours && !expired && !holder.is_empty() {
        return Ok(Attempt::HeldBy(holder));
    }
    let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!ours);
    let acquired = if ours { current.acquire_time } else { None };
    lease.spec = Some(spec(transitions, acquired));
    // The resourceVersion we read makes this a compare-and-swap.
    match api
        .replace(&settings.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(Attempt::Held),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            Ok(Attempt::HeldBy("another replica".into()))
        }
        Err(err) => Err(err),
    }
}
