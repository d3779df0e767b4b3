//! `podidentity doctor`, the real binary as an admin runs it, against the real API server
//! and moto: a healthy chain, then each broken link produced for real and found first.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, PostParams};
use podidentity_aws::api::IamRequest;
use podidentity_e2e::Scenario;
use podidentity_e2e::chart::Rendered;
use podidentity_e2e::issuer_host::IssuerHost;
use podidentity_e2e::scenario::ACCOUNT;
use serde_json::{Value, json};

fn spec(account: &str) -> Value {
    json!({
        "serviceAccountName": account,
        "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["*"]}]},
    })
}

async fn create_pod(s: &Scenario, ns: &str, name: &str, account: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name,
            "annotations": {"eks.amazonaws.com/skip-containers": "sidecar"}},
        "spec": {"serviceAccountName": account, "containers": [
            {"name": "app", "image": "registry.example/app:1"},
            {"name": "sidecar", "image": "registry.example/proxy:1"}]},
    }))
    .expect("pod");
    Api::<Pod>::namespaced(s.client(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("create pod {ns}/{name}: {e}"));
}

/// Doctor on `target`, reaching the issuer's host as `reach` says.
async fn run(
    s: &Scenario,
    rendered: &Rendered,
    target: String,
    reach: &[&str],
    extra: Vec<&str>,
) -> (i32, Value) {
    let mut args = vec![target.as_str()];
    args.extend_from_slice(reach);
    args.extend(extra);
    s.doctor(rendered, &args).await
}

/// The first broken link and its reason, as doctor's JSON says them.
fn first_broken(report: &Value) -> (String, String) {
    let first = report["firstBroken"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let reason = report["links"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["link"] == json!(first))
        .map(|l| l["reason"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    (first, reason)
}

pub async fn each_broken_link_is_found_on_a_real_cluster(s: Scenario) {
    let (rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("doctor").await;
    let _webhook = s.start_webhook_for(&rendered, Some(&ns)).await;
    let issuer = IssuerHost::publish(&s.cluster)
        .await
        .expect("publish the issuer");
    let ca = s.dir.join("issuer-ca.pem");
    std::fs::write(&ca, &s.cluster.ca_pem).expect("write the CA");
    let ca = ca.display().to_string();
    let connect_to = issuer.connect_to();
    let reach = [
        "--issuer-ca",
        ca.as_str(),
        "--connect-to",
        connect_to.as_str(),
    ];
    let doctor =
        |target: String, extra: Vec<&'static str>| run(&s, &rendered, target, &reach, extra);

    // The IAM OIDC provider for the API server's issuer, as eksctl or ccoctl makes it.
    let issuer_url = s.cluster.plane.as_ref().expect("own plane").issuer.clone();
    let shared = podidentity_aws::sdk::sdk_config(&podidentity_aws::testing::emulator_settings(
        &s.cluster.moto,
    ))
    .await;
    let raw = aws_sdk_iam::Client::new(&shared);
    let host_path = issuer_url.trim_start_matches("https://");
    let provider_arn = format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{host_path}");
    let _ = raw
        .delete_open_id_connect_provider()
        .open_id_connect_provider_arn(&provider_arn)
        .send()
        .await;
    raw.create_open_id_connect_provider()
        .url(&issuer_url)
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await
        .expect("create the OIDC provider");

    // Healthy: a pod admitted after its binding was Ready, one container skipped.
    s.create_service_account(&ns, "app", json!({})).await;
    s.create_binding(&ns, "app", spec("app")).await;
    s.wait_ready(&ns, "app").await;
    create_pod(&s, &ns, "app-1", "app").await;
    let (code, report) = doctor(format!("pod/{ns}/app-1"), vec!["--assume"]).await;
    assert_eq!(code, 0, "{report:#}");
    let links = report["links"].as_array().cloned().unwrap_or_default();
    assert!(
        links
            .iter()
            .all(|l| l["health"] == json!("ok") || l["health"] == json!("warning")),
        "{report:#}"
    );
    let pod_link = links
        .iter()
        .find(|l| l["link"] == json!("pod"))
        .expect("pod link");
    assert!(
        pod_link["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("sidecar"),
        "skipped containers are named: {pod_link}"
    );
    let assumed = links
        .iter()
        .find(|l| l["link"] == json!("assume"))
        .expect("assume link");
    assert_eq!(assumed["health"], json!("ok"), "{assumed}");

    // Not handed the configuration: doctor reads the chart's ConfigMap the install put in
    // the cluster, and finds the same.
    let admin = s.cluster.admin_kubeconfig.clone();
    let pod_target = format!("pod/{ns}/app-1");
    let mut args = vec![pod_target.as_str()];
    args.extend_from_slice(&reach);
    let (code, report) = s.doctor_on(&admin, &args).await;
    assert_eq!(code, 0, "{report:#}");
    // The issuer's host reached as the configuration says (oidc.connectTo, oidc.issuerCa),
    // without doctor's own flags.
    let reaching = s
        .install(json!({"oidc": {"connectTo": [connect_to.clone()], "issuerCa": s.cluster.ca_pem}}))
        .await;
    let (code, report) = s.doctor_on(&admin, &[pod_target.as_str()]).await;
    assert_eq!(code, 0, "{report:#}");
    let discovery = report["links"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["link"] == json!("discovery"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(discovery["health"], json!("ok"), "{report:#}");
    // The same configuration as a file: the ConfigMap is then not read.
    let (code, report) = s.doctor(&reaching, &[pod_target.as_str()]).await;
    assert_eq!(code, 0, "{report:#}");

    // A ServiceAccount nobody annotated.
    s.create_service_account(&ns, "bare", json!({})).await;
    let (code, report) = doctor(format!("{ns}/bare"), vec![]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        first_broken(&report),
        ("serviceAccount".into(), "NotAnnotated".into())
    );

    // Pods without the webhook (another namespace, where it is not registered): one
    // created before the annotation, one after.
    let plain = s.namespace("doctor-plain").await;
    s.create_service_account(&plain, "early", json!({})).await;
    create_pod(&s, &plain, "early-1", "early").await;
    s.create_binding(&plain, "early", spec("early")).await;
    s.wait_ready(&plain, "early").await;
    let (code, report) = doctor(format!("pod/{plain}/early-1"), vec![]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        first_broken(&report),
        ("pod".into(), "StartedBeforeAnnotation".into())
    );
    // Creation times are kept to the second: this one is a second later for sure.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    create_pod(&s, &plain, "late-1", "early").await;
    let (code, report) = doctor(format!("pod/{plain}/late-1"), vec![]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(first_broken(&report), ("pod".into(), "NotMutated".into()));

    // An audience the provider does not accept.
    s.create_service_account(&ns, "vault", json!({})).await;
    let mut vault = spec("vault");
    vault["audience"] = json!("vault");
    s.create_binding(&ns, "vault", vault).await;
    s.wait_ready(&ns, "vault").await;
    let (code, report) = doctor(format!("{ns}/vault"), vec![]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        first_broken(&report),
        ("oidcProvider".into(), "AudienceMissing".into())
    );

    // A ServiceAccount annotated by hand with another namespace's role: its `sub` is not
    // the one the trust policy names.
    let app_arn = s.role_arn(&ns, "app");
    s.create_service_account(
        &plain,
        "borrower",
        json!({"eks.amazonaws.com/role-arn": app_arn}),
    )
    .await;
    let (code, report) = doctor(format!("{plain}/borrower"), vec![]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        first_broken(&report),
        ("trustPolicy".into(), "NotAllowed".into())
    );
    assert!(
        report
            .to_string()
            .contains(&format!("system:serviceaccount:{plain}:borrower"))
    );

    // A trust policy naming another account's provider (a wrong oidc.providerArn once).
    s.create_service_account(&ns, "elsewhere", json!({})).await;
    s.create_binding(&ns, "elsewhere", spec("elsewhere")).await;
    s.wait_ready(&ns, "elsewhere").await;
    let role = s
        .iam_role(&s.role_name(&ns, "elsewhere"))
        .await
        .expect("role");
    s.change_iam(IamRequest::UpdateAssumeRolePolicy {
        name: role.name.clone(),
        document: role.trust_policy.replace(
            &format!(":{ACCOUNT}:oidc-provider"),
            ":999999999999:oidc-provider",
        ),
    })
    .await;
    let (code, report) = doctor(format!("{ns}/elsewhere"), vec![]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        first_broken(&report),
        ("trustPolicy".into(), "NotAllowed".into())
    );
    assert!(
        report.to_string().contains("federated principal"),
        "{report:#}"
    );

    // The operator's configuration names another issuer than the API server's.
    let wrong = s
        .install(json!({"oidc": {"issuerUrl": "https://oidc.wrong.example.com/id/X"}}))
        .await;
    let (code, report) = run(&s, &wrong, format!("{ns}/app"), &reach, vec![]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        first_broken(&report),
        ("issuer".into(), "IssuerMismatch".into())
    );
    // The cluster's ConfigMap now says so too, and doctor reads it unasked.
    let app_target = format!("{ns}/app");
    let mut args = vec![app_target.as_str()];
    args.extend_from_slice(&reach);
    let (code, report) = s.doctor_on(&admin, &args).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        first_broken(&report),
        ("issuer".into(), "IssuerMismatch".into())
    );
    // Flags win over the ConfigMap.
    let issuer_flag = format!("--oidc-issuer-url={issuer_url}");
    args.push(issuer_flag.as_str());
    let (code, report) = s.doctor_on(&admin, &args).await;
    assert_eq!(code, 0, "{report:#}");

    // No IAM OIDC provider for the issuer.
    raw.delete_open_id_connect_provider()
        .open_id_connect_provider_arn(&provider_arn)
        .send()
        .await
        .expect("delete the provider");
    let (code, report) = doctor(format!("{ns}/app"), vec![]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        first_broken(&report),
        ("oidcProvider".into(), "NotFound".into())
    );

    // No chart's ConfigMap where doctor is told to look: it says what it tried and what
    // to pass.
    for (flags, tried) in [
        (
            vec!["--namespace", "nowhere"],
            "no ConfigMap of the pod-identity-operator chart in namespace nowhere",
        ),
        (
            vec!["--release", "other"],
            "ConfigMap podidentity-system/other-pod-identity-operator-config",
        ),
    ] {
        let mut args = vec![app_target.as_str()];
        args.extend(flags);
        let (code, report) = s.doctor_on(&admin, &args).await;
        assert_eq!(code, 2, "{report:#}");
        let stderr = report["stderr"].as_str().unwrap_or_default();
        assert!(
            stderr.contains(tried) && stderr.contains("--config FILE"),
            "{report:#}"
        );
    }

    // Bad input changes nothing and says what to write.
    let (code, report) = doctor("not a target".into(), vec![]).await;
    assert_eq!(code, 2, "{report:#}");
    assert!(
        report["stderr"]
            .as_str()
            .unwrap_or_default()
            .contains("NAMESPACE/SERVICEACCOUNT"),
        "{report:#}"
    );
}

/// kube-apiserver as its own OIDC issuer (kubeadm, k3s, kind serving their discovery
/// directly): doctor reads `/.well-known/openid-configuration` and `/openid/v1/jwks` from
/// the API server as STS would, anonymously, trusting the cluster's CA from its
/// kubeconfig, with no flag and no configuration handed to it.
pub async fn the_api_servers_own_discovery_is_read_as_sts_reads_it(s: Scenario) {
    let plane = s.cluster.plane.as_ref().expect("own plane");
    let own = plane
        .start_own_issuer_apiserver()
        .await
        .expect("an API server that is its own issuer");
    let (_rendered, _controller) = s
        .start_controller(json!({"oidc": {"issuerUrl": own.url}}))
        .await;
    let shared = podidentity_aws::sdk::sdk_config(&podidentity_aws::testing::emulator_settings(
        &s.cluster.moto,
    ))
    .await;
    let raw = aws_sdk_iam::Client::new(&shared);
    let provider_arn = format!(
        "arn:aws:iam::{ACCOUNT}:oidc-provider/{}",
        own.url.trim_start_matches("https://")
    );
    let _ = raw
        .delete_open_id_connect_provider()
        .open_id_connect_provider_arn(&provider_arn)
        .send()
        .await;
    raw.create_open_id_connect_provider()
        .url(&own.url)
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await
        .expect("create the OIDC provider");
    let ns = s.namespace("own-issuer").await;
    s.create_service_account(&ns, "app", json!({})).await;
    s.create_binding(&ns, "app", spec("app")).await;
    s.wait_ready(&ns, "app").await;
    let target = format!("{ns}/app");

    // Kubernetes' default RBAC lets ServiceAccounts read the discovery documents, not
    // anonymous readers such as STS.
    let bindings: Api<ClusterRoleBinding> = Api::all(s.client());
    let default = bindings
        .get("system:service-account-issuer-discovery")
        .await
        .expect("the default ClusterRoleBinding");
    let subjects: Vec<String> = default
        .subjects
        .iter()
        .flatten()
        .map(|subject| format!("{}:{}", subject.kind, subject.name))
        .collect();
    assert_eq!(subjects, vec!["Group:system:serviceaccounts".to_string()]);
    let (code, report) = s.doctor_on(&own.kubeconfig, &[target.as_str()]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        first_broken(&report),
        ("discovery".into(), "Forbidden".into()),
        "{report:#}"
    );
    assert!(
        report
            .to_string()
            .contains("--group=system:unauthenticated"),
        "{report:#}"
    );

    // Opened to anonymous readers, as the fix says: the whole chain holds, the key set
    // read from the API server itself.
    let name = format!("{}-oidc-discovery-anonymous", s.tag);
    let open: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
            "name": "system:service-account-issuer-discovery"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
            "name": "system:unauthenticated"}],
    }))
    .expect("ClusterRoleBinding");
    bindings
        .create(&PostParams::default(), &open)
        .await
        .expect("open the discovery documents to anonymous readers");
    // RBAC's caches take the new binding in a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let opened = loop {
        let (code, report) = s.doctor_on(&own.kubeconfig, &[target.as_str()]).await;
        if first_broken(&report).0 != "discovery" || std::time::Instant::now() > deadline {
            break (code, report);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let _ = bindings.delete(&name, &Default::default()).await;
    let (code, report) = opened;
    assert_eq!(code, 0, "{report:#}");
    let discovery = report["links"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["link"] == json!("discovery"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(discovery["health"], json!("ok"), "{report:#}");
    assert!(
        discovery["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("{}/openid/v1/jwks", own.url)),
        "{report:#}"
    );
}

/// The link of `name` in a report: its health and reason.
fn link_of(report: &Value, name: &str) -> (String, String) {
    report["links"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["link"] == json!(name))
        .map(|l| {
            (
                l["health"].as_str().unwrap_or_default().to_string(),
                l["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .unwrap_or_default()
}

pub async fn a_pod_identity_binding_is_judged_on_its_own_chain(s: Scenario) {
    use k8s_openapi::api::apps::v1::DaemonSet;
    s.eks_cluster().await;
    let (rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("docpodid").await;
    s.create_service_account(&ns, "reports", json!({})).await;
    let mut binding = spec("reports");
    binding["identity"] = json!({"mechanism": "PodIdentity"});
    s.create_binding(&ns, "reports", binding).await;
    s.wait_ready(&ns, "reports").await;

    // No agent on this cluster: the chain holds up to it.
    let (code, report) = run(&s, &rendered, format!("{ns}/reports"), &[], vec![]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        first_broken(&report),
        ("agent".into(), "NotInstalled".into()),
        "{report:#}"
    );
    for (name, reason) in [
        ("serviceAccount", "NoIrsaAnnotation"),
        ("binding", "Ready"),
        ("association", "Associated"),
        ("role", "Exists"),
        ("trustPolicy", "AdmitsPodIdentity"),
    ] {
        assert_eq!(
            link_of(&report, name),
            ("ok".into(), reason.into()),
            "{name}: {report:#}"
        );
    }
    assert!(
        link_of(&report, "token").0.is_empty(),
        "IRSA's links are not judged: {report:#}"
    );

    // The agent's DaemonSet, as the EKS add-on names it.
    let agent: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "eks-pod-identity-agent", "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"app": "eks-pod-identity-agent"}},
            "template": {"metadata": {"labels": {"app": "eks-pod-identity-agent"}},
                "spec": {"containers": [{"name": "agent", "image": "registry.example/agent:1"}]}}},
    }))
    .expect("daemonset");
    let daemon_sets: Api<DaemonSet> = Api::namespaced(s.client(), "kube-system");
    match daemon_sets.create(&PostParams::default(), &agent).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create the agent's DaemonSet: {e}"),
    }

    // A pod as EKS's webhook leaves it: healthy.
    let with_agent = |name: &str, irsa: bool| {
        let mut env = vec![
            json!({"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://169.254.170.23/v1/credentials"}),
            json!({"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "value": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"}),
        ];
        if irsa {
            env.push(json!({"name": "AWS_ROLE_ARN", "value": s.role_arn(&ns, "reports")}));
            env.push(json!({"name": "AWS_WEB_IDENTITY_TOKEN_FILE",
                "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}));
        }
        serde_json::from_value::<Pod>(json!({
            "metadata": {"name": name},
            "spec": {"serviceAccountName": "reports", "containers": [{"name": "app",
                "image": "registry.example/app:1", "env": env,
                "volumeMounts": [{"name": "eks-pod-identity-token",
                    "mountPath": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"}]}],
                "volumes": [{"name": "eks-pod-identity-token", "projected": {"sources": [
                    {"serviceAccountToken": {"audience": "pods.eks.amazonaws.com",
                        "expirationSeconds": 86400, "path": "eks-pod-identity-token"}}]}}]},
        }))
        .expect("pod")
    };
    let pods: Api<Pod> = Api::namespaced(s.client(), &ns);
    for (name, irsa) in [("fine", false), ("both", true)] {
        pods.create(&PostParams::default(), &with_agent(name, irsa))
            .await
            .unwrap_or_else(|e| panic!("create pod {name}: {e}"));
    }
    let (code, report) = run(&s, &rendered, format!("pod/{ns}/fine"), &[], vec![]).await;
    let removed = daemon_sets
        .delete("eks-pod-identity-agent", &Default::default())
        .await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(link_of(&report, "agent"), ("ok".into(), "Installed".into()));
    assert_eq!(
        link_of(&report, "pod"),
        ("ok".into(), "PodIdentityInjected".into())
    );
    removed.expect("delete the agent's DaemonSet");

    // A pod that also carries IRSA's variables: the SDKs would take those.
    let (code, report) = run(&s, &rendered, format!("pod/{ns}/both"), &[], vec![]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        link_of(&report, "pod"),
        ("broken".into(), "IrsaVariablesWin".into()),
        "{report:#}"
    );
}
