//! Roles in another account: a namespace a PodIdentityPolicy places in one of the
//! configured accounts gets its roles there, through credentials assumed into that
//! account (moto acts in the account an AssumeRole names), and the drift sweep reads each
//! account with its own client. Kubernetes is a real kube-apiserver (scripts/test starts one;
//! a namespace per test, which the caches label as the policy selects); IAM and STS are moto.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::{DeserializeGuard, ObjectMeta, PartialObjectMeta};
use kube::runtime::{reflector, watcher};
use podidentity_api::config::{AccountConfig, AwsConfig, OidcConfig, OperatorConfig};
use podidentity_api::{
    PodIdentityBinding, PodIdentityBindingSpec, PodIdentityPolicy, PodIdentityPolicySpec, Statement,
};
use podidentity_aws::api::{Iam, IamApi};
use podidentity_aws::counting::{CallLog, Counted};
use podidentity_aws::error::ErrorKind;
use podidentity_aws::sdk::{SdkIam, assumed_config, sdk_config};
use podidentity_aws::testing::{emulator_endpoint, emulator_settings, unique_name};
use podidentity_controller::Context;
use podidentity_controller::binding::memory::Memory;
use podidentity_controller::binding::reconcile_binding;
use podidentity_controller::caches::Watched;
use podidentity_controller::drift::sweep_once;
use serde_json::json;

/// moto's account for the "testing" credentials.
const OWN: &str = "123456789012";
const TEAM: &str = "444455556666";
const ISSUER: &str = "oidc.example.com/id/ACCOUNTS";

struct World {
    client: kube::Client,
    ctx: Arc<Context>,
    memory: Arc<Memory>,
    own_log: CallLog,
    team_log: CallLog,
    /// IAM in the team's account, for changes made outside the operator.
    team_raw: aws_sdk_iam::Client,
    cluster: String,
    /// The test's namespace, which the policy places.
    namespace: String,
    /// The policy cache's writer, to place the namespace elsewhere.
    policies: std::sync::Mutex<reflector::store::Writer<DeserializeGuard<PodIdentityPolicy>>>,
}

impl World {
    async fn pass(&self, name: &str) -> Result<(), podidentity_controller::Error> {
        reconcile_binding(&self.binding(name).await, &self.ctx, &self.memory)
            .await
            .map(|_| ())
    }

    fn bindings(&self) -> Api<PodIdentityBinding> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn binding(&self, name: &str) -> PodIdentityBinding {
        self.bindings()
            .get(name)
            .await
            .unwrap_or_else(|err| panic!("{err}"))
    }

    fn role_name(&self, binding: &str) -> String {
        format!("{}-{}.{binding}", self.cluster, self.namespace)
    }

    /// Deletes the binding: the API server keeps it, being deleted, while the finalizer is on.
    async fn delete(&self, name: &str) {
        self.bindings()
            .delete(name, &Default::default())
            .await
            .unwrap_or_else(|err| panic!("{err}"));
    }

    /// The platform admin points the policy at another account.
    fn place_in(&self, account: &str) {
        let mut policy = tenants_policy(account);
        policy.metadata.resource_version = Some(account.into());
        self.policies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(policy))));
    }

    fn team(&self) -> &dyn IamApi {
        self.ctx
            .iam_in(Some(TEAM))
            .unwrap_or_else(|err| panic!("{err}"))
    }
}

fn ready(binding: &PodIdentityBinding) -> (String, String, String) {
    binding
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| {
            (
                c.status.to_string(),
                c.reason.to_string(),
                c.message.to_string(),
            )
        })
        .unwrap_or_default()
}

fn binding(name: &str) -> PodIdentityBinding {
    let mut spec = PodIdentityBindingSpec {
        service_account_name: name.into(),
        ..PodIdentityBindingSpec::default()
    };
    spec.permissions.statements.push(Statement {
        actions: vec!["sqs:SendMessage".into()],
        resources: vec![format!("arn:aws:sqs:us-east-1:{TEAM}:shop_orders")],
        ..Statement::default()
    });
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

/// moto, and the test control plane; `None`: the test is skipped.
async fn endpoints() -> Option<(String, kube::Client)> {
    let iam = emulator_endpoint()?;
    Some((iam, podidentity_test_cluster::client().await?))
}

/// A world whose namespace (labelled `tenant: shop`) is placed in `placed_in` by a
/// PodIdentityPolicy.
async fn world(endpoint: &(String, kube::Client), placed_in: &str, bindings: &[&str]) -> World {
    world_with_pods(endpoint, placed_in, bindings, |_, _| Vec::new()).await
}

/// [`world`] with the running pods `pods` makes, given the cluster's name and the
/// namespace's.
async fn world_with_pods(
    (endpoint, client): &(String, kube::Client),
    placed_in: &str,
    bindings: &[&str],
    pods: impl Fn(&str, &str) -> Vec<Pod>,
) -> World {
    let cluster = unique_name("acct").replace('-', "");
    let client = client.clone();
    let namespace = podidentity_test_cluster::namespace(&client, "shop").await;
    let create = PostParams::default();
    for name in bindings {
        Api::<ServiceAccount>::namespaced(client.clone(), &namespace)
            .create(&create, &service_account(name))
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        Api::<PodIdentityBinding>::namespaced(client.clone(), &namespace)
            .create(&create, &binding(name))
            .await
            .unwrap_or_else(|err| panic!("{err}"));
    }
    let pod_api = Api::<Pod>::namespaced(client.clone(), &namespace);
    for pod in pods(&cluster, &namespace) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        pod_api
            .create(&create, &pod)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        // No kubelet here: the test says the pod runs, as a kubelet would.
        pod_api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Running"}})),
            )
            .await
            .unwrap_or_else(|err| panic!("{err}"));
    }
    let config = OperatorConfig {
        cluster_name: cluster.clone(),
        oidc: OidcConfig {
            issuer_url: Some(format!("https://{ISSUER}")),
            ..OidcConfig::default()
        },
        aws: AwsConfig {
            account_id: Some(OWN.into()),
            region: Some("us-east-1".into()),
            ..AwsConfig::default()
        },
        accounts: vec![AccountConfig {
            id: TEAM.into(),
            role_arn: format!("arn:aws:iam::{TEAM}:role/podidentity-operator"),
            max_requests_per_second: Some(20.0),
        }],
        ..OperatorConfig::default()
    };
    let settings = emulator_settings(endpoint);
    let shared = sdk_config(&settings).await;
    let team_config = assumed_config(&shared, &config.accounts[0].role_arn, &cluster).await;
    let (own_log, team_log) = (CallLog::default(), CallLog::default());
    let own: Arc<dyn IamApi> = Arc::new(Counted::new(
        SdkIam::from_config(&shared, &settings),
        own_log.clone(),
    ));
    let team: Arc<dyn IamApi> = Arc::new(Counted::new(
        SdkIam::from_config(&team_config, &settings),
        team_log.clone(),
    ));

    let (policies, mut policy_writer) = reflector::store();
    policy_writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(
        tenants_policy(placed_in),
    ))));
    let (namespaces, mut namespace_writer) = reflector::store();
    namespace_writer.apply_watcher_event(&watcher::Event::Apply(PartialObjectMeta::<Namespace> {
        metadata: ObjectMeta {
            name: Some(namespace.clone()),
            labels: Some(BTreeMap::from([("tenant".into(), "shop".into())])),
            ..ObjectMeta::default()
        },
        ..PartialObjectMeta::default()
    }));
    let ctx = Context::new(client.clone(), own, config)
        .with_account(TEAM, team)
        .with_policy_caches(policies, namespaces);
    World {
        client,
        ctx: Arc::new(ctx),
        memory: Arc::new(Memory::default()),
        own_log,
        team_log,
        team_raw: aws_sdk_iam::Client::new(&team_config),
        cluster,
        namespace,
        policies: std::sync::Mutex::new(policy_writer),
    }
}

/// The policy placing `shop` in `account`.
fn tenants_policy(account: &str) -> PodIdentityPolicy {
    PodIdentityPolicy::new(
        "tenants",
        serde_json::from_value::<PodIdentityPolicySpec>(json!({
            "namespaceSelector": {"matchLabels": {"tenant": "shop"}},
            "account": account,
        }))
        .unwrap_or_else(|err| panic!("{err}")),
    )
}

/// A pod of ServiceAccount `service_account` given `role_arn` by the webhook.
fn pod_using(service_account: &str, role_arn: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{service_account}-1")},
        "spec": {"serviceAccountName": service_account, "containers": [{
            "name": "app", "image": "x",
            "env": [{"name": "AWS_ROLE_ARN", "value": role_arn},
                    {"name": "AWS_WEB_IDENTITY_TOKEN_FILE",
                     "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}]}]},
    }))
    .unwrap_or_else(|err| panic!("{err}"))
}

#[tokio::test]
async fn a_placed_namespaces_role_is_made_kept_and_deleted_in_its_account() {
    let Some(endpoint) = endpoints().await else {
        return;
    };
    let w = world(&endpoint, TEAM, &["orders"]).await;
    for _ in 0..2 {
        w.pass("orders").await.unwrap_or_else(|err| panic!("{err}"));
    }
    let b = w.binding("orders").await;
    assert_eq!(ready(&b).0, "True", "{:?}", ready(&b));
    let status = b.status.clone().unwrap_or_default();
    let arn = status.role_arn.clone().unwrap_or_default();
    assert_eq!(
        arn,
        format!(
            "arn:aws:iam::{TEAM}:role/podidentity/{}/{}",
            w.cluster,
            w.role_name("orders")
        )
    );

    // The role is in the team's account, trusting that account's provider, and not in
    // the operator's own.
    let role = Iam::new(w.team())
        .get_role(&w.role_name("orders"))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(role.arn, arn);
    assert!(
        role.trust_policy
            .contains(&format!("arn:aws:iam::{TEAM}:oidc-provider/{ISSUER}")),
        "{}",
        role.trust_policy
    );
    let own = Iam::new(w.ctx.iam.as_ref())
        .get_role(&w.role_name("orders"))
        .await;
    assert_eq!(own.err().map(|e| e.kind), Some(ErrorKind::NotFound));
    assert_eq!(w.own_log.writes(), 0, "{:?}", w.own_log.snapshot());
    assert!(
        w.team_log.calls("CreateRole") == 1,
        "{:?}",
        w.team_log.snapshot()
    );

    // The ServiceAccount names the role in the team's account.
    let sa = Api::<ServiceAccount>::namespaced(w.client.clone(), &w.namespace)
        .get("orders")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        sa.metadata
            .annotations
            .unwrap_or_default()
            .get("eks.amazonaws.com/role-arn"),
        Some(&arn)
    );

    // The sweep reads each account with its own client, and finds the role in line.
    let (store, mut writer) = reflector::store::<Watched>();
    writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(b.clone()))));
    let (wake, _woken) = futures::channel::mpsc::unbounded();
    w.own_log.reset();
    w.team_log.reset();
    let survey = sweep_once(&w.ctx, &w.memory, &store, &wake)
        .await
        .unwrap_or_else(|| panic!("the sweep failed"));
    assert!(survey.findings.is_empty(), "{:?}", survey.findings);
    assert!(
        w.own_log.calls("GetAccountAuthorizationDetails") >= 1
            && w.team_log.calls("GetAccountAuthorizationDetails") >= 1,
        "own {:?}, team {:?}",
        w.own_log.snapshot(),
        w.team_log.snapshot()
    );

    // Deleted by hand in the team's account: the sweep finds it missing there.
    let name = w.role_name("orders");
    w.team_raw
        .delete_role_policy()
        .role_name(&name)
        .policy_name(podidentity_iam::build::INLINE_POLICY_NAME)
        .send()
        .await
        .ok();
    w.team_raw
        .delete_role()
        .role_name(&name)
        .send()
        .await
        .unwrap_or_else(|err| panic!("{err:?}"));
    let survey = sweep_once(&w.ctx, &w.memory, &store, &wake)
        .await
        .unwrap_or_else(|| panic!("the sweep failed"));
    assert_eq!(
        survey.findings.keys().collect::<Vec<_>>(),
        [&w.role_name("orders")]
    );
    w.pass("orders").await.unwrap_or_else(|err| panic!("{err}"));
    Iam::new(w.team())
        .get_role(&w.role_name("orders"))
        .await
        .unwrap_or_else(|err| panic!("made again in its account: {err}"));

    // Deleting the binding deletes the role where it lives.
    w.delete("orders").await;
    reconcile_binding(&w.binding("orders").await, &w.ctx, &w.memory)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let gone = Iam::new(w.team()).get_role(&w.role_name("orders")).await;
    assert_eq!(gone.err().map(|e| e.kind), Some(ErrorKind::NotFound));
}

#[tokio::test]
async fn an_account_the_operator_does_not_act_in_is_refused_with_no_iam_call() {
    let Some(endpoint) = endpoints().await else {
        return;
    };
    let w = world(&endpoint, "777788889999", &["orders"]).await;
    for _ in 0..2 {
        w.pass("orders").await.unwrap_or_else(|err| panic!("{err}"));
    }
    let (status, reason, message) = ready(&w.binding("orders").await);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "GuardrailViolation")
    );
    assert!(
        message.contains("PodIdentityPolicy tenants (spec.account)")
            && message.contains("not among the operator's accounts"),
        "{message}"
    );
    assert_eq!(w.own_log.total(), 0, "{:?}", w.own_log.snapshot());
    assert_eq!(w.team_log.total(), 0, "{:?}", w.team_log.snapshot());
}

#[tokio::test]
async fn a_binding_deleted_while_its_namespace_moves_takes_the_role_it_left_too() {
    let Some(endpoint) = endpoints().await else {
        return;
    };
    // A pod still runs with the role in the team's account.
    let w = world_with_pods(&endpoint, TEAM, &["orders"], |cluster, namespace| {
        let role = format!("{cluster}-{namespace}.orders");
        vec![pod_using(
            "orders",
            &format!("arn:aws:iam::{TEAM}:role/podidentity/{cluster}/{role}"),
        )]
    })
    .await;
    for _ in 0..2 {
        w.pass("orders").await.unwrap_or_else(|err| panic!("{err}"));
    }
    let in_team = w
        .binding("orders")
        .await
        .status
        .and_then(|s| s.role_arn)
        .unwrap_or_default();
    assert!(in_team.contains(TEAM), "{in_team}");

    // Moved to the operator's own account: the role is made there and the status
    // remembers the team's, which the pod still uses.
    w.place_in(OWN);
    w.pass("orders").await.unwrap_or_else(|err| panic!("{err}"));
    let moved = w.binding("orders").await;
    let status = moved.status.clone().unwrap_or_default();
    let in_own = status.role_arn.clone().unwrap_or_default();
    assert!(in_own.contains(OWN), "{in_own}");
    assert_eq!(
        status.account_move.map(|m| m.from_role_arns),
        Some(vec![in_team.clone()])
    );
    let migrating = moved
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Migrating"))
        .map(|c| (c.status.to_string(), c.reason.to_string()));
    assert_eq!(
        migrating,
        Some(("True".to_string(), "MovingAccount".to_string()))
    );
    let name = w.role_name("orders");
    Iam::new(w.team())
        .get_role(&name)
        .await
        .unwrap_or_else(|err| panic!("the team's role went with a pod on it: {err}"));
    Iam::new(w.ctx.iam.as_ref())
        .get_role(&name)
        .await
        .unwrap_or_else(|err| panic!("no role in the own account: {err}"));

    // Deleted mid-move: both roles go.
    w.delete("orders").await;
    let deleting = w.binding("orders").await;
    assert!(
        deleting.metadata.deletion_timestamp.is_some(),
        "held by the finalizer"
    );
    reconcile_binding(&deleting, &w.ctx, &w.memory)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    for (account, iam) in [("team", w.team()), ("own", w.ctx.iam.as_ref())] {
        let gone = Iam::new(iam).get_role(&name).await;
        assert_eq!(
            gone.err().map(|e| e.kind),
            Some(ErrorKind::NotFound),
            "the role in the {account} account"
        );
    }
}

#[tokio::test]
async fn a_role_left_in_an_account_no_longer_configured_does_not_hold_the_binding() {
    let Some(endpoint) = endpoints().await else {
        return;
    };
    let w = world(&endpoint, OWN, &["orders"]).await;
    for _ in 0..2 {
        w.pass("orders").await.unwrap_or_else(|err| panic!("{err}"));
    }
    // The status remembers a role in an account since taken out of `accounts`.
    let gone_account = "arn:aws:iam::999999999999:role/podidentity/x/orders";
    // Written as the operator writes its status (server-side apply, its field manager), so
    // that a pass which leaves the field out takes it away.
    let remember_gone_account = || async {
        w.bindings()
            .patch_status(
                "orders",
                &PatchParams::apply(podidentity_api::FIELD_MANAGER).force(),
                &Patch::Apply(json!({
                    "apiVersion": "podidentity.io/v1alpha1",
                    "kind": "PodIdentityBinding",
                    "status": {"accountMove": {"fromRoleArns": [gone_account]}},
                })),
            )
            .await
            .unwrap_or_else(|err| panic!("{err}"));
    };
    remember_gone_account().await;
    let writes_before = w.own_log.writes() + w.team_log.writes();
    reconcile_binding(&w.binding("orders").await, &w.ctx, &w.memory)
        .await
        .unwrap_or_else(|err| panic!("the pass is held up: {err}"));
    let passed = w.binding("orders").await;
    assert_eq!(ready(&passed).0, "True");
    assert_eq!(
        passed.status.and_then(|s| s.account_move),
        None,
        "the move to an account out of reach is not waited on"
    );
    assert_eq!(
        w.own_log.writes() + w.team_log.writes(),
        writes_before,
        "no IAM write for a role the operator cannot reach"
    );
    // And deletion is not held up either.
    remember_gone_account().await;
    w.delete("orders").await;
    reconcile_binding(&w.binding("orders").await, &w.ctx, &w.memory)
        .await
        .unwrap_or_else(|err| panic!("deletion held up: {err}"));
    let left = w
        .bindings()
        .get_opt("orders")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(left.is_none(), "the finalizer is released: {left:?}");
}
