//! Start-up refuses a missing or older CRD; the leader lease goes to one replica at a
//! time and passes on when its holder stops renewing.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube_fake_client::ClientBuilder;
use podidentity_controller::leader::{Attempt, LeaseSettings, try_acquire};
use podidentity_controller::startup::{StartupError, check_crd};

fn crd_with_revision(revision: Option<&str>) -> CustomResourceDefinition {
    let mut crd = podidentity_api::crd::crd();
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
    let err = check_crd(&client_with(vec![]).await).await.err();
    assert!(matches!(err, Some(StartupError::CrdMissing)), "{err:?}");
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.contains("podidentity crd | kubectl apply --server-side -f -"),
        "{text}"
    );
}

#[tokio::test]
async fn an_older_crd_stops_start_up_and_the_current_one_passes() {
    let err = check_crd(&client_with(vec![crd_with_revision(None)]).await)
        .await
        .err();
    assert!(
        matches!(err, Some(StartupError::CrdTooOld { installed: 0, .. })),
        "{err:?}"
    );
    let current = podidentity_api::crd::SCHEMA_REVISION.to_string();
    let ok = check_crd(&client_with(vec![crd_with_revision(Some(&current))]).await).await;
    assert_eq!(ok.ok(), Some(podidentity_api::crd::SCHEMA_REVISION));
}

fn lease(holder: &str, duration: Duration) -> LeaseSettings {
    LeaseSettings {
        namespace: "podidentity".into(),
        name: "podidentity-controller".into(),
        holder: holder.into(),
        duration,
    }
}

#[tokio::test]
async fn one_replica_leads_and_the_lease_passes_on_when_it_stops_renewing() {
    let client = ClientBuilder::new()
        .build()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let short = Duration::from_secs(1);
    assert_eq!(
        try_acquire(&client, &lease("a", short)).await.ok(),
        Some(Attempt::Held)
    );
    assert_eq!(
        try_acquire(&client, &lease("b", short)).await.ok(),
        Some(Attempt::HeldBy("a".into()))
    );
    assert_eq!(
        try_acquire(&client, &lease("a", short)).await.ok(),
        Some(Attempt::Held),
        "the holder renews"
    );

    // "a" stops renewing; once the lease has run out, "b" takes it over.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        try_acquire(&client, &lease("b", short)).await.ok(),
        Some(Attempt::Held)
    );
    assert_eq!(
        try_acquire(&client, &lease("a", short)).await.ok(),
        Some(Attempt::HeldBy("b".into()))
    );
    let stored = Api::<Lease>::namespaced(client, "podidentity")
        .get("podidentity-controller")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let spec = stored.spec.unwrap_or_default();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
}
