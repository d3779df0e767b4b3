//! Start-up refuses a missing, older or newer CRD (either of the two); the leader lease goes to one replica
//! at a time, its holder stops writing at the renew deadline, and the lease passes on
//! only after a full lease duration on the standby's own clock.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube_fake_client::ClientBuilder;
use podidentity_controller::process::leader::{Elector, Leadership, LeaseSettings};
use podidentity_controller::process::startup::{StartupError, check_crds};

/// The binding CRD at `revision` (none: no annotation), and the policy CRD at the
/// current one.
fn crds_with_binding_revision(revision: Option<&str>) -> Vec<CustomResourceDefinition> {
    vec![
        with_revision(podidentity_api::crd::binding_crd(), revision),
        podidentity_api::crd::policy_crd(),
    ]
}

fn with_revision(
    mut crd: CustomResourceDefinition,
    revision: Option<&str>,
) -> CustomResourceDefinition {
    let annotations = crd.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.remove("podidentity.io/schema-revision");
    if let Some(revision) = revision {
        annotations.insert("podidentity.io/schema-revision".into(), revision.into());
    }
    crd
}

async fn client_with(crds: Vec<CustomResourceDefinition>) -> kube::Client {
    ClientBuilder::new()
        .with_objects(crds)
        .build()
        .await
        .unwrap_or_else(|err| panic!("{err}"))
}

#[tokio::test]
async fn a_missing_crd_stops_start_up_with_the_fix() {
    let err = check_crds(&client_with(vec![]).await).await.err();
    assert!(
        matches!(
            err,
            Some(StartupError::CrdMissing {
                name: "podidentitybindings.podidentity.io"
            })
        ),
        "{err:?}"
    );
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.contains("podidentity crd | kubectl apply --server-side -f -"),
        "{text}"
    );
}

#[tokio::test]
async fn an_older_crd_stops_start_up_and_the_current_one_passes() {
    let err = check_crds(&client_with(crds_with_binding_revision(None)).await)
        .await
        .err();
    assert!(
        matches!(err, Some(StartupError::CrdTooOld { installed: 0, .. })),
        "{err:?}"
    );
    let current = podidentity_api::crd::SCHEMA_REVISION.to_string();
    let ok = check_crds(&client_with(crds_with_binding_revision(Some(&current))).await).await;
    assert_eq!(ok.ok(), Some(podidentity_api::crd::SCHEMA_REVISION));
}

#[tokio::test]
async fn a_missing_policy_crd_stops_start_up_by_name() {
    let only_bindings = vec![podidentity_api::crd::binding_crd()];
    let err = check_crds(&client_with(only_bindings).await).await.err();
    assert!(
        matches!(
            err,
            Some(StartupError::CrdMissing {
                name: "podidentitypolicies.podidentity.io"
            })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_newer_crd_stops_start_up_too() {
    let newer = (podidentity_api::crd::SCHEMA_REVISION + 1).to_string();
    let err = check_crds(&client_with(crds_with_binding_revision(Some(&newer))).await)
        .await
        .err();
    assert!(
        matches!(err, Some(StartupError::CrdTooNew { .. })),
        "{err:?}"
    );
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("newer than this operator"), "{text}");
}

fn settings(holder: &str) -> LeaseSettings {
    let mut settings = LeaseSettings::new("podidentity", "podidentity-controller", holder);
    settings.lease_duration = Duration::from_millis(1000);
    settings.renew_deadline = Duration::from_millis(600);
    settings.retry_period = Duration::from_millis(200);
    settings
}

fn elector(client: &kube::Client, holder: &str) -> (Elector, Leadership) {
    let settings = settings(holder);
    let leadership = Leadership::elected(settings.renew_deadline);
    (
        Elector::new(client.clone(), settings, leadership.clone()),
        leadership,
    )
}

async fn fake() -> kube::Client {
    ClientBuilder::new()
        .build()
        .await
        .unwrap_or_else(|err| panic!("{err}"))
}

#[tokio::test]
async fn one_replica_leads_and_the_lease_passes_on_when_it_stops_renewing() {
    let client = fake().await;
    let (mut a, a_leads) = elector(&client, "a");
    let (mut b, b_leads) = elector(&client, "b");
    assert_eq!(
        a.try_acquire_or_renew().await.ok(),
        Some(None),
        "a acquires"
    );
    assert!(a_leads.may_write());
    assert_eq!(b.try_acquire_or_renew().await.ok(), Some(Some("a".into())));
    assert!(!b_leads.may_write(), "the standby may not write");
    assert_eq!(a.try_acquire_or_renew().await.ok(), Some(None), "a renews");

    // a stops renewing: it stops writing at its renew deadline, before b may take over.
    tokio::time::sleep(Duration::from_millis(650)).await;
    assert!(!a_leads.may_write(), "past the renew deadline");
    assert_eq!(
        b.try_acquire_or_renew().await.ok(),
        Some(Some("a".into())),
        "not yet: b saw the lease change (a's renewal) less than a lease duration ago"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        b.try_acquire_or_renew().await.ok(),
        Some(None),
        "b takes over"
    );
    assert!(b_leads.may_write());
    assert_eq!(a.try_acquire_or_renew().await.ok(), Some(Some("b".into())));
    assert!(!a_leads.may_write());
    let stored = Api::<Lease>::namespaced(client, "podidentity")
        .get("podidentity-controller")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let spec = stored.spec.unwrap_or_default();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test]
async fn expiry_is_judged_on_the_local_clock_not_the_holders_renew_time() {
    let client = fake().await;
    // A lease whose renewTime, by its writer's clock, is long past.
    let stale: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "podidentity-controller", "namespace": "podidentity"},
        "spec": {"holderIdentity": "x", "leaseDurationSeconds": 1, "renewTime": "1970-01-01T00:00:00.000000Z", "leaseTransitions": 3},
    }))
    .unwrap_or_else(|err| panic!("{err}"));
    Api::<Lease>::namespaced(client.clone(), "podidentity")
        .create(&Default::default(), &stale)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let (mut b, _) = elector(&client, "b");
    assert_eq!(
        b.try_acquire_or_renew().await.ok(),
        Some(Some("x".into())),
        "first seen now: a full lease duration must pass on this clock"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(b.try_acquire_or_renew().await.ok(), Some(None));
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let client = fake().await;
    let (mut a, _) = elector(&client, "a");
    let (mut b, _) = elector(&client, "b");
    assert_eq!(a.try_acquire_or_renew().await.ok(), Some(None));
    assert_eq!(b.try_acquire_or_renew().await.ok(), Some(Some("a".into())));
    a.release().await;
    assert_eq!(b.try_acquire_or_renew().await.ok(), Some(None));
}

#[test]
fn lease_timings_that_would_let_two_lead_are_refused() {
    let mut bad = settings("a");
    bad.renew_deadline = bad.lease_duration;
    let problems = bad.problems();
    assert!(
        problems.iter().any(|p| p.contains("--renew-deadline")),
        "{problems:?}"
    );
    assert!(settings("a").problems().is_empty());
    assert!(
        LeaseSettings::new("ns", "lease", "a").problems().is_empty(),
        "the defaults"
    );
}

#[test]
fn without_leader_election_the_only_replica_always_writes() {
    assert!(Leadership::always().may_write());
    assert!(
        !Leadership::elected(Duration::from_secs(10)).may_write(),
        "not until it holds the lease"
    );
}
