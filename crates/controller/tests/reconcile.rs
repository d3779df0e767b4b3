//! Whole reconcile passes: Kubernetes is a real kube-apiserver (scripts/test starts one; a
//! namespace per test), IAM is moto. No controller runs: each test calls the passes itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::core::ObjectMeta;
use podidentity_api::config::{AwsConfig, GuardrailsConfig, OidcConfig, OperatorConfig};
use podidentity_api::{FINALIZER, PodIdentityBinding, PodIdentityBindingSpec, Statement};
use podidentity_aws::api::{Iam, IamApi};
use podidentity_aws::counting::{CallLog, Counted};
use podidentity_aws::error::ErrorKind;
use podidentity_aws::faults::{Fault, Faulty};
use podidentity_aws::sdk::SdkIam;
use podidentity_controller::Context;
use podidentity_controller::binding::memory::Memory;
use podidentity_controller::binding::reconcile_binding;

/// What a world is made in: moto's IAM and the test control plane.
#[derive(Clone)]
struct Endpoints {
    iam: String,
    kube: kube::Client,
}

/// Both, or `None` (the test is skipped, or fails where scripts/test requires them).
async fn endpoint() -> Option<Endpoints> {
    let iam = podidentity_aws::testing::emulator_endpoint()?;
    let kube = podidentity_test_cluster::client().await?;
    Some(Endpoints { iam, kube })
}

struct World {
    client: kube::Client,
    ctx: Arc<Context>,
    memory: Arc<Memory>,
    log: CallLog,
    faults: Arc<Faulty<SdkIam>>,
    cluster: String,
    namespace: String,
}

impl World {
    fn bindings(&self) -> Api<PodIdentityBinding> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
    fn service_accounts(&self) -> Api<ServiceAccount> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
    fn iam(&self) -> &dyn IamApi {
        self.ctx.iam.as_ref()
    }
    async fn get(&self, name: &str) -> PodIdentityBinding {
        self.bindings()
            .get(name)
            .await
            .unwrap_or_else(|err| panic!("{err}"))
    }
    /// One controller pass on the binding as it is now.
    async fn pass(
        &self,
        name: &str,
    ) -> Result<kube::runtime::controller::Action, podidentity_controller::Error> {
        reconcile_binding(&self.get(name).await, &self.ctx, &self.memory).await
    }
    /// Passes until the finalizer is on and one apply ran.
    async fn settle(&self, name: &str) {
        for _ in 0..2 {
            self.pass(name).await.unwrap_or_else(|err| panic!("{err}"));
        }
    }
    fn ready(binding: &PodIdentityBinding) -> (String, String) {
        binding
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| (c.status.to_string(), c.reason.to_string()))
            .unwrap_or_default()
    }
    /// How IAM answers GetRole for the binding's role (`None`: it exists).
    async fn role_error(&self, binding: &str) -> Option<ErrorKind> {
        Iam::new(self.iam())
            .get_role(&self.role_name(binding))
            .await
            .err()
            .map(|e| e.kind)
    }
    fn role_name(&self, binding: &str) -> String {
        format!("{}-{}.{binding}", self.cluster, self.namespace)
    }
}

fn spec() -> PodIdentityBindingSpec {
    let mut spec = PodIdentityBindingSpec {
        service_account_name: "orders".into(),
        ..PodIdentityBindingSpec::default()
    };
    spec.permissions.statements.push(Statement {
        actions: vec!["s3:GetObject".into()],
        resources: vec!["arn:aws:s3:::shop-orders/*".into()],
        ..Statement::default()
    });
    spec
}

/// A binding for a world to create (in its own namespace).
fn binding(name: &str, spec: PodIdentityBindingSpec) -> PodIdentityBinding {
    PodIdentityBinding::new(name, spec)
}

fn service_account(name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    }
}

async fn world(
    endpoint: Endpoints,
    bindings: Vec<PodIdentityBinding>,
    service_accounts: Vec<ServiceAccount>,
) -> World {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let cluster = format!("r{}", nanos % 10_000_000_000);
    let client = endpoint.kube.clone();
    let namespace = podidentity_test_cluster::namespace(&client, "shop").await;
    let sdk = SdkIam::connect(&podidentity_aws::testing::emulator_settings(&endpoint.iam)).await;
    let faults = Arc::new(Faulty::new(sdk));
    let log = CallLog::default();
    let config = OperatorConfig {
        cluster_name: cluster.clone(),
        oidc: OidcConfig {
            issuer_url: Some("https://oidc.example.com/id/ABC".into()),
            ..OidcConfig::default()
        },
        aws: AwsConfig {
            account_id: Some("123456789012".into()),
            ..AwsConfig::default()
        },
        // The account's own managed policies too (a stalled binding waits on one).
        guardrails: GuardrailsConfig {
            allowed_managed_policy_arns: vec![
                "arn:aws:iam::aws:policy/*".into(),
                "arn:aws:iam::123456789012:policy/*".into(),
            ],
            ..GuardrailsConfig::default()
        },
        ..OperatorConfig::default()
    };
    let iam: Arc<dyn IamApi> = Arc::new(Counted::new(faults.clone(), log.clone()));
    let ctx = Arc::new(Context::new(client.clone(), iam, config));
    let world = World {
        client,
        ctx,
        memory: Arc::new(Memory::default()),
        log,
        faults,
        cluster,
        namespace,
    };
    for account in service_accounts {
        world
            .service_accounts()
            .create(&PostParams::default(), &account)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
    }
    for binding in bindings {
        world
            .bindings()
            .create(&PostParams::default(), &binding)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
    }
    world
}

#[tokio::test]
async fn a_new_binding_gets_its_role_its_annotation_and_ready() {
    let Some(endpoint) = endpoint().await else {
        return;
    };
    let w = world(
        endpoint,
        vec![binding("orders-s3", spec())],
        vec![service_account("orders")],
    )
    .await;
    w.settle("orders-s3").await;

    let b = w.get("orders-s3").await;
    assert_eq!(World::ready(&b), ("True".into(), "Synced".into()));
    assert!(
        b.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
    );
    let status = b.status.clone().unwrap_or_default();
    let role = Iam::new(w.iam())
        .get_role(&w.role_name("orders-s3"))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(status.role_arn.as_deref(), Some(role.arn.as_str()));
    assert_eq!(status.role_id.as_deref(), Some(role.id.as_str()));
    assert_eq!(status.observed_generation, b.metadata.generation);
    assert!(
        status
            .trust_policy
            .is_some_and(|t| t.bytes > 0 && t.limit == 2048)
    );

    let sa = w
        .service_accounts()
        .get("orders")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let annotations = sa.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get("eks.amazonaws.com/role-arn"),
        Some(&role.arn)
    );
    assert_eq!(
        annotations
            .get("eks.amazonaws.com/sts-regional-endpoints")
            .map(String::as_str),
        Some("true")
    );
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(w.client.clone(), &w.namespace);
    let reasons: Vec<String> = events
        .list(&Default::default())
        .await
        .unwrap_or_else(|err| panic!("{err}"))
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.iter().any(|r| r == "Created"),
        "a Created Event: {reasons:?}"
    );
}

#[tokio::test]
async fn an_idle_pass_makes_no_iam_call_and_no_write() {
    let Some(endpoint) = endpoint().await else {
        return;
    };
    let w = world(
        endpoint,
        vec![binding("orders-s3", spec())],
        vec![service_account("orders")],
    )
    .await;
    w.settle("orders-s3").await;
    let before = w.get("orders-s3").await;
    w.log.reset();
    w.pass("orders-s3")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(w.log.total(), 0, "{:?}", w.log.snapshot());
    let after = w.get("orders-s3").await;
    assert_eq!(
        before.metadata.resource_version, after.metadata.resource_version,
        "nothing was written"
    );
}

/// A pass that sees the binding as it was before its own last status write (the cache
/// not caught up, as after a relist) writes nothing, and looks again shortly rather than
/// waiting for an event that may already have been folded into the relist.
#[tokio::test]
async fn a_pass_on_a_stale_copy_looks_again_shortly() {
    let Some(endpoint) = endpoint().await else {
        return;
    };
    let w = world(
        endpoint,
        vec![binding("orders-s3", spec())],
        vec![service_account("orders")],
    )
    .await;
    // The finalizer pass, then the apply pass on the copy from before its status write.
    w.pass("orders-s3")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let stale = w.get("orders-s3").await;
    reconcile_binding(&stale, &w.ctx, &w.memory)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        w.get("orders-s3").await.status.is_some(),
        "the apply pass wrote its status"
    );
    w.log.reset();
    let again = reconcile_binding(&stale, &w.ctx, &w.memory)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        again,
        kube::runtime::controller::Action::requeue(
            podidentity_controller::binding::OWN_WRITE_RECHECK
        )
    );
    assert_eq!(w.log.total(), 0, "{:?}", w.log.snapshot());
}

#[tokio::test]
async fn a_refused_spec_makes_no_iam_call_and_says_why() {
    let Some(endpoint) = endpoint().await else {
        return;
    };
    let mut bad = spec();
    bad.permissions.statements[0].actions = vec!["iam:PassRole".into()];
    let w = world(
        endpoint,
        vec![binding("bad", bad)],
        vec![service_account("orders")],
    )
    .await;
    w.settle("bad").await;
    assert_eq!(w.log.total(), 0, "{:?}", w.log.snapshot());
    let b = w.get("bad").await;
    assert_eq!(
        World::ready(&b),
        ("False".into(), "GuardrailViolation".into())
    );
    let stalled = b
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Stalled").cloned());
    assert_eq!(stalled.as_ref().map(|c| &*c.status), Some("True"));
    assert!(stalled.is_some_and(|c| {
        c.message
            .contains("spec.permissions.statements[0].actions[0]")
    }));
    assert_eq!(w.role_error("bad").await, Some(ErrorKind::NotFound));
}

#[tokio::test]
async fn a_missing_service_account_is_waited_for_then_bound() {
    let Some(endpoint) = endpoint().await else {
        return;
    };
    let w = world(endpoint, vec![binding("orders-s3", spec())], vec![]).await;
    w.settle("orders-s3").await;
    assert_eq!(
        World::ready(&w.get("orders-s3").await),
        ("False".into(), "ServiceAccountNotFound".into())
    );

    w.service_accounts()
        .create(&Default::default(), &service_account("orders"))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    w.log.reset();
    w.pass("orders-s3")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        World::ready(&w.get("orders-s3").await),
        ("True".into(), "Synced".into())
    );
    assert_eq!(
        w.log.total(),
        0,
        "the role was already in line: {:?}",
        w.log.snapshot()
    );
}

#[tokio::test]
async fn create_service_account_and_the_credentials_secret() {
    let Some(endpoint) = endpoint().await else {
        return;
    };
    let mut wanted = spec();
    wanted.create_service_account = true;
    wanted.credentials_secret = Some(podidentity_api::CredentialsSecretSpec {
        name: "orders-aws".into(),
        token_path: "/var/run/secrets/openshift/serviceaccount/token".into(),
    });
    let w = world(endpoint, vec![binding("orders-s3", wanted)], vec![]).await;
    w.settle("orders-s3").await;
    let b = w.get("orders-s3").await;
    assert_eq!(World::ready(&b), ("True".into(), "Synced".into()));
    let arn = b.status.and_then(|s| s.role_arn).unwrap_or_default();
    let sa = w
        .service_accounts()
        .get("orders")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        sa.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "PodIdentityBinding" && o.name == "orders-s3")
    );
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), &w.namespace);
    let secret = secrets
        .get("orders-aws")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let text = secret
        .data
        .and_then(|d| {
            d.get("credentials")
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        })
        .unwrap_or_default();
    assert_eq!(
        text,
        format!(
            "[default]\nsts_regional_endpoints = regional\nrole_arn = {arn}\nweb_identity_token_file = /var/run/secrets/openshift/serviceaccount/token"
        )
    );
}

#[tokio::test]
async fn a_spec_change_updates_the_role_in_place() {
    let Some(endpoint) = endpoint().await else {
        return;
    };
    let w = world(
        endpoint,
        vec![binding("orders-s3", spec())],
        vec![service_account("orders")],
    )
    .await;
    w.settle("orders-s3").await;
    let first_id = w.get("orders-s3").await.status.and_then(|s| s.role_id);

    let mut changed = w.get("orders-s3").await;
    changed.spec.audience = "vault".into();
    changed.spec.permissions.managed_policy_arns =
        vec!["arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess".into()];
    changed.metadata.generation = Some(2);
    changed.metadata.managed_fields = None;
    w.bindings()
        .replace("orders-s3", &Default::default(), &changed)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    w.pass("orders-s3")
        .await
        .unwrap_or_else(|err| panic!("{err}"));

    let b = w.get("orders-s3").await;
    assert_eq!(
        b.status.as_ref().and_then(|s| s.role_id.clone()),
        first_id,
        "same role, changed in place"
    );
    let attached = Iam::new(w.iam())
        .list_attached_role_policies(&w.role_name("orders-s3"))
        .await
        .unwrap_or_default();
    assert_eq!(
        attached,
        ["arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess"]
    );
    let sa = w
        .service_accounts()
        .get("orders")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        sa.metadata
            .annotations
            .unwrap_or_default()
            .get("eks.amazonaws.com/audience")
            .map(String::as_str),
        Some("vault")
    );
}

/// Deletes the binding: the API server marks it as being deleted and keeps it while the
/// finalizer is on.
async fn start_deleting(w: &World, name: &str) {
    w.bindings()
        .delete(name, &Default::default())
        .await
        .unwrap_or_else(|err| panic!("{err}"));
}

/// The annotations taken back (an apply of nothing under the operator's field manager) is
/// asserted end to end as well (tests/e2e, scenario `lifecycle`).
#[tokio::test]
async fn deleting_a_binding_deletes_its_role_and_releases_the_finalizer() {
    let Some(endpoint) = endpoint().await else {
        return;
    };
    let w = world(
        endpoint,
        vec![binding("orders-s3", spec())],
        vec![service_account("orders")],
    )
    .await;
    w.settle("orders-s3").await;
    start_deleting(&w, "orders-s3").await;
    w.pass("orders-s3")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(w.role_error("orders-s3").await, Some(ErrorKind::NotFound));
    let gone_or_released = match w
        .bindings()
        .get_opt("orders-s3")
        .await
        .unwrap_or_else(|err| panic!("{err}"))
    {
        None => true,
        Some(b) => !b
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER),
    };
    assert!(
        gone_or_released,
        "the finalizer is released once cleanup is done"
    );
}

/// A binding deleted while its pass made its role, its finalizer not holding (a DELETE
/// the API server decided on the object as read before the finalizer landed): the pass
/// finds it gone when it writes the status, and cleans up as deletion would have.
#[tokio::test]
async fn a_binding_gone_during_its_pass_leaves_no_role_behind() {
    let Some(endpoint) = endpoint().await else {
        return;
    };
    let w = world(endpoint, vec![], vec![service_account("orders")]).await;
    // As the watch last saw it: finalizer on, not deleting; the API server has it no more.
    let mut seen = binding("orders-s3", spec());
    seen.metadata.finalizers = Some(vec![FINALIZER.into()]);
    seen.metadata.namespace = Some(w.namespace.clone());
    seen.metadata.generation = Some(1);
    seen.metadata.uid = Some("0b1d7f5e-0000-4000-8000-000000000001".into());
    seen.metadata.resource_version = Some("7".into());
    let outcome = reconcile_binding(&seen, &w.ctx, &w.memory).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(
        w.log.calls("CreateRole"),
        1,
        "the pass made the role before it found the binding gone"
    );
    assert_eq!(
        w.role_error("orders-s3").await,
        Some(ErrorKind::NotFound),
        "the role it made is deleted again"
    );
}

#[tokio::test]
async fn a_failed_cleanup_keeps_the_finalizer() {
    let Some(endpoint) = endpoint().await else {
        return;
    };
    let w = world(
        endpoint,
        vec![binding("orders-s3", spec())],
        vec![service_account("orders")],
    )
    .await;
    w.settle("orders-s3").await;
    start_deleting(&w, "orders-s3").await;
    w.faults
        .inject("DeleteRole", Fault::Fail(ErrorKind::Throttled));
    assert!(
        w.pass("orders-s3").await.is_err(),
        "unfinished cleanup is an error"
    );
    let b = w.get("orders-s3").await;
    assert!(
        b.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
    );
    assert!(
        Iam::new(w.iam())
            .get_role(&w.role_name("orders-s3"))
            .await
            .is_ok(),
        "the role is still there"
    );
    w.pass("orders-s3")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(w.role_error("orders-s3").await, Some(ErrorKind::NotFound));
}

#[tokio::test]
async fn a_role_that_is_not_ours_is_a_conflict() {
    let Some(endpoint) = endpoint().await else {
        return;
    };
    let w = world(
        endpoint,
        vec![binding("orders-s3", spec())],
        vec![service_account("orders")],
    )
    .await;
    Iam::new(w.iam())
        .create_role(podidentity_aws::NewRole {
            name: w.role_name("orders-s3"),
            path: "/".into(),
            trust_policy: r#"{"Version":"2012-10-17","Statement":[]}"#.into(),
            description: "hand made".into(),
            max_session_duration_seconds: 3600,
            permissions_boundary_arn: None,
            tags: BTreeMap::new(),
        })
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    w.settle("orders-s3").await;
    assert_eq!(
        World::ready(&w.get("orders-s3").await),
        ("False".into(), "RoleConflict".into())
    );
    let sa = w
        .service_accounts()
        .get("orders")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        !sa.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("eks.amazonaws.com/role-arn"),
        "no role, no annotation"
    );
}

#[tokio::test]
async fn an_annotation_removed_by_hand_is_put_back_without_iam() {
    let Some(endpoint) = endpoint().await else {
        return;
    };
    let w = world(
        endpoint,
        vec![binding("orders-s3", spec())],
        vec![service_account("orders")],
    )
    .await;
    w.settle("orders-s3").await;
    let patch =
        serde_json::json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": null}}});
    w.service_accounts()
        .patch(
            "orders",
            &Default::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    w.log.reset();
    // The ServiceAccount watch maps the change to this binding, which runs a pass.
    w.pass("orders-s3")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let sa = w
        .service_accounts()
        .get("orders")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let arn = w.get("orders-s3").await.status.and_then(|s| s.role_arn);
    assert_eq!(
        sa.metadata
            .annotations
            .unwrap_or_default()
            .get("eks.amazonaws.com/role-arn"),
        arn.as_ref()
    );
    assert_eq!(w.log.total(), 0, "{:?}", w.log.snapshot());
}

/// A binding stalled on a managed policy IAM does not have waits without writing: the
/// drift sweep does not call the missing attachment drift (it used to wake the binding
/// every interval, costing an AttachRolePolicy each time), its passes ask IAM nothing
/// until the slow re-check, and the re-check attaches the policy once it exists.
#[tokio::test]
async fn a_binding_stalled_on_a_missing_managed_policy_waits_without_writes() {
    use futures::StreamExt;
    use kube::core::DeserializeGuard;
    use kube::runtime::controller::Action;
    use kube::runtime::{reflector, watcher};
    use podidentity_controller::caches::Watched;
    use podidentity_controller::drift::sweep_once;

    let Some(endpoint) = endpoint().await else {
        return;
    };
    let policy = format!(
        "not-yet-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let arn = format!("arn:aws:iam::123456789012:policy/{policy}");
    let mut stalled = spec();
    stalled.permissions.managed_policy_arns = vec![arn.clone()];
    let w = world(
        endpoint.clone(),
        vec![binding("orders-s3", stalled)],
        vec![service_account("orders")],
    )
    .await;
    w.settle("orders-s3").await;
    let b = w.get("orders-s3").await;
    assert_eq!(
        World::ready(&b),
        ("False".into(), "ManagedPolicyNotFound".into())
    );

    w.log.reset();
    let action = w
        .pass("orders-s3")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(w.log.total(), 0, "{:?}", w.log.snapshot());
    assert_ne!(
        action,
        Action::await_change(),
        "a stalled binding is re-checked on a schedule"
    );

    let (store, mut writer) = reflector::store::<Watched>();
    writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(b.clone()))));
    let (wake, mut woken) = futures::channel::mpsc::unbounded();
    w.log.reset();
    let survey = sweep_once(&w.ctx, &w.memory, &store, &wake)
        .await
        .unwrap_or_else(|| panic!("the sweep failed"));
    drop(wake);
    assert!(
        survey.findings.is_empty(),
        "what the binding is stalled on is not drift: {:?}",
        survey.findings
    );
    assert_eq!(woken.next().await, None, "no binding woken");
    assert_eq!(w.log.writes(), 0, "{:?}", w.log.snapshot());

    // The policy appears; the pass asks again only when the re-check is due.
    let settings = podidentity_aws::testing::emulator_settings(&endpoint.iam);
    let raw = aws_sdk_iam::Client::new(&podidentity_aws::sdk::sdk_config(&settings).await);
    raw.create_policy()
        .policy_name(&policy)
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:ReceiveMessage","Resource":"*"}]}"#,
        )
        .send()
        .await
        .unwrap_or_else(|err| panic!("{err:?}"));
    w.log.reset();
    w.pass("orders-s3")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(w.log.total(), 0, "not before the re-check");
    let uid = b.metadata.uid.clone().unwrap_or_default();
    let mut applied = w
        .memory
        .applied(&uid)
        .unwrap_or_else(|| panic!("the pass keeps what it applied"));
    applied.missing_recheck_at = Some(std::time::Instant::now());
    w.memory.remember_applied(&uid, Some(applied));
    w.pass("orders-s3")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(w.log.calls("AttachRolePolicy"), 1, "{:?}", w.log.snapshot());
    let attached = Iam::new(w.iam())
        .list_attached_role_policies(&w.role_name("orders-s3"))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(attached, vec![arn]);
    assert_eq!(
        World::ready(&w.get("orders-s3").await),
        ("True".into(), "Synced".into())
    );
}

/// A deleted binding leaves nothing in the controller's memory: the pass that removes its
/// finalizer (and any after) makes no record again.
#[tokio::test]
async fn a_deleted_binding_leaves_nothing_in_memory() {
    let Some(endpoint) = endpoint().await else {
        return;
    };
    let w = world(
        endpoint,
        vec![binding("orders-s3", spec())],
        vec![service_account("orders")],
    )
    .await;
    w.settle("orders-s3").await;
    let uid = w.get("orders-s3").await.metadata.uid.unwrap_or_default();
    start_deleting(&w, "orders-s3").await;
    let deleted = w.get("orders-s3").await;
    reconcile_binding(&deleted, &w.ctx, &w.memory)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let uid_here = deleted.metadata.uid.clone().unwrap_or(uid);
    assert!(
        !w.memory.holds(&uid_here),
        "the deleted binding's record is gone"
    );
    let left = w
        .bindings()
        .get_opt("orders-s3")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(left.is_none(), "and so is the binding: {left:?}");
}
