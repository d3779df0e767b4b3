//! The running `podidentity controller` against a real API server and moto:
//! create → Ready → ServiceAccount annotated → update → delete.
//!
//! Runs when PODIDENTITY_E2E_KUBECONFIG points at a cluster (and moto is up, as
//! scripts/with-moto provides); otherwise it says so in one line and passes.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use podidentity_api::{PodIdentityBinding, PodIdentityBindingSpec, Statement};
use podidentity_aws::api::Iam;
use podidentity_aws::error::ErrorKind;
use podidentity_aws::sdk::{AwsSettings, SdkIam};

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("timed out waiting for {what}");
}

fn ready(binding: &PodIdentityBinding) -> bool {
    binding.status.as_ref().is_some_and(|s| {
        s.observed_generation == binding.metadata.generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

#[tokio::test]
async fn create_ready_annotate_update_delete() {
    let Ok(kubeconfig_path) = std::env::var("PODIDENTITY_E2E_KUBECONFIG") else {
        eprintln!(
            "skipped: set PODIDENTITY_E2E_KUBECONFIG to a cluster's kubeconfig to run the end-to-end tests"
        );
        return;
    };
    let endpoint = std::env::var("PODIDENTITY_TEST_IAM_ENDPOINT")
        .expect("the end-to-end tests need moto: run them under scripts/with-moto");
    let kubeconfig = Kubeconfig::read_from(&kubeconfig_path).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    let client = kube::Client::try_from(config).expect("client");

    // The CRD, as the binary prints it.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    let crd = podidentity_api::crd::crd();
    crds.patch(
        "podidentitybindings.podidentity.io",
        &PatchParams::apply("podidentity-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let namespace = format!("e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))
                .expect("namespace"),
        )
        .await
        .expect("create namespace");

    let binary =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/podidentity");
    let status = Command::new("cargo")
        .args(["build", "-q", "-p", "podidentity"])
        .status()
        .expect("cargo build");
    assert!(status.success());
    let cluster = format!("e2e{}", std::process::id());
    let _controller = Controller(
        Command::new(binary)
            .args([
                "controller",
                "--cluster-name",
                &cluster,
                "--aws-endpoint-url",
                &endpoint,
                "--aws-region",
                "us-east-1",
            ])
            .args([
                "--aws-account-id",
                "123456789012",
                "--oidc-issuer-url",
                "https://oidc.example.com/id/E2E",
                "--health-listen",
                "127.0.0.1:0",
            ])
            .env("KUBECONFIG", &kubeconfig_path)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .spawn()
            .expect("start the controller"),
    );

    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "app"}})).expect("sa"),
        )
        .await
        .expect("create ServiceAccount");
    let bindings: Api<PodIdentityBinding> = Api::namespaced(client.clone(), &namespace);
    let mut spec = PodIdentityBindingSpec {
        service_account_name: "app".into(),
        ..PodIdentityBindingSpec::default()
    };
    spec.permissions.statements.push(Statement {
        actions: vec!["s3:GetObject".into()],
        resources: vec!["*".into()],
        ..Statement::default()
    });
    bindings
        .create(
            &PostParams::default(),
            &PodIdentityBinding::new("app", spec),
        )
        .await
        .expect("create binding");

    until("Ready", || async {
        bindings.get("app").await.is_ok_and(|b| ready(&b))
    })
    .await;
    let arn = bindings
        .get("app")
        .await
        .ok()
        .and_then(|b| b.status)
        .and_then(|s| s.role_arn)
        .expect("role ARN in status");
    let sa = accounts.get("app").await.expect("sa");
    assert_eq!(
        sa.metadata
            .annotations
            .unwrap_or_default()
            .get("eks.amazonaws.com/role-arn"),
        Some(&arn)
    );

    let sdk = SdkIam::connect(&AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint),
        max_attempts: 3,
        call_timeout: None,
        static_credentials: Some(("testing".into(), "testing".into())),
    })
    .await;
    let role_name = format!("{cluster}-{namespace}-app");
    let patch = serde_json::json!({"spec": {"permissions": {"managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess"]}}});
    bindings
        .patch("app", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("update binding");
    until("the update", || async {
        bindings.get("app").await.is_ok_and(|b| ready(&b))
            && Iam::new(&sdk)
                .list_attached_role_policies(&role_name)
                .await
                .is_ok_and(|a| a.len() == 1)
    })
    .await;

    bindings
        .delete("app", &DeleteParams::default())
        .await
        .expect("delete binding");
    until("the binding to go", || async {
        bindings.get_opt("app").await.is_ok_and(|b| b.is_none())
    })
    .await;
    assert_eq!(
        Iam::new(&sdk)
            .get_role(&role_name)
            .await
            .err()
            .map(|e| e.kind),
        Some(ErrorKind::NotFound)
    );
    let sa = accounts.get("app").await.expect("sa");
    assert!(
        !sa.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("eks.amazonaws.com/role-arn")
    );
    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .ok();
}
