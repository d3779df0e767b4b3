//! OpenShift's CredentialsRequests on the real API server (their CRD installed as a
//! cluster of OpenShift's has it): the release's image registry and ingress requests
//! become roles and Secrets byte for byte in ccoctl's format, the Machine API's is
//! refused by the guardrails, a change of statements updates the role in place, a
//! deletion cleans up, a renamed Secret takes its role with it, a Secret ccoctl wrote is
//! not overwritten, and a request outside the platform's namespace is not answered.
//! First, without the CRD: the controller with requests turned on starts and says why it
//! reconciles none.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use podidentity_api::credentials_request::CredentialsRequest;
use podidentity_aws::api::Iam;
use podidentity_e2e::Scenario;
use podidentity_e2e::chart::repo_root;
use podidentity_e2e::wait::{check, until};
use serde_json::{Value, json};

const PLATFORM: &str = "openshift-cloud-credential-operator";
/// ccoctl's Secret text (pkg/cmd/provisioning/aws/create-iam-roles.go), filled in as
/// ccoctl fills it: the role's ARN and OpenShift's token path.
const CCOCTL_CREDENTIALS: &str =
    "[default]\nsts_regional_endpoints = regional\nrole_arn = %s\nweb_identity_token_file = %s";
const TOKEN_PATH: &str = "/var/run/secrets/openshift/serviceaccount/token";

fn example(name: &str) -> CredentialsRequest {
    let path = repo_root().join(format!("examples/openshift/{name}.yaml"));
    let text = std::fs::read_to_string(&path).expect("the example");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The status once `done` holds for it (90 s at most).
async fn wait_request(
    api: &Api<CredentialsRequest>,
    name: &str,
    what: &str,
    done: impl Fn(&CredentialsRequest) -> bool,
) -> CredentialsRequest {
    until(what, Duration::from_secs(90), || async {
        let request = api.get(name).await.map_err(|e| e.to_string())?;
        if done(&request) {
            Ok(request)
        } else {
            Err(format!("{:?}", request.status))
        }
    })
    .await
}

/// CCO's `CredentialsProvisionFailure` is True.
fn provision_failed(request: &CredentialsRequest) -> bool {
    request.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "CredentialsProvisionFailure" && c.status == "True")
    })
}

fn provisioned(request: &CredentialsRequest) -> bool {
    request.status.as_ref().is_some_and(|s| {
        s.provisioned && Some(s.last_sync_generation) == request.metadata.generation
    })
}

async fn inline_policy(s: &Scenario, role: &str) -> Value {
    let document = Iam::new(&s.moto)
        .get_role_policy(role, "podidentity-permissions")
        .await
        .unwrap_or_else(|e| panic!("{role}: {e}"));
    serde_json::from_str(&document).expect("a policy")
}

fn actions(policy: &Value) -> Vec<String> {
    policy["Statement"][0]["Action"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(String::from))
        .collect()
}

pub async fn openshift_requests_become_roles_and_ccoctl_secrets(s: Scenario) {
    let values = |openshift: &Value| {
        json!({
            "credentialsRequests": {"enabled": true},
            "guardrails": {"deniedActions": openshift["guardrails"]["deniedActions"]},
            // A refused request is looked at again on this interval.
            "driftInterval": "10s",
        })
    };
    let openshift: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("examples/openshift/operator.yaml"))
            .expect("the example configuration"),
    )
    .expect("YAML");

    // Without OpenShift's CRD (any other cluster): turned on, it starts, is ready, says why
    // it reconciles no request, and asks for nothing it may not have.
    let (_rendered, mut without_crd) = s.start_controller(values(&openshift)).await;
    until(
        "the controller to say there is no CRD",
        Duration::from_secs(30),
        || async {
            let log = std::fs::read_to_string(&without_crd.process.log).unwrap_or_default();
            check(log.contains("no CredentialsRequest CRD"), || {
                "not in the log yet".into()
            })
        },
    )
    .await;
    assert_eq!(without_crd.readyz().await, Some(200));
    without_crd.process.kill();

    s.cluster
        .install_crd_file(&repo_root().join("tests/e2e/fixtures/credentialsrequests.crd.yaml"))
        .await
        .expect("install OpenShift's CRD");
    for namespace in [
        PLATFORM,
        "openshift-image-registry",
        "openshift-ingress-operator",
    ] {
        s.cluster
            .ensure_namespace(namespace)
            .await
            .expect("namespace");
    }
    // A Secret ccoctl wrote for the ingress operator, once, for another role.
    let ingress_secrets: Api<Secret> = Api::namespaced(s.client(), "openshift-ingress-operator");
    let ccoctl_text = CCOCTL_CREDENTIALS
        .replacen(
            "%s",
            "arn:aws:iam::123456789012:role/mycluster-openshift-ingress-operator-cloud-credentials",
            1,
        )
        .replacen("%s", TOKEN_PATH, 1);
    let ccoctl_secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "cloud-credentials", "namespace": "openshift-ingress-operator"},
        "type": "Opaque",
        "stringData": {"credentials": ccoctl_text},
    }))
    .expect("a Secret");
    ingress_secrets
        .create(&PostParams::default(), &ccoctl_secret)
        .await
        .expect("ccoctl's Secret");

    // A request outside the platform's namespace, made first: it is never answered.
    let shop = s.namespace("requests").await;
    let mut stray = example("image-registry");
    stray.metadata.namespace = Some(shop.clone());
    stray.spec.secret_ref.name = "stray".into();
    let strays: Api<CredentialsRequest> = Api::namespaced(s.client(), &shop);
    strays
        .create(&PostParams::default(), &stray)
        .await
        .expect("create the stray");

    let (_rendered, _controller) = s.start_controller(values(&openshift)).await;
    let requests: Api<CredentialsRequest> = Api::namespaced(s.client(), PLATFORM);
    for name in ["image-registry", "ingress", "machine-api"] {
        requests
            .create(&PostParams::default(), &example(name))
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
    }

    // The image registry's: one role for its two ServiceAccounts, a ccoctl Secret.
    let registry = wait_request(
        &requests,
        "openshift-image-registry",
        "the registry provisioned",
        provisioned,
    )
    .await;
    assert!(
        registry
            .finalizers()
            .contains(&"podidentity.io/iam-role".to_string())
    );
    assert!(
        registry
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.is_empty()),
        "success adds no condition: {:?}",
        registry.status
    );
    let role_name = format!(
        "{}-openshift-image-registry.installer-cloud-credentials",
        s.cluster_name
    );
    let role = s.iam_role(&role_name).await.expect("the registry's role");
    let trust: Value = serde_json::from_str(&role.trust_policy).expect("trust JSON");
    let conditions = &trust["Statement"][0]["Condition"]["StringEquals"];
    let subjects = conditions
        .as_object()
        .and_then(|c| {
            c.iter()
                .find(|(k, _)| k.ends_with(":sub"))
                .map(|(_, v)| v.clone())
        })
        .expect("a sub condition");
    assert_eq!(
        subjects,
        json!([
            "system:serviceaccount:openshift-image-registry:cluster-image-registry-operator",
            "system:serviceaccount:openshift-image-registry:registry"
        ])
    );
    assert!(conditions.as_object().is_some_and(|c| {
        c.iter()
            .any(|(k, v)| k.ends_with(":aud") && v == "openshift")
    }));
    let policy = inline_policy(&s, &role_name).await;
    assert_eq!(actions(&policy).len(), 18);
    let secrets: Api<Secret> = Api::namespaced(s.client(), "openshift-image-registry");
    let secret = secrets
        .get("installer-cloud-credentials")
        .await
        .expect("the Secret");
    let expected = CCOCTL_CREDENTIALS
        .replacen("%s", &role.arn, 1)
        .replacen("%s", TOKEN_PATH, 1);
    let credentials = secret
        .data
        .as_ref()
        .and_then(|d| d.get("credentials"))
        .expect("credentials");
    assert_eq!(
        String::from_utf8_lossy(&credentials.0),
        expected,
        "ccoctl's bytes"
    );
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(
        secret.data.as_ref().map(|d| d.len()),
        Some(1),
        "one key, as ccoctl writes"
    );
    assert_eq!(
        secret
            .annotations()
            .get("cloudcredential.openshift.io/credentials-request")
            .map(String::as_str),
        Some("openshift-cloud-credential-operator/openshift-image-registry")
    );

    // The ingress operator's: ccoctl's Secret is not overwritten...
    let refused = wait_request(
        &requests,
        "openshift-ingress",
        "ccoctl's Secret refused",
        provision_failed,
    )
    .await;
    let message = refused
        .status
        .map(|s| s.conditions[0].message.clone().unwrap_or_default())
        .unwrap_or_default();
    assert!(message.contains("not the operator's"), "{message}");
    let untouched = ingress_secrets
        .get("cloud-credentials")
        .await
        .expect("ccoctl's Secret");
    assert_eq!(
        untouched
            .data
            .as_ref()
            .and_then(|d| d.get("credentials"))
            .map(|c| String::from_utf8_lossy(&c.0).to_string()),
        Some(ccoctl_text.clone())
    );
    // ...until it is deleted: then the role (sts:AssumeRole, which this platform allows)
    // and the operator's own Secret, within the refusal's re-check (driftInterval).
    ingress_secrets
        .delete("cloud-credentials", &DeleteParams::default())
        .await
        .expect("delete ccoctl's Secret");
    wait_request(
        &requests,
        "openshift-ingress",
        "ingress provisioned",
        provisioned,
    )
    .await;
    let ingress_role = format!(
        "{}-openshift-ingress-operator.cloud-credentials",
        s.cluster_name
    );
    assert!(
        actions(&inline_policy(&s, &ingress_role).await).contains(&"sts:AssumeRole".to_string())
    );
    let ingress_secret = ingress_secrets
        .get("cloud-credentials")
        .await
        .expect("the ingress Secret");
    assert!(
        ingress_secret
            .annotations()
            .contains_key("cloudcredential.openshift.io/credentials-request"),
        "the operator's own now"
    );

    // The Machine API's: iam:PassRole, refused, and nothing made.
    let machine = wait_request(
        &requests,
        "openshift-machine-api-aws",
        "the Machine API refused",
        provision_failed,
    )
    .await;
    let status = machine.status.expect("status");
    assert!(!status.provisioned);
    let message = status.conditions[0].message.clone().unwrap_or_default();
    assert!(
        message.contains("iam:PassRole") && message.contains("statementEntries[0]"),
        "{message}"
    );
    let machine_role = format!(
        "{}-openshift-machine-api.aws-cloud-credentials",
        s.cluster_name
    );
    assert!(s.iam_role(&machine_role).await.is_none());

    // A change of statements (an upgrade drops s3:DeleteBucket): the same role, changed.
    let mut entries = registry.spec.provider_spec.clone().expect("providerSpec");
    let kept: Vec<Value> = entries["statementEntries"][0]["action"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| *a != "s3:DeleteBucket")
        .cloned()
        .collect();
    entries["statementEntries"][0]["action"] = Value::Array(kept);
    requests
        .patch(
            "openshift-image-registry",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"providerSpec": entries}})),
        )
        .await
        .expect("change the statements");
    wait_request(
        &requests,
        "openshift-image-registry",
        "the new generation provisioned",
        |r| provisioned(r) && r.metadata.generation == Some(2),
    )
    .await;
    let policy = inline_policy(&s, &role_name).await;
    assert_eq!(actions(&policy).len(), 17);
    assert!(!actions(&policy).contains(&"s3:DeleteBucket".to_string()));
    assert_eq!(
        s.iam_role(&role_name).await.map(|r| r.id),
        Some(role.id.clone()),
        "in place"
    );

    // The Secret renamed: the new role and Secret made, the old ones gone.
    requests
        .patch(
            "openshift-ingress",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"secretRef": {"name": "cloud-credentials-v2", "namespace": "openshift-ingress-operator"}}})),
        )
        .await
        .expect("rename the Secret");
    wait_request(
        &requests,
        "openshift-ingress",
        "the renamed Secret provisioned",
        |r| provisioned(r) && r.metadata.generation == Some(2),
    )
    .await;
    let renamed_role = format!(
        "{}-openshift-ingress-operator.cloud-credentials-v2",
        s.cluster_name
    );
    assert!(s.iam_role(&renamed_role).await.is_some());
    assert!(
        s.iam_role(&ingress_role).await.is_none(),
        "the old role is deleted"
    );
    assert!(
        ingress_secrets
            .get_opt("cloud-credentials")
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        ingress_secrets
            .get_opt("cloud-credentials-v2")
            .await
            .expect("read")
            .is_some()
    );

    // Deletion: the role and the Secret go, then the request.
    requests
        .delete("openshift-image-registry", &DeleteParams::default())
        .await
        .expect("delete");
    until(
        "the registry's request gone",
        Duration::from_secs(60),
        || async {
            match requests.get_opt("openshift-image-registry").await {
                Ok(None) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(
        s.iam_role(&role_name).await.is_none(),
        "the role is deleted"
    );
    assert!(
        secrets
            .get_opt("installer-cloud-credentials")
            .await
            .expect("read")
            .is_none()
    );

    let stray = strays.get(&stray.name_any()).await.expect("the stray");
    assert!(
        stray.finalizers().is_empty() && stray.status.is_none(),
        "{stray:?}"
    );
    let stray_role = format!("{}-openshift-image-registry.stray", s.cluster_name);
    assert!(s.iam_role(&stray_role).await.is_none());
    strays
        .delete(&stray.name_any(), &DeleteParams::default())
        .await
        .expect("delete the stray");
    // The rest go too (the refused one carries the finalizer as well), role included.
    for name in ["openshift-ingress", "openshift-machine-api-aws"] {
        requests
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    until("every request gone", Duration::from_secs(60), || async {
        let left = requests
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        match left.items.is_empty() {
            true => Ok(()),
            false => Err(format!("{} left", left.items.len())),
        }
    })
    .await;
    assert!(s.iam_role(&renamed_role).await.is_none());
}
