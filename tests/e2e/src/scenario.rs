//! One scenario's world on the shared cluster: its own namespaces, its own operator
//! `clusterName` (so its IAM roles have their own name prefix and path), a counting proxy
//! in front of moto, and helpers that read what a user reads (status, Events, IAM). When
//! it ends, pass or fail, everything it made in the cluster is removed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use podidentity_api::PodIdentityBinding;
use podidentity_api::conditions::Condition;
use podidentity_aws::api::Iam;
use podidentity_aws::sdk::SdkIam;
use podidentity_aws::testing::emulator_settings;
use serde_json::{Value, json};

use crate::chart::OPERATOR_NAMESPACE;
use crate::chart::{self, RELEASE, Rendered};
use crate::cluster::Cluster;
use crate::error::HarnessError;
use crate::iam_proxy::IamProxy;
use crate::operator::{Operator, Replica};
use crate::wait::{check, until};

/// The account moto answers for.
pub const ACCOUNT: &str = "123456789012";

/// What to remove when a scenario ends, shared with the runner so it survives a panic.
#[derive(Default)]
pub struct Leftovers {
    namespaces: Mutex<Vec<String>>,
    webhook_configurations: Mutex<Vec<String>>,
    validating_configurations: Mutex<Vec<String>>,
    /// PodIdentityPolicies (cluster-scoped, so removed by name).
    policies: Mutex<Vec<String>>,
    /// The scenario changed the CRD: put `crds/` back.
    crd_changed: std::sync::atomic::AtomicBool,
}

pub struct Scenario {
    pub cluster: Arc<Cluster>,
    /// The operator's `clusterName` (role name prefix and path).
    pub cluster_name: String,
    /// Namespace prefix.
    pub tag: String,
    pub iam: IamProxy,
    /// moto directly (not through the proxy): the test's own reads and outside changes.
    pub moto: SdkIam,
    pub dir: PathBuf,
    /// Where the audit log stood when the scenario began.
    pub audit_mark: u64,
    leftovers: Arc<Leftovers>,
}

impl Scenario {
    pub async fn new(
        cluster: Arc<Cluster>,
        index: usize,
        leftovers: Arc<Leftovers>,
    ) -> Result<Self, HarnessError> {
        let tag = format!("e2e{index:02}");
        let dir = cluster.work_dir.join(&tag);
        std::fs::create_dir_all(&dir)
            .map_err(|e| HarnessError::new(format!("{}: {e}", dir.display())))?;
        let iam = IamProxy::start(&cluster.moto).await?;
        let moto = SdkIam::connect(&emulator_settings(&cluster.moto)).await;
        let audit_mark = cluster.audit.as_ref().map(|a| a.mark()).unwrap_or(0);
        Ok(Self {
            cluster_name: format!("{tag}-{:04x}", std::process::id() % 0xffff),
            tag,
            cluster,
            iam,
            moto,
            dir,
            audit_mark,
            leftovers,
        })
    }

    pub fn client(&self) -> kube::Client {
        self.cluster.client.clone()
    }

    /// The chart's values for this scenario: its cluster name, moto behind the proxy.
    pub fn values(&self) -> Value {
        json!({
            "clusterName": self.cluster_name,
            "aws": {
                "region": "us-east-1",
                "endpointUrl": self.iam.url,
                "accountId": ACCOUNT,
                "maxRequestsPerSecond": 100,
            },
            "logFormat": "text",
        })
    }

    /// Renders the chart with this scenario's values merged with `overrides`, and installs
    /// its RBAC (ServiceAccounts, roles and bindings) and its ConfigMap exactly as rendered
    /// (the ConfigMap, as `helm upgrade` would, replacing the last install's).
    pub async fn install(&self, overrides: Value) -> Rendered {
        let mut values = self.values();
        merge(&mut values, overrides);
        let rendered = chart::render(&values).await.expect("render the chart");
        for object in rendered.rbac() {
            chart::apply(&self.cluster.client, object)
                .await
                .expect("install the chart's RBAC");
        }
        let config_map = rendered.config_map().expect("the chart's ConfigMap");
        chart::apply(&self.cluster.client, config_map)
            .await
            .expect("install the chart's ConfigMap");
        rendered
    }

    /// One controller replica, started as the chart starts it.
    pub async fn controller(&self, rendered: &Rendered, replica: &Replica) -> Operator {
        Operator::controller(&self.cluster, rendered, &self.dir, replica)
            .await
            .expect("start the controller")
    }

    /// The usual: chart defaults (plus overrides), one controller, waited until ready.
    pub async fn start_controller(&self, overrides: Value) -> (Rendered, Operator) {
        let rendered = self.install(overrides).await;
        let mut controller = self
            .controller(
                &rendered,
                &Replica::named(&format!("{}-controller", self.tag)),
            )
            .await;
        controller.wait_ready(Duration::from_secs(60)).await;
        (rendered, controller)
    }

    /// The webhook, started as the chart starts it, and registered with the API server
    /// through the chart's MutatingWebhookConfiguration (pointed at this process).
    pub async fn start_webhook(&self, rendered: &Rendered) -> Operator {
        self.start_webhook_for(rendered, None).await
    }

    /// The webhook, registered for the pods of `namespace` only (when given): the other
    /// scenarios' pods never meet it.
    pub async fn start_webhook_for(
        &self,
        rendered: &Rendered,
        namespace: Option<&str>,
    ) -> Operator {
        let mut webhook = Operator::webhook(
            &self.cluster,
            rendered,
            &self.dir,
            &format!("{}-webhook", self.tag),
        )
        .await
        .expect("start the webhook");
        webhook.wait_ready(Duration::from_secs(60)).await;
        let configuration = rendered
            .only("MutatingWebhookConfiguration")
            .cloned()
            .expect("the chart renders a MutatingWebhookConfiguration");
        let name = format!("{}-{}", RELEASE, self.tag);
        self.point_at(configuration, &name, &webhook, "/mutate", namespace)
            .await;
        if let Ok(mut names) = self.leftovers.webhook_configurations.lock() {
            names.push(name);
        }
        webhook
    }

    /// The chart's ValidatingWebhookConfiguration for bindings, pointed at this webhook
    /// process and confined to `namespace` (other scenarios run beside this one).
    pub async fn register_binding_admission(
        &self,
        rendered: &Rendered,
        webhook: &Operator,
        namespace: &str,
    ) {
        let configuration = rendered
            .only("ValidatingWebhookConfiguration")
            .cloned()
            .expect("the chart renders a ValidatingWebhookConfiguration");
        let name = format!("{}-{}-bindings", RELEASE, self.tag);
        self.point_at(
            configuration,
            &name,
            webhook,
            "/validate-bindings",
            Some(namespace),
        )
        .await;
        if let Ok(mut names) = self.leftovers.validating_configurations.lock() {
            names.push(name);
        }
    }

    /// Applies one of the chart's webhook configurations under `name`, its hooks calling
    /// `path` on this webhook process (trusting the harness's CA), optionally confined to
    /// one namespace.
    async fn point_at(
        &self,
        mut configuration: Value,
        name: &str,
        webhook: &Operator,
        path: &str,
        namespace: Option<&str>,
    ) {
        configuration["metadata"]["name"] = json!(name);
        let https = webhook.https.expect("the webhook serves HTTPS");
        let ca = base64_encode(&self.cluster.ca_pem);
        if let Some(hooks) = configuration["webhooks"].as_array_mut() {
            for hook in hooks {
                hook["clientConfig"] =
                    json!({"url": format!("https://{https}{path}"), "caBundle": ca});
                if let Some(namespace) = namespace {
                    hook["namespaceSelector"] =
                        json!({"matchLabels": {"kubernetes.io/metadata.name": namespace}});
                }
            }
        }
        chart::apply(&self.cluster.client, &configuration)
            .await
            .unwrap_or_else(|err| panic!("register webhook configuration {name}: {err}"));
    }

    /// `podidentity doctor ARGS -o json` as an admin runs it, handed the chart's rendered
    /// configuration (`--config`); its exit code and report.
    pub async fn doctor(&self, rendered: &Rendered, args: &[&str]) -> (i32, Value) {
        let config = self.dir.join("doctor-config.yaml");
        std::fs::write(&config, rendered.config_yaml().expect("config")).expect("write config");
        let config = config.display().to_string();
        let mut all = args.to_vec();
        all.extend(["--config", config.as_str()]);
        self.doctor_on(&self.cluster.admin_kubeconfig, &all).await
    }

    /// Runs `program` (the binary, or a link to it under another name) as a user at a
    /// shell would: with `kubeconfig`, test credentials for AWS, and no configuration
    /// from the environment.
    pub async fn run_as_user(
        &self,
        program: &std::path::Path,
        kubeconfig: &std::path::Path,
        args: &[&str],
    ) -> std::process::Output {
        tokio::process::Command::new(program)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("PODIDENTITY_CONFIG")
            .output()
            .await
            .unwrap_or_else(|err| panic!("run {}: {err}", program.display()))
    }

    /// `podidentity doctor ARGS -o json` as an admin of the API server `kubeconfig` names
    /// runs it, with nothing but `args`: the configuration is what doctor finds in the
    /// cluster (the chart's ConfigMap). Its exit code and report (or its output).
    pub async fn doctor_on(&self, kubeconfig: &std::path::Path, args: &[&str]) -> (i32, Value) {
        let args: Vec<&str> = ["doctor"]
            .into_iter()
            .chain(args.iter().copied())
            .chain(["-o", "json"])
            .collect();
        let output = self
            .run_as_user(&self.cluster.binary, kubeconfig, &args)
            .await;
        let code = output.status.code().unwrap_or(-1);
        let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
            json!({"stdout": String::from_utf8_lossy(&output.stdout),
                   "stderr": String::from_utf8_lossy(&output.stderr)})
        });
        (code, report)
    }

    /// A client acting as `user`, with what RBAC grants that user.
    pub async fn client_as(&self, user: &str) -> kube::Client {
        crate::cluster::client_as(&self.cluster.admin_kubeconfig, user)
            .await
            .expect("an impersonating client")
    }

    /// Changes the installed PodIdentityBinding CRD (put back from `crds/` when the
    /// scenario ends).
    pub async fn change_crd(&self, change: impl FnOnce(&mut serde_json::Value)) {
        self.change_crd_named("podidentitybindings.podidentity.io", change)
            .await;
    }

    /// Changes one installed CRD of ours (put back from `crds/` when the scenario ends):
    /// an older CRD, as a cluster that never upgraded its `crds/` holds it.
    pub async fn change_crd_named(&self, name: &str, change: impl FnOnce(&mut serde_json::Value)) {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        self.leftovers
            .crd_changed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let api: Api<CustomResourceDefinition> = Api::all(self.client());
        let current = api.get(name).await.expect("the CRD");
        let mut value = serde_json::to_value(&current).expect("CRD as JSON");
        change(&mut value);
        let changed: CustomResourceDefinition = serde_json::from_value(value).expect("changed CRD");
        api.replace(name, &PostParams::default(), &changed)
            .await
            .expect("replace the CRD");
        // Let the API server serve the changed schema.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    /// A new namespace `<tag>-<suffix>`, removed when the scenario ends.
    pub async fn namespace(&self, suffix: &str) -> String {
        self.namespace_labelled(suffix, json!({})).await
    }

    pub async fn namespace_labelled(&self, suffix: &str, labels: Value) -> String {
        let name = format!("{}-{suffix}", self.tag);
        let api: Api<Namespace> = Api::all(self.client());
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
                .expect("namespace");
        api.create(&PostParams::default(), &namespace)
            .await
            .expect("create namespace");
        if let Ok(mut names) = self.leftovers.namespaces.lock() {
            names.push(name.clone());
        }
        name
    }

    /// Creates or replaces the PodIdentityPolicy `<tag>-<suffix>` (server-side apply, as
    /// a GitOps tool would), removed when the scenario ends; returns its name.
    pub async fn apply_policy(&self, suffix: &str, spec: Value) -> String {
        let name = format!("{}-{suffix}", self.tag);
        let api: Api<podidentity_api::PodIdentityPolicy> = Api::all(self.client());
        let policy = json!({
            "apiVersion": "podidentity.io/v1alpha1",
            "kind": "PodIdentityPolicy",
            "metadata": {"name": name},
            "spec": spec,
        });
        api.patch(
            &name,
            &PatchParams::apply("platform-team").force(),
            &Patch::Apply(&policy),
        )
        .await
        .expect("apply the PodIdentityPolicy");
        if let Ok(mut names) = self.leftovers.policies.lock()
            && !names.contains(&name)
        {
            names.push(name.clone());
        }
        name
    }

    /// Waits until the policy's status describes its current generation and `holds`.
    pub async fn wait_policy_status(
        &self,
        name: &str,
        what: &str,
        holds: impl Fn(&podidentity_api::PodIdentityPolicyStatus) -> bool,
    ) -> podidentity_api::PodIdentityPolicyStatus {
        let api: Api<podidentity_api::PodIdentityPolicy> = Api::all(self.client());
        let holds = &holds;
        until(
            &format!("PodIdentityPolicy {name}: {what}"),
            Duration::from_secs(60),
            || {
                let api = api.clone();
                async move {
                    let policy = api.get(name).await.map_err(|e| e.to_string())?;
                    let status = policy.status.clone().unwrap_or_default();
                    check(
                        status.observed_generation == policy.metadata.generation && holds(&status),
                        || format!("{status:?}"),
                    )?;
                    Ok(status)
                }
            },
        )
        .await
    }

    /// Sets a namespace's labels (merged; `null` removes one).
    pub async fn label_namespace(&self, namespace: &str, labels: Value) {
        let api: Api<Namespace> = Api::all(self.client());
        api.patch(
            namespace,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": labels}})),
        )
        .await
        .expect("label the namespace");
    }

    pub fn bindings(&self, namespace: &str) -> Api<PodIdentityBinding> {
        Api::namespaced(self.client(), namespace)
    }

    pub fn service_accounts(&self, namespace: &str) -> Api<ServiceAccount> {
        Api::namespaced(self.client(), namespace)
    }

    pub async fn create_service_account(
        &self,
        namespace: &str,
        name: &str,
        annotations: Value,
    ) -> ServiceAccount {
        let account: ServiceAccount = serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations}
        }))
        .expect("ServiceAccount");
        self.service_accounts(namespace)
            .create(&PostParams::default(), &account)
            .await
            .expect("create ServiceAccount")
    }

    /// Creates a binding from its spec (JSON, as a user writes it).
    pub async fn create_binding(
        &self,
        namespace: &str,
        name: &str,
        spec: Value,
    ) -> PodIdentityBinding {
        let binding: PodIdentityBinding = serde_json::from_value(json!({
            "apiVersion": "podidentity.io/v1alpha1",
            "kind": "PodIdentityBinding",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }))
        .expect("binding");
        // kube-apiserver 1.24's CEL answers a few creates under heavy concurrent load
        // with a 422 "internal error: runtime error: index out of range" from the sid
        // rule; the same object is accepted when sent again (as a user's retry would).
        let mut attempts = 0;
        loop {
            match self
                .bindings(namespace)
                .create(&PostParams::default(), &binding)
                .await
            {
                Err(kube::Error::Api(status))
                    if status.code == 422
                        && status.message.contains("internal error")
                        && attempts < 5 =>
                {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                result => {
                    return result
                        .unwrap_or_else(|e| panic!("create binding {namespace}/{name}: {e}"));
                }
            }
        }
    }

    pub async fn patch_spec(&self, namespace: &str, name: &str, spec: Value) {
        self.bindings(namespace)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": spec})),
            )
            .await
            .expect("patch binding");
    }

    pub async fn delete_binding(&self, namespace: &str, name: &str) {
        self.bindings(namespace)
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete binding");
    }

    pub async fn wait_gone(&self, namespace: &str, name: &str) {
        let api = self.bindings(namespace);
        until(
            &format!("binding {namespace}/{name} to go"),
            Duration::from_secs(60),
            || {
                let api = api.clone();
                async move {
                    match api.get_opt(name).await {
                        Ok(None) => Ok(()),
                        Ok(Some(b)) => Err(format!("still there: {:?}", b.status)),
                        Err(e) => Err(e.to_string()),
                    }
                }
            },
        )
        .await
    }

    /// Waits until the binding's condition `type_` has `status` (and `reason`, if given)
    /// for its current generation.
    pub async fn wait_condition(
        &self,
        namespace: &str,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> PodIdentityBinding {
        let api = self.bindings(namespace);
        until(
            &format!(
                "{namespace}/{name} {type_}={status} {}",
                reason.unwrap_or("")
            ),
            Duration::from_secs(60),
            || {
                let api = api.clone();
                async move {
                    let binding = api.get(name).await.map_err(|e| e.to_string())?;
                    let holds = condition(&binding, type_).is_some_and(|c| {
                        c.status == status
                            && reason.is_none_or(|r| c.reason == r)
                            && c.observed_generation == binding.metadata.generation
                    });
                    check(holds, || format!("{:?}", binding.status))?;
                    Ok(binding)
                }
            },
        )
        .await
    }

    pub async fn wait_ready(&self, namespace: &str, name: &str) -> PodIdentityBinding {
        self.wait_condition(namespace, name, "Ready", "True", None)
            .await
    }

    /// Waits until the binding is Ready; its role's ARN.
    pub async fn wait_role_arn(&self, namespace: &str, name: &str) -> String {
        self.wait_ready(namespace, name)
            .await
            .status
            .and_then(|status| status.role_arn)
            .unwrap_or_else(|| panic!("{namespace}/{name} is Ready with no role"))
    }

    /// Events about one binding (or any object of that name), oldest first.
    pub async fn events(&self, namespace: &str, name: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client(), namespace);
        let mut events: Vec<Event> = api
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect();
        events.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        events
    }

    /// Waits for an Event with `reason` about `name`; returns its note.
    pub async fn wait_event(&self, namespace: &str, name: &str, reason: &str) -> String {
        until(
            &format!("Event {reason} on {namespace}/{name}"),
            Duration::from_secs(60),
            || async move {
                let events = self.events(namespace, name).await;
                events
                    .iter()
                    .find(|e| e.reason.as_deref() == Some(reason))
                    .map(|e| e.note.clone().unwrap_or_default())
                    .ok_or_else(|| {
                        format!(
                            "{:?}",
                            events.iter().map(|e| e.reason.clone()).collect::<Vec<_>>()
                        )
                    })
            },
        )
        .await
    }

    pub async fn annotations(&self, namespace: &str, account: &str) -> BTreeMap<String, String> {
        self.service_accounts(namespace)
            .get(account)
            .await
            .expect("ServiceAccount")
            .metadata
            .annotations
            .unwrap_or_default()
    }

    /// The role name the operator derives for a binding (no hash cut: names are short here).
    pub fn role_name(&self, namespace: &str, binding: &str) -> String {
        format!("{}-{namespace}.{binding}", self.cluster_name)
    }

    pub fn role_arn(&self, namespace: &str, binding: &str) -> String {
        format!(
            "arn:aws:iam::{ACCOUNT}:role/podidentity/{}/{}",
            self.cluster_name,
            self.role_name(namespace, binding)
        )
    }

    /// Writes to the API server by `user` since the scenario began (audit log).
    pub fn writes_by(&self, user: &str, since: u64) -> Vec<crate::audit::AuditEvent> {
        self.cluster
            .audit
            .as_ref()
            .map(|a| a.writes_by(user, since))
            .unwrap_or_default()
    }

    /// What happened to one binding and its role, in time order: the IAM calls for the
    /// role (through the proxy) and the API server's writes to objects of that name in the
    /// namespace (audit log). For failure messages: a leftover role tells its own story.
    pub fn story_of(&self, namespace: &str, binding: &str) -> String {
        let role = self.role_name(namespace, binding);
        let mut lines: Vec<(k8s_openapi::jiff::Timestamp, String)> = self
            .iam
            .calls()
            .into_iter()
            .filter(|c| c.role.as_deref() == Some(role.as_str()))
            .map(|c| {
                let fault = if c.faulted { " (injected)" } else { "" };
                (c.wall, format!("IAM {} -> {}{fault}", c.action, c.status))
            })
            .collect();
        if let Some(audit) = &self.cluster.audit {
            lines.extend(
                audit
                    .since(self.audit_mark)
                    .into_iter()
                    .filter(|e| {
                        e.is_write()
                            && e.namespace.as_deref() == Some(namespace)
                            && e.name.as_deref() == Some(binding)
                    })
                    .filter_map(|e| {
                        let line =
                            format!("k8s {} {} by {} -> {}", e.verb, e.kind(), e.user, e.code);
                        Some((e.time()?, line))
                    }),
            );
        }
        lines.sort_by_key(|(at, _)| *at);
        lines
            .into_iter()
            .map(|(at, line)| format!("  {at} {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn audit_now(&self) -> u64 {
        self.cluster.audit.as_ref().map(|a| a.mark()).unwrap_or(0)
    }

    /// Requests of the operator's ServiceAccounts that RBAC refused since `since`: a verb
    /// the chart's roles lack.
    pub fn forbidden_since(&self, since: u64) -> Vec<crate::audit::AuditEvent> {
        forbidden_since(&self.cluster, since)
    }

    /// This scenario's EKS cluster in moto (named `clusterName`, as the chart's default
    /// `eks.clusterName`), made once: Pod Identity associations need one.
    pub async fn eks_cluster(&self) -> String {
        let shared = podidentity_aws::sdk::sdk_config(&emulator_settings(&self.cluster.moto)).await;
        let eks = aws_sdk_eks::Client::new(&shared);
        let made = eks
            .create_cluster()
            .name(&self.cluster_name)
            .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/eks-cluster"))
            .resources_vpc_config(
                aws_sdk_eks::types::VpcConfigRequest::builder()
                    .subnet_ids("subnet-e2e")
                    .build(),
            )
            .send()
            .await;
        if let Err(err) = made {
            let exists = err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception());
            assert!(exists, "create the EKS cluster in moto: {err:?}");
        }
        self.cluster_name.clone()
    }

    /// The EKS Pod Identity association of a ServiceAccount, as moto holds it.
    pub async fn association(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Option<podidentity_aws::eks::Association> {
        use podidentity_aws::eks::{AssociationApi, AssociationKey, SdkEks};
        let eks = SdkEks::connect(&emulator_settings(&self.cluster.moto)).await;
        let key = AssociationKey {
            cluster: self.cluster_name.clone(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        };
        let ids = eks.find(&key).await.expect("list associations");
        let id = ids.first()?;
        eks.describe(&self.cluster_name, id)
            .await
            .expect("describe the association")
    }

    /// The role as moto holds it.
    pub async fn iam_role(&self, name: &str) -> Option<podidentity_aws::api::RoleState> {
        Iam::new(&self.moto).get_role(name).await.ok()
    }

    /// moto in another account (credentials assumed into it, as the operator gets them),
    /// directly, not through the proxy.
    pub async fn moto_in(&self, account: &str) -> SdkIam {
        let settings = emulator_settings(&self.cluster.moto);
        let shared = podidentity_aws::sdk::sdk_config(&settings).await;
        let assumed = podidentity_aws::sdk::assumed_config(
            &shared,
            &format!("arn:aws:iam::{account}:role/e2e-reader"),
            "e2e",
        )
        .await;
        SdkIam::from_config(&assumed, &settings)
    }

    /// Every role moto holds under this scenario's path (`/podidentity/<clusterName>/`),
    /// read page by page as the drift sweep reads them.
    pub async fn roles_made_here(&self) -> Vec<podidentity_aws::api::RoleState> {
        self.roles_made_by(&self.moto).await
    }

    /// [`Self::roles_made_here`] in the account `moto` acts in.
    pub async fn roles_made_by(&self, moto: &SdkIam) -> Vec<podidentity_aws::api::RoleState> {
        let path = format!("/podidentity/{}/", self.cluster_name);
        let iam = Iam::new(moto);
        let mut roles = Vec::new();
        let mut marker = None;
        loop {
            let page = iam
                .authorization_page(marker, 1000)
                .await
                .expect("list the account's roles");
            roles.extend(
                page.roles
                    .into_iter()
                    .map(|details| details.role)
                    .filter(|role| role.path == path),
            );
            marker = page.next_marker;
            if marker.is_none() {
                return roles;
            }
        }
    }

    /// How the roles under this scenario's path differ from `expected` (one role per
    /// name): orphaned, missing, or listed twice. Empty when they agree.
    pub async fn roles_differing_from(
        &self,
        expected: &std::collections::BTreeSet<String>,
    ) -> Vec<String> {
        let roles: Vec<String> = self
            .roles_made_here()
            .await
            .into_iter()
            .map(|r| r.name)
            .collect();
        let unique: std::collections::BTreeSet<String> = roles.iter().cloned().collect();
        let mut differences: Vec<String> = unique
            .difference(expected)
            .map(|orphan| format!("role {orphan}: orphaned"))
            .chain(
                expected
                    .difference(&unique)
                    .map(|missing| format!("role {missing}: missing")),
            )
            .collect();
        if unique.len() != roles.len() {
            differences.push(format!("{} roles listed twice", roles.len() - unique.len()));
        }
        differences
    }

    pub async fn attached(&self, role: &str) -> Vec<String> {
        Iam::new(&self.moto)
            .list_attached_role_policies(role)
            .await
            .unwrap_or_default()
    }

    /// A change made in IAM behind the operator's back.
    pub async fn change_iam(&self, request: podidentity_aws::api::IamRequest) {
        Iam::new(&self.moto)
            .run(request)
            .await
            .expect("the change outside the operator");
    }

    /// The IAM calls the operator made for one role (through the proxy), by action.
    pub fn calls_for(&self, role: &str) -> Vec<String> {
        self.iam
            .calls()
            .into_iter()
            .filter(|c| c.role.as_deref() == Some(role))
            .map(|c| c.action)
            .collect()
    }
}

/// Requests of the operator's ServiceAccounts refused as forbidden since `since`: by RBAC,
/// or by an admission plugin (OwnerReferencesPermissionEnforcement). Writes into a
/// namespace being deleted are refused for everyone and do not count.
pub fn forbidden_since(cluster: &Cluster, since: u64) -> Vec<crate::audit::AuditEvent> {
    let restarts = cluster
        .plane
        .as_ref()
        .map(|plane| plane.restart_windows())
        .unwrap_or_default();
    // A restarted API server refuses until its RBAC caches have filled: those refusals
    // are the restart's, not the chart's.
    let while_restarting = |e: &crate::audit::AuditEvent| {
        e.time()
            .is_some_and(|at| restarts.iter().any(|(from, to)| *from <= at && at <= *to))
    };
    cluster
        .audit
        .as_ref()
        .map(|a| a.since(since))
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            (e.authorization == "forbid" || e.code == 403)
                && !e.message.contains("is being terminated")
                && e.user
                    .starts_with(&format!("system:serviceaccount:{OPERATOR_NAMESPACE}:"))
                && !while_restarting(e)
        })
        .collect()
}

pub fn condition<'a>(binding: &'a PodIdentityBinding, type_: &str) -> Option<&'a Condition> {
    binding
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Deep-merges `overrides` into `values`.
pub fn merge(values: &mut Value, overrides: Value) {
    match (values, overrides) {
        (Value::Object(target), Value::Object(source)) => {
            for (key, value) in source {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, value) => *target = value,
    }
}

/// Removes what a scenario made: its webhook registrations, then its namespaces (with any
/// finalizer of ours stripped first, since its controller is gone), waiting until they are.
pub async fn clean_up(cluster: &Cluster, leftovers: &Leftovers) {
    let client = cluster.client.clone();
    let hooks: Vec<String> = leftovers
        .webhook_configurations
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    let webhook_api: Api<
        k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
    > = Api::all(client.clone());
    for name in hooks {
        let _ = webhook_api.delete(&name, &DeleteParams::default()).await;
    }
    let validating: Vec<String> = leftovers
        .validating_configurations
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    let validating_api: Api<
        k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
    > = Api::all(client.clone());
    for name in validating {
        let _ = validating_api.delete(&name, &DeleteParams::default()).await;
    }
    let policies: Vec<String> = leftovers
        .policies
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    let policy_api: Api<podidentity_api::PodIdentityPolicy> = Api::all(client.clone());
    for name in policies {
        let _ = policy_api.delete(&name, &DeleteParams::default()).await;
    }
    let namespaces: Vec<String> = leftovers
        .namespaces
        .lock()
        .map(|n| n.clone())
        .unwrap_or_default();
    let namespace_api: Api<Namespace> = Api::all(client.clone());
    for namespace in &namespaces {
        let bindings: Api<PodIdentityBinding> = Api::namespaced(client.clone(), namespace);
        for binding in bindings
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            if let Some(name) = binding.metadata.name {
                let _ = bindings
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
                    )
                    .await;
            }
        }
        let _ = namespace_api
            .delete(namespace, &DeleteParams::default())
            .await;
    }
    if leftovers
        .crd_changed
        .load(std::sync::atomic::Ordering::SeqCst)
        && let Err(err) = cluster.install_crd().await
    {
        eprintln!("could not put the CRD back: {err}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    for namespace in &namespaces {
        while std::time::Instant::now() < deadline {
            match namespace_api.get_opt(namespace).await {
                Ok(None) => break,
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}
