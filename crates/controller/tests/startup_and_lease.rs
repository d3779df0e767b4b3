//! Start-up refuses a missing, older or newer CRD (either of the two); the leader lease goes to one replica
//! at a time, its holder stops writing at the renew deadline, and the lease passes on
//! only after a full lease duration on the standby's own clock.
//!
//! The CRD checks need cluster-wide states (no CRD, an old one) that the shared test
//! control plane cannot take, so they run against a stand-in API server that answers the
//! GETs of CRDs by name from a fixed set, and fails the test on any other request. The
//! lease tests run against the real API server, each in a namespace of its own.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Resource;
use kube::api::Api;
use kube::client::Body;
use podidentity_controller::process::leader::{Elector, Leadership, LeaseSettings};
use podidentity_controller::process::startup::{StartupError, check_crds};
use podidentity_test_cluster::Requests;

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

/// A stand-in API server holding `crds`, and each request its client sent
/// (`METHOD path?query`).
struct CrdServer {
    client: kube::Client,
    requests: Requests,
}

impl CrdServer {
    /// The requests sent so far, each a GET of a CRD by name (see
    /// [`CrdServer::assert_only_crd_gets`]).
    fn requests(&self) -> Vec<String> {
        self.assert_only_crd_gets();
        self.requests.lines()
    }

    /// Fails the test if a request was not a GET of a CRD by name (start-up asks
    /// something new: answer it here too).
    fn assert_only_crd_gets(&self) {
        let requests = self.requests.lines();
        let unexpected: Vec<&String> = requests.iter().filter(|r| crd_name(r).is_none()).collect();
        assert!(
            unexpected.is_empty(),
            "requests the stand-in API server does not answer: {unexpected:?}"
        );
    }
}

/// The CRD a request line `GET <crds>/<name>` asks for.
fn crd_name(request: &str) -> Option<&str> {
    let collection = CustomResourceDefinition::url_path(&(), None);
    request
        .strip_prefix("GET ")?
        .strip_prefix(collection.as_str())?
        .strip_prefix('/')
        .filter(|name| !name.is_empty() && !name.contains(['/', '?']))
}

/// The request line of a GET of the CRD `name`.
fn get_crd(name: &str) -> String {
    format!(
        "GET {}/{name}",
        CustomResourceDefinition::url_path(&(), None)
    )
}

fn json_response(code: u16, body: &serde_json::Value) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|err| panic!("response: {err}"))
}

/// The API server's answer to a GET of a CRD by name: the CRD, or 404 with the `Status`
/// kube-apiserver sends; anything else is refused (and fails the test, see `requests`).
fn answer(crds: &[CustomResourceDefinition], request: &str) -> http::Response<Full<Bytes>> {
    let Some(name) = crd_name(request) else {
        return json_response(
            400,
            &serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("the stand-in API server answers only GETs of CRDs by name, not {request}"),
                "reason": "BadRequest", "code": 400,
            }),
        );
    };
    match crds
        .iter()
        .find(|crd| crd.metadata.name.as_deref() == Some(name))
    {
        Some(crd) => json_response(
            200,
            &serde_json::to_value(crd).unwrap_or_else(|err| panic!("{err}")),
        ),
        None => json_response(
            404,
            &serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("customresourcedefinitions.apiextensions.k8s.io \"{name}\" not found"),
                "reason": "NotFound",
                "details": {"name": name, "group": "apiextensions.k8s.io", "kind": "customresourcedefinitions"},
                "code": 404,
            }),
        ),
    }
}

fn client_with(crds: Vec<CustomResourceDefinition>) -> CrdServer {
    let requests = Requests::default();
    let seen = requests.clone();
    let crds = Arc::new(crds);
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let line = seen.record(&request);
        let response = answer(&crds, &line);
        async move { Ok::<_, Infallible>(response) }
    });
    CrdServer {
        client: kube::Client::new(service, "default"),
        requests,
    }
}

#[tokio::test]
async fn a_missing_crd_stops_start_up_with_the_fix() {
    let server = client_with(vec![]);
    let err = check_crds(&server.client).await.err();
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
    assert_eq!(
        server.requests(),
        [get_crd("podidentitybindings.podidentity.io")]
    );
}

#[tokio::test]
async fn an_older_crd_stops_start_up_and_the_current_one_passes() {
    let older = client_with(crds_with_binding_revision(None));
    let err = check_crds(&older.client).await.err();
    assert!(
        matches!(
            err,
            Some(StartupError::CrdTooOld {
                name: "podidentitybindings.podidentity.io",
                installed: 0,
                ..
            })
        ),
        "{err:?}"
    );
    older.assert_only_crd_gets();
    let current = podidentity_api::crd::SCHEMA_REVISION.to_string();
    let server = client_with(crds_with_binding_revision(Some(&current)));
    let ok = check_crds(&server.client).await;
    assert_eq!(
        ok.map_err(|e| e.to_string()),
        Ok(podidentity_api::crd::SCHEMA_REVISION)
    );
    assert_eq!(
        server.requests(),
        podidentity_controller::process::startup::CRD_NAMES.map(get_crd),
        "both CRDs are read"
    );
}

#[tokio::test]
async fn a_missing_policy_crd_stops_start_up_by_name() {
    let server = client_with(vec![podidentity_api::crd::binding_crd()]);
    let err = check_crds(&server.client).await.err();
    assert!(
        matches!(
            err,
            Some(StartupError::CrdMissing {
                name: "podidentitypolicies.podidentity.io"
            })
        ),
        "{err:?}"
    );
    server.assert_only_crd_gets();
}

#[tokio::test]
async fn a_newer_crd_stops_start_up_too() {
    let newer = (podidentity_api::crd::SCHEMA_REVISION + 1).to_string();
    let server = client_with(crds_with_binding_revision(Some(&newer)));
    let err = check_crds(&server.client).await.err();
    assert!(
        matches!(err, Some(StartupError::CrdTooNew { .. })),
        "{err:?}"
    );
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("newer than this operator"), "{text}");
    server.assert_only_crd_gets();
}

fn settings(namespace: &str, holder: &str) -> LeaseSettings {
    let mut settings = LeaseSettings::new(namespace, "podidentity-controller", holder);
    settings.lease_duration = Duration::from_millis(5000);
    settings.renew_deadline = Duration::from_millis(3000);
    settings.retry_period = Duration::from_millis(1000);
    settings
}

fn elector(client: &kube::Client, namespace: &str, holder: &str) -> (Elector, Leadership) {
    let settings = settings(namespace, holder);
    let leadership = Leadership::elected(settings.renew_deadline);
    (
        Elector::new(client.clone(), settings, leadership.clone()),
        leadership,
    )
}

/// An admin client of the real API server and a namespace of this test's own; `None`
/// when no control plane runs (the test is skipped).
async fn cluster() -> Option<(kube::Client, String)> {
    let client = podidentity_test_cluster::client().await?;
    let namespace = podidentity_test_cluster::namespace(&client, "lease").await;
    Some((client, namespace))
}

/// One attempt to acquire or renew, its error as text (to compare and to show).
async fn attempt(elector: &mut Elector) -> Result<Option<String>, String> {
    elector
        .try_acquire_or_renew()
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn one_replica_leads_and_the_lease_passes_on_when_it_stops_renewing() {
    let Some((client, namespace)) = cluster().await else {
        return;
    };
    let (mut a, a_leads) = elector(&client, &namespace, "a");
    let (mut b, b_leads) = elector(&client, &namespace, "b");
    assert_eq!(attempt(&mut a).await, Ok(None), "a acquires");
    assert!(a_leads.may_write());
    assert_eq!(attempt(&mut b).await, Ok(Some("a".into())));
    assert!(!b_leads.may_write(), "the standby may not write");
    assert_eq!(attempt(&mut a).await, Ok(None), "a renews");

    // a stops renewing: it stops writing at its renew deadline, before b may take over.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert!(!a_leads.may_write(), "past the renew deadline");
    assert_eq!(
        attempt(&mut b).await,
        Ok(Some("a".into())),
        "not yet: b saw the lease change (a's renewal) less than a lease duration ago"
    );
    tokio::time::sleep(Duration::from_millis(5200)).await;
    assert_eq!(attempt(&mut b).await, Ok(None), "b takes over");
    assert!(b_leads.may_write());
    assert_eq!(attempt(&mut a).await, Ok(Some("b".into())));
    assert!(!a_leads.may_write());
    let stored = Api::<Lease>::namespaced(client, &namespace)
        .get("podidentity-controller")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let spec = stored.spec.unwrap_or_default();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test]
async fn expiry_is_judged_on_the_local_clock_not_the_holders_renew_time() {
    let Some((client, namespace)) = cluster().await else {
        return;
    };
    // A lease whose renewTime, by its writer's clock, is long past.
    let stale: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "podidentity-controller", "namespace": namespace},
        "spec": {"holderIdentity": "x", "leaseDurationSeconds": 1, "renewTime": "1970-01-01T00:00:00.000000Z", "leaseTransitions": 3},
    }))
    .unwrap_or_else(|err| panic!("{err}"));
    let leases = Api::<Lease>::namespaced(client.clone(), &namespace);
    leases
        .create(&Default::default(), &stale)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let (mut b, _) = elector(&client, &namespace, "b");
    assert_eq!(
        attempt(&mut b).await,
        Ok(Some("x".into())),
        "first seen now: a full lease duration must pass on this clock"
    );
    tokio::time::sleep(Duration::from_millis(5200)).await;
    assert_eq!(attempt(&mut b).await, Ok(None));
    let spec = leases
        .get("podidentity-controller")
        .await
        .unwrap_or_else(|err| panic!("{err}"))
        .spec
        .unwrap_or_default();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(4));
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let Some((client, namespace)) = cluster().await else {
        return;
    };
    let (mut a, _) = elector(&client, &namespace, "a");
    let (mut b, _) = elector(&client, &namespace, "b");
    assert_eq!(attempt(&mut a).await, Ok(None));
    assert_eq!(attempt(&mut b).await, Ok(Some("a".into())));
    a.release().await;
    assert_eq!(attempt(&mut b).await, Ok(None));
}

#[test]
fn lease_timings_that_would_let_two_lead_are_refused() {
    let mut bad = settings("podidentity", "a");
    bad.renew_deadline = bad.lease_duration;
    let problems = bad.problems();
    assert!(
        problems.iter().any(|p| p.contains("--renew-deadline")),
        "{problems:?}"
    );
    assert!(settings("podidentity", "a").problems().is_empty());
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
