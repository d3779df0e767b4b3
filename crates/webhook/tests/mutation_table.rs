//! Table-driven tests of the pure mutation: each case is a pod, its ServiceAccount's
//! annotations, maybe a covering binding, maybe a configuration change, and what the pod
//! must look like after the patch is applied (by a real JSON patch implementation).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use podidentity_api::PodIdentityBinding;
use podidentity_api::config::OperatorConfig;
use podidentity_webhook::identity::Predictor;
use podidentity_webhook::mutation::{MutationConfig, TokenAccess, mutate};
use podidentity_webhook::pod::AdmittedPod;
use serde_json::{Value, json};

const ARN: &str = "arn:aws:iam::111122223333:role/orders";
const PREDICTED_ARN: &str = "arn:aws:iam::111122223333:role/podidentity/prod/prod-shop.orders-s3";
const TOKEN_FILE: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";

struct Case {
    name: &'static str,
    pod: Value,
    sa: Option<Value>,
    binding: Option<Value>,
    configure: fn(&mut MutationConfig),
    check: fn(&Outcome),
}

/// What a case produced.
struct Outcome {
    /// None: no role for the pod.
    patch: Option<json_patch::Patch>,
    /// The pod with the patch applied.
    pod: Value,
    /// The patch computed again on the patched pod.
    second_patch: Option<json_patch::Patch>,
}

impl Outcome {
    fn container(&self, list: &str, index: usize) -> &Value {
        &self.pod["spec"][list][index]
    }
    fn env(&self, list: &str, index: usize) -> BTreeMap<String, String> {
        self.container(list, index)["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or_default().to_string(),
                    e["value"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
    /// The value of `name` in the first container's env.
    fn app_env(&self, name: &str) -> Option<String> {
        self.env("containers", 0).get(name).cloned()
    }
    fn env_names(&self, list: &str, index: usize) -> Vec<String> {
        self.container(list, index)["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["name"].as_str().unwrap_or_default().to_string())
            .collect()
    }
    fn token_volumes(&self) -> Vec<&Value> {
        self.pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["name"] == "aws-iam-token")
            .collect()
    }
    fn projection(&self) -> &Value {
        &self.token_volumes()[0]["projected"]["sources"][0]["serviceAccountToken"]
    }
    fn mounted(&self, list: &str, index: usize) -> bool {
        self.container(list, index)["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| {
                m["name"] == "aws-iam-token"
                    && m["mountPath"] == "/var/run/secrets/eks.amazonaws.com/serviceaccount"
                    && m["readOnly"] == true
            })
    }
    fn is_empty(&self) -> bool {
        self.patch.as_ref().is_some_and(|p| p.0.is_empty())
    }
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"}, "spec": spec})
}
fn app() -> Value {
    pod(json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1"}]}))
}
fn with_pod_annotations(mut pod: Value, annotations: Value) -> Value {
    pod["metadata"]["annotations"] = annotations;
    pod
}
fn role() -> Option<Value> {
    Some(json!({"eks.amazonaws.com/role-arn": ARN}))
}
fn role_with(extra: Value) -> Option<Value> {
    let mut annotations = json!({"eks.amazonaws.com/role-arn": ARN});
    if let (Some(map), Value::Object(extra)) = (annotations.as_object_mut(), extra) {
        map.extend(extra);
    }
    Some(annotations)
}
fn binding(spec: Value) -> Option<Value> {
    Some(
        json!({"apiVersion": "podidentity.io/v1alpha1", "kind": "PodIdentityBinding",
                "metadata": {"name": "orders-s3", "namespace": "shop"}, "spec": spec}),
    )
}
fn keep(_: &mut MutationConfig) {}

fn operator_config() -> OperatorConfig {
    OperatorConfig {
        cluster_name: "prod".into(),
        aws: podidentity_api::config::AwsConfig {
            account_id: Some("111122223333".into()),
            ..Default::default()
        },
        oidc: podidentity_api::config::OidcConfig {
            issuer_url: Some("https://oidc.example.com/id/ABC".into()),
            ..Default::default()
        },
        // Off unless turned on; the table's platform turned it on.
        short_form: podidentity_api::config::ShortFormConfig {
            enabled: true,
            namespaces: vec![],
        },
        ..OperatorConfig::default()
    }
}

/// Where the operator's configuration keeps the short form off, annotations predict no
/// role: the controller will make none.
#[test]
fn short_form_annotations_predict_nothing_where_the_short_form_is_off() {
    let asks: BTreeMap<String, String> = [(
        "podidentity.io/managed-policy-arns".to_string(),
        "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess".to_string(),
    )]
    .into();
    let role = |config: OperatorConfig| {
        Predictor::new(config, "eks.amazonaws.com")
            .effective_annotations("shop", "orders", Some(&asks), None)
            .and_then(|a| a.get("eks.amazonaws.com/role-arn").cloned())
    };
    assert!(role(operator_config()).is_some(), "on: predicted");
    let mut off = operator_config();
    off.short_form.enabled = false;
    assert_eq!(role(off), None);
    let mut elsewhere = operator_config();
    elsewhere.short_form.namespaces = vec!["blog".into()];
    assert_eq!(role(elsewhere), None);
}

fn run(case: &Case) -> Outcome {
    let mut config = MutationConfig::default();
    (case.configure)(&mut config);
    let predictor = Predictor::new(operator_config(), &config.annotation_prefix);
    let pod_value = case.pod.clone();
    // The whole pod must be valid; the mutation reads its own view of it.
    let pod: Pod = serde_json::from_value(pod_value.clone())
        .unwrap_or_else(|err| panic!("{}: bad pod: {err}", case.name));
    let pod =
        AdmittedPod::from_pod(&pod).unwrap_or_else(|err| panic!("{}: pod view: {err}", case.name));
    let sa: Option<BTreeMap<String, String>> = case
        .sa
        .clone()
        .map(|a| serde_json::from_value(a).unwrap_or_else(|err| panic!("{err}")));
    let binding: Option<PodIdentityBinding> = case
        .binding
        .clone()
        .map(|b| serde_json::from_value(b).unwrap_or_else(|err| panic!("{err}")));
    let effective =
        predictor.effective_annotations("shop", "orders", sa.as_ref(), binding.as_ref());
    let patch = mutate(&pod, effective.as_ref(), &config);
    let mut patched = pod_value;
    if let Some(patch) = &patch {
        json_patch::patch(&mut patched, patch)
            .unwrap_or_else(|err| panic!("{}: patch does not apply: {err}", case.name));
    }
    let repatched: Pod = serde_json::from_value(patched.clone())
        .unwrap_or_else(|err| panic!("{}: patched pod invalid: {err}", case.name));
    let repatched = AdmittedPod::from_pod(&repatched)
        .unwrap_or_else(|err| panic!("{}: pod view: {err}", case.name));
    let second_patch = mutate(&repatched, effective.as_ref(), &config);
    Outcome {
        patch,
        pod: patched,
        second_patch,
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "no annotation and no binding: no patch",
            pod: app(),
            sa: Some(json!({"other": "x"})),
            binding: None,
            configure: keep,
            check: |o| assert!(o.patch.is_none()),
        },
        Case {
            name: "unknown ServiceAccount and no binding: no patch",
            pod: app(),
            sa: None,
            binding: None,
            configure: keep,
            check: |o| assert!(o.patch.is_none()),
        },
        Case {
            name: "annotated ServiceAccount: env, volume and read-only mount",
            pod: app(),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_eq!(
                    o.env("containers", 0),
                    BTreeMap::from([
                        ("AWS_ROLE_ARN".to_string(), ARN.to_string()),
                        (
                            "AWS_WEB_IDENTITY_TOKEN_FILE".to_string(),
                            TOKEN_FILE.to_string()
                        ),
                    ])
                );
                assert!(o.mounted("containers", 0));
                assert_eq!(
                    o.projection(),
                    &json!({"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"})
                );
            },
        },
        Case {
            name: "a second pass changes nothing",
            pod: app(),
            sa: role_with(json!({"eks.amazonaws.com/sts-regional-endpoints": "true"})),
            binding: None,
            configure: |c| c.region = Some("eu-west-1".into()),
            check: |o| assert_eq!(o.second_patch.as_ref().map(|p| p.0.len()), Some(0)),
        },
        Case {
            name: "user-set AWS_ROLE_ARN is kept, and the token file is theirs to set too",
            pod: pod(
                json!({"serviceAccountName": "orders", "containers": [{"name": "app", "env": [{"name": "AWS_ROLE_ARN", "value": "mine"}]}]}),
            ),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_eq!(
                    o.env("containers", 0),
                    BTreeMap::from([("AWS_ROLE_ARN".to_string(), "mine".to_string())])
                );
                assert!(o.mounted("containers", 0));
            },
        },
        Case {
            name: "user env is appended to, never replaced or reordered",
            pod: pod(
                json!({"serviceAccountName": "orders", "containers": [{"name": "app", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}),
            ),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_eq!(
                    o.env_names("containers", 0),
                    ["A", "B", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]
                )
            },
        },
        Case {
            name: "configured region sets AWS_DEFAULT_REGION and AWS_REGION",
            pod: app(),
            sa: role(),
            binding: None,
            configure: |c| c.region = Some("eu-west-1".into()),
            check: |o| {
                let env = o.env("containers", 0);
                assert_eq!(env.get("AWS_REGION").map(String::as_str), Some("eu-west-1"));
                assert_eq!(
                    env.get("AWS_DEFAULT_REGION").map(String::as_str),
                    Some("eu-west-1")
                );
            },
        },
        Case {
            name: "a user-set AWS_DEFAULT_REGION keeps both region variables untouched",
            pod: pod(
                json!({"serviceAccountName": "orders", "containers": [{"name": "app", "env": [{"name": "AWS_DEFAULT_REGION", "value": "us-east-1"}]}]}),
            ),
            sa: role(),
            binding: None,
            configure: |c| c.region = Some("eu-west-1".into()),
            check: |o| {
                let env = o.env("containers", 0);
                assert_eq!(
                    env.get("AWS_DEFAULT_REGION").map(String::as_str),
                    Some("us-east-1")
                );
                assert!(!env.contains_key("AWS_REGION"));
            },
        },
        Case {
            name: "no region configured: no region variables",
            pod: app(),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| assert!(!o.env("containers", 0).contains_key("AWS_REGION")),
        },
        Case {
            name: "sts-regional-endpoints annotation adds AWS_STS_REGIONAL_ENDPOINTS=regional",
            pod: app(),
            sa: role_with(json!({"eks.amazonaws.com/sts-regional-endpoints": "true"})),
            binding: None,
            configure: keep,
            check: |o| {
                assert_eq!(
                    o.app_env("AWS_STS_REGIONAL_ENDPOINTS").as_deref(),
                    Some("regional")
                )
            },
        },
        Case {
            name: "sts-regional-endpoints \"false\" beats a true flag",
            pod: app(),
            sa: role_with(json!({"eks.amazonaws.com/sts-regional-endpoints": "false"})),
            binding: None,
            configure: |c| c.default_regional_sts = true,
            check: |o| {
                assert!(
                    !o.env("containers", 0)
                        .contains_key("AWS_STS_REGIONAL_ENDPOINTS")
                )
            },
        },
        Case {
            name: "an unparseable sts annotation falls back to the flag",
            pod: app(),
            sa: role_with(json!({"eks.amazonaws.com/sts-regional-endpoints": "yes please"})),
            binding: None,
            configure: |c| c.default_regional_sts = true,
            check: |o| {
                assert!(
                    o.env("containers", 0)
                        .contains_key("AWS_STS_REGIONAL_ENDPOINTS")
                )
            },
        },
        Case {
            name: "skip-containers leaves the named containers alone",
            pod: with_pod_annotations(
                pod(
                    json!({"serviceAccountName": "orders", "containers": [{"name": "app"}, {"name": "istio-proxy"}, {"name": "log"}]}),
                ),
                json!({"eks.amazonaws.com/skip-containers": "istio-proxy, log"}),
            ),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert!(o.mounted("containers", 0));
                assert!(o.env("containers", 1).is_empty() && !o.mounted("containers", 1));
                assert!(o.env("containers", 2).is_empty() && !o.mounted("containers", 2));
            },
        },
        Case {
            name: "every container skipped: no patch at all, not even the volume",
            pod: with_pod_annotations(app(), json!({"eks.amazonaws.com/skip-containers": "app"})),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| assert!(o.is_empty()),
        },
        Case {
            name: "init containers and native sidecars are injected too",
            pod: pod(json!({"serviceAccountName": "orders",
                "initContainers": [{"name": "migrate"}, {"name": "proxy", "restartPolicy": "Always"}],
                "containers": [{"name": "app"}]})),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                for index in 0..2 {
                    assert_eq!(
                        o.env("initContainers", index)
                            .get("AWS_ROLE_ARN")
                            .map(String::as_str),
                        Some(ARN)
                    );
                    assert!(o.mounted("initContainers", index));
                }
                assert!(o.mounted("containers", 0));
                assert_eq!(o.token_volumes().len(), 1);
            },
        },
        Case {
            name: "existing volumes and mounts are appended to",
            pod: pod(json!({"serviceAccountName": "orders",
                "volumes": [{"name": "data", "emptyDir": {}}],
                "containers": [{"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]})),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_eq!(o.pod["spec"]["volumes"][0]["name"], "data");
                assert_eq!(o.pod["spec"]["volumes"][1]["name"], "aws-iam-token");
                assert_eq!(
                    o.container("containers", 0)["volumeMounts"][0]["name"],
                    "data"
                );
                assert!(o.mounted("containers", 0));
            },
        },
        Case {
            name: "a user-provided aws-iam-token volume is not added again",
            pod: pod(json!({"serviceAccountName": "orders",
                "volumes": [{"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "audience": "custom"}}]}}],
                "containers": [{"name": "app"}]})),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_eq!(o.token_volumes().len(), 1);
                assert_eq!(o.projection()["audience"], "custom");
            },
        },
        Case {
            name: "binding but no annotation yet: the predicted role is injected",
            pod: app(),
            sa: Some(json!({})),
            binding: binding(json!({"serviceAccountName": "orders"})),
            configure: keep,
            check: |o| {
                assert_eq!(o.app_env("AWS_ROLE_ARN").as_deref(), Some(PREDICTED_ARN));
                // The binding's default asks for regional STS, as the controller will annotate.
                assert_eq!(
                    o.app_env("AWS_STS_REGIONAL_ENDPOINTS").as_deref(),
                    Some("regional")
                );
            },
        },
        Case {
            name: "binding before its ServiceAccount is even cached: still injected",
            pod: app(),
            sa: None,
            binding: binding(json!({"serviceAccountName": "orders"})),
            configure: keep,
            check: |o| assert_eq!(o.app_env("AWS_ROLE_ARN").as_deref(), Some(PREDICTED_ARN)),
        },
        Case {
            name: "a binding the guardrails refuse predicts nothing: no role that will not exist",
            pod: app(),
            sa: Some(json!({})),
            binding: binding(
                json!({"serviceAccountName": "orders", "permissions": {"statements": [{"actions": ["iam:*"], "resources": ["*"]}]}}),
            ),
            configure: keep,
            check: |o| assert!(o.patch.is_none()),
        },
        Case {
            name: "the binding's audience and token expiration reach the projected token",
            pod: app(),
            sa: Some(json!({})),
            binding: binding(
                json!({"serviceAccountName": "orders", "audience": "openshift", "injection": {"tokenExpirationSeconds": 3600}}),
            ),
            configure: keep,
            check: |o| {
                assert_eq!(
                    o.projection(),
                    &json!({"audience": "openshift", "expirationSeconds": 3600, "path": "token"})
                )
            },
        },
        Case {
            name: "the ServiceAccount's own role annotation wins over a binding's prediction",
            pod: app(),
            sa: role(),
            binding: binding(json!({"serviceAccountName": "orders"})),
            configure: keep,
            check: |o| assert_eq!(o.app_env("AWS_ROLE_ARN").as_deref(), Some(ARN)),
        },
        Case {
            name: "short-form annotations alone are enough to predict the role",
            pod: app(),
            sa: Some(
                json!({"podidentity.io/managed-policy-arns": "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"}),
            ),
            binding: None,
            configure: keep,
            check: |o| {
                assert_eq!(
                    o.app_env("AWS_ROLE_ARN").as_deref(),
                    Some("arn:aws:iam::111122223333:role/podidentity/prod/prod-shop.orders")
                )
            },
        },
        Case {
            name: "token expiration: the pod annotation beats the ServiceAccount's",
            pod: with_pod_annotations(app(), json!({"eks.amazonaws.com/token-expiration": "7200"})),
            sa: role_with(json!({"eks.amazonaws.com/token-expiration": "3600"})),
            binding: None,
            configure: keep,
            check: |o| assert_eq!(o.projection()["expirationSeconds"], 7200),
        },
        Case {
            name: "token expiration: the ServiceAccount's beats the flag",
            pod: app(),
            sa: role_with(json!({"eks.amazonaws.com/token-expiration": "3600"})),
            binding: None,
            configure: |c| c.default_token_expiration = 43_200,
            check: |o| assert_eq!(o.projection()["expirationSeconds"], 3600),
        },
        Case {
            name: "token expiration: the flag when nothing else says",
            pod: app(),
            sa: role(),
            binding: None,
            configure: |c| c.default_token_expiration = 43_200,
            check: |o| assert_eq!(o.projection()["expirationSeconds"], 43_200),
        },
        Case {
            name: "token expiration: never below the API server's 600 seconds",
            pod: with_pod_annotations(app(), json!({"eks.amazonaws.com/token-expiration": "60"})),
            sa: role_with(json!({"eks.amazonaws.com/token-expiration": "100"})),
            binding: None,
            configure: keep,
            check: |o| assert_eq!(o.projection()["expirationSeconds"], 600),
        },
        Case {
            name: "token expiration: an unparseable pod annotation falls back to the ServiceAccount's",
            pod: with_pod_annotations(
                app(),
                json!({"eks.amazonaws.com/token-expiration": "a day"}),
            ),
            sa: role_with(json!({"eks.amazonaws.com/token-expiration": "3600"})),
            binding: None,
            configure: keep,
            check: |o| assert_eq!(o.projection()["expirationSeconds"], 3600),
        },
        Case {
            name: "audience from the ServiceAccount annotation",
            pod: app(),
            sa: role_with(json!({"eks.amazonaws.com/audience": "vault"})),
            binding: None,
            configure: keep,
            check: |o| assert_eq!(o.projection()["audience"], "vault"),
        },
        Case {
            name: "Windows pods get the Windows token path",
            pod: pod(
                json!({"serviceAccountName": "orders", "nodeSelector": {"kubernetes.io/os": "windows"}, "containers": [{"name": "app"}]}),
            ),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_eq!(
                    o.app_env("AWS_WEB_IDENTITY_TOKEN_FILE").as_deref(),
                    Some(r"C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token")
                )
            },
        },
        Case {
            name: "the beta os label counts as Windows too",
            pod: pod(
                json!({"serviceAccountName": "orders", "nodeSelector": {"beta.kubernetes.io/os": "windows"}, "containers": [{"name": "app"}]}),
            ),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert!(
                    o.env("containers", 0)["AWS_WEB_IDENTITY_TOKEN_FILE"].starts_with(r"C:\var")
                )
            },
        },
        Case {
            name: "a configured annotation prefix is the only one read",
            pod: with_pod_annotations(app(), json!({"example.com/token-expiration": "1200"})),
            sa: Some(
                json!({"example.com/role-arn": "arn:aws:iam::111122223333:role/other", "eks.amazonaws.com/role-arn": ARN}),
            ),
            binding: None,
            configure: |c| c.annotation_prefix = "example.com".into(),
            check: |o| {
                assert_eq!(
                    o.env("containers", 0)["AWS_ROLE_ARN"],
                    "arn:aws:iam::111122223333:role/other"
                );
                assert_eq!(o.projection()["expirationSeconds"], 1200);
            },
        },
        Case {
            name: "a non-root pod without fsGroup gets one, from its runAsGroup",
            pod: pod(
                json!({"serviceAccountName": "orders", "securityContext": {"runAsNonRoot": true, "runAsGroup": 3000},
                            "containers": [{"name": "app"}]}),
            ),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_eq!(
                    o.pod["spec"]["securityContext"],
                    json!({"runAsNonRoot": true, "runAsGroup": 3000, "fsGroup": 3000})
                )
            },
        },
        Case {
            name: "a container-level non-root user also gets the default fsGroup",
            pod: pod(
                json!({"serviceAccountName": "orders", "containers": [{"name": "app", "securityContext": {"runAsUser": 1000}}]}),
            ),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| assert_eq!(o.pod["spec"]["securityContext"], json!({"fsGroup": 65534})),
        },
        Case {
            name: "a pod's own fsGroup is left alone",
            pod: pod(
                json!({"serviceAccountName": "orders", "securityContext": {"runAsNonRoot": true, "fsGroup": 42}, "containers": [{"name": "app"}]}),
            ),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| assert_eq!(o.pod["spec"]["securityContext"]["fsGroup"], 42),
        },
        Case {
            name: "a pod that does not say it is non-root gets no fsGroup by default",
            pod: app(),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| assert!(o.pod["spec"].get("securityContext").is_none()),
        },
        Case {
            name: "fsGroup always: even pods that do not say (images with a USER line)",
            pod: app(),
            sa: role(),
            binding: None,
            configure: |c| c.token_access = TokenAccess::FsGroupAlways { gid: 2000 },
            check: |o| assert_eq!(o.pod["spec"]["securityContext"]["fsGroup"], 2000),
        },
        Case {
            name: "token access off: the security context is never touched",
            pod: pod(
                json!({"serviceAccountName": "orders", "securityContext": {"runAsNonRoot": true}, "containers": [{"name": "app"}]}),
            ),
            sa: role(),
            binding: None,
            configure: |c| c.token_access = TokenAccess::Off,
            check: |o| {
                assert_eq!(
                    o.pod["spec"]["securityContext"],
                    json!({"runAsNonRoot": true})
                )
            },
        },
    ]
}

/// Runs one case: its check, then the second pass, which must change nothing.
fn check(case: &Case) -> Result<(), String> {
    let outcome = run(case);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.check)(&outcome)));
    if let Err(panic) = result {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        return Err(format!(
            "case {:?} failed: {message}\npatched pod: {}",
            case.name, outcome.pod
        ));
    }
    // Every case: running the mutation on its own output changes nothing.
    if let Some(second) = &outcome.second_patch
        && !second.0.is_empty()
    {
        return Err(format!(
            "case {:?} is not idempotent: {second:?}",
            case.name
        ));
    }
    Ok(())
}

#[test]
fn mutation_table() {
    let cases = cases();
    assert!(cases.len() >= 25, "at least 25 cases, have {}", cases.len());
    for case in &cases {
        if let Err(failure) = check(case) {
            panic!("{failure}");
        }
    }
}

// Parity with amazon-eks-pod-identity-webhook, case by case against the pod fixtures its
// handler is tested on (pkg/handler/testdata/*.pod.yaml; each names its input as test
// annotations and the patch it expects). Ours are written anew: our own pods, names and
// values, and each checks the whole pod after the patch, which is what the API server
// stores. The fixture each mirrors is named in the case. Their harness turns
// `handler/injectSTS` and `handler/expiration` into ServiceAccount annotations, so these
// do too; `handler/region` is the region flag.
//
// The patches differ in form: the original rewrites whole container lists where ours adds
// only what is missing. The pods differ in one place, said in the case: the original puts
// the token volume first (`/spec/volumes/0`) where ours appends it (volume order means
// nothing to the kubelet; appending leaves the user's volumes where they were).
//
// Not mirrored: the fixtures under testdata/containercredentials/, the original's EKS Pod
// Identity (container credentials) mode, which this webhook does not have (pods get web
// identity only; see ../shared/design/api.md, "The pod webhook").

const CN_ARN: &str = "arn:aws-cn:iam::111122223333:role/orders";
const WINDOWS_TOKEN_FILE: &str = r"C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token";

/// The projected token volume as both webhooks write it.
fn token_volume(expiration: i64) -> Value {
    json!({"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken":
        {"audience": "sts.amazonaws.com", "expirationSeconds": expiration, "path": "token"}}]}})
}
fn token_mount() -> Value {
    json!({"name": "aws-iam-token", "readOnly": true,
        "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount"})
}
fn vars(pairs: &[(&str, &str)]) -> Value {
    pairs
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect()
}
/// The env both variables of the role add, for `arn`.
fn role_vars(arn: &str) -> Vec<(&str, &str)> {
    vec![
        ("AWS_ROLE_ARN", arn),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN_FILE),
    ]
}
/// The whole spec after the patch.
fn assert_spec(o: &Outcome, expected: Value) {
    assert_eq!(o.pod["spec"], expected);
}

fn go_parity_cases() -> Vec<Case> {
    vec![
        Case {
            // rawPodWithoutVolumes
            name: "a pod without volumes gets the variables, the mount and a volumes list",
            pod: app(),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_spec(
                    o,
                    json!({"serviceAccountName": "orders",
                    "containers": [{"name": "app", "image": "app:1", "env": vars(&role_vars(ARN)),
                        "volumeMounts": [token_mount()]}],
                    "volumes": [token_volume(86_400)]}),
                )
            },
        },
        Case {
            // rawPodWithVolumes. The original inserts the volume at index 0; ours appends.
            name: "a pod with volumes gets the token volume beside them",
            pod: pod(
                json!({"serviceAccountName": "orders", "volumes": [{"name": "cache", "emptyDir": {}}],
                "containers": [{"name": "app", "image": "app:1"}]}),
            ),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_spec(
                    o,
                    json!({"serviceAccountName": "orders",
                    "containers": [{"name": "app", "image": "app:1", "env": vars(&role_vars(ARN)),
                        "volumeMounts": [token_mount()]}],
                    "volumes": [{"name": "cache", "emptyDir": {}}, token_volume(86_400)]}),
                )
            },
        },
        Case {
            // rawPodHasVolumeMount
            name: "a container mounting its own aws-iam-token keeps it; only the variables are added",
            pod: pod(json!({"serviceAccountName": "orders",
                "volumes": [{"name": "aws-iam-token", "hostPath": {"path": "/srv/token"}}],
                "containers": [{"name": "app", "image": "app:1",
                    "volumeMounts": [{"name": "aws-iam-token", "mountPath": "/srv/token"}]}]})),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_spec(
                    o,
                    json!({"serviceAccountName": "orders",
                    "volumes": [{"name": "aws-iam-token", "hostPath": {"path": "/srv/token"}}],
                    "containers": [{"name": "app", "image": "app:1", "env": vars(&role_vars(ARN)),
                        "volumeMounts": [{"name": "aws-iam-token", "mountPath": "/srv/token"}]}]}),
                )
            },
        },
        Case {
            // rawPodHasAll: a web identity variable, a region variable and the STS variable
            // already set: the container is left alone, no variable and no mount. The pod
            // still gets the volume (with the ServiceAccount's lifetime).
            name: "a container that sets its own role, region and STS endpoint is left alone",
            pod: pod(
                json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                "env": vars(&[("AWS_REGION", "cn-northwest-1"), ("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
                    ("AWS_ROLE_ARN", CN_ARN)])}]}),
            ),
            sa: Some(json!({"eks.amazonaws.com/role-arn": CN_ARN,
                "eks.amazonaws.com/audience": "sts.amazonaws.com",
                "eks.amazonaws.com/sts-regional-endpoints": "true",
                "eks.amazonaws.com/token-expiration": "3600"})),
            binding: None,
            configure: |c| c.region = Some("cn-north-1".into()),
            check: |o| {
                assert_spec(
                    o,
                    json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                        "env": vars(&[("AWS_REGION", "cn-northwest-1"), ("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
                            ("AWS_ROLE_ARN", CN_ARN)])}],
                    "volumes": [token_volume(3600)]}),
                )
            },
        },
        // The rule behind rawPodHasAll, as the original applies it to every container and
        // init container not skipped: either web identity variable, either region variable
        // and AWS_STS_REGIONAL_ENDPOINTS, each named in the container's `env` (a `valueFrom`
        // counts, `envFrom` is not looked into), whatever the flags and annotations ask.
        // Anything less and the container is mutated as usual, keeping what it set.
        Case {
            name: "the token file, a region and STS set by hand: left alone, the role is theirs",
            pod: pod(
                json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                "env": vars(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/run/own/token"),
                    ("AWS_DEFAULT_REGION", "eu-west-1"), ("AWS_STS_REGIONAL_ENDPOINTS", "legacy")])}]}),
            ),
            sa: role(),
            binding: None,
            configure: |c| c.region = Some("us-east-1".into()),
            check: |o| {
                assert_spec(
                    o,
                    json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                        "env": vars(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/run/own/token"),
                            ("AWS_DEFAULT_REGION", "eu-west-1"), ("AWS_STS_REGIONAL_ENDPOINTS", "legacy")])}],
                    "volumes": [token_volume(86_400)]}),
                )
            },
        },
        Case {
            name: "both web identity variables and a region but no STS variable: still mounted",
            pod: pod(
                json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                "env": vars(&[("AWS_ROLE_ARN", ARN), ("AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN_FILE),
                    ("AWS_REGION", "eu-west-1")])}]}),
            ),
            sa: role(),
            binding: None,
            configure: |c| c.region = Some("us-east-1".into()),
            check: |o| {
                assert_spec(
                    o,
                    json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                        "env": vars(&[("AWS_ROLE_ARN", ARN), ("AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN_FILE),
                            ("AWS_REGION", "eu-west-1")]),
                        "volumeMounts": [token_mount()]}],
                    "volumes": [token_volume(86_400)]}),
                )
            },
        },
        Case {
            name: "both web identity variables and STS but no region variable: region and mount added",
            pod: pod(
                json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                "env": vars(&[("AWS_ROLE_ARN", ARN), ("AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN_FILE),
                    ("AWS_STS_REGIONAL_ENDPOINTS", "regional")])}]}),
            ),
            sa: role(),
            binding: None,
            configure: |c| c.region = Some("us-east-1".into()),
            check: |o| {
                assert_eq!(
                    o.container("containers", 0)["env"],
                    vars(&[
                        ("AWS_ROLE_ARN", ARN),
                        ("AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN_FILE),
                        ("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
                        ("AWS_DEFAULT_REGION", "us-east-1"),
                        ("AWS_REGION", "us-east-1")
                    ])
                );
                assert!(o.mounted("containers", 0));
            },
        },
        Case {
            name: "variables set through valueFrom count, with no region flag and no STS asked",
            pod: pod(
                json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                "env": [
                    {"name": "AWS_ROLE_ARN", "valueFrom": {"secretKeyRef": {"name": "aws", "key": "role"}}},
                    {"name": "AWS_REGION", "valueFrom": {"configMapKeyRef": {"name": "aws", "key": "region"}}},
                    {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}]}]}),
            ),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert!(o.container("containers", 0).get("volumeMounts").is_none());
                assert_eq!(
                    o.env_names("containers", 0),
                    ["AWS_ROLE_ARN", "AWS_REGION", "AWS_STS_REGIONAL_ENDPOINTS"]
                );
                assert_eq!(o.token_volumes().len(), 1);
            },
        },
        Case {
            name: "envFrom is not looked into: a container fed by a ConfigMap is mutated",
            pod: pod(
                json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                "envFrom": [{"configMapRef": {"name": "aws-everything"}}]}]}),
            ),
            sa: role_with(json!({"eks.amazonaws.com/sts-regional-endpoints": "true"})),
            binding: None,
            configure: |c| c.region = Some("us-east-1".into()),
            check: |o| {
                assert_eq!(
                    o.env_names("containers", 0),
                    [
                        "AWS_STS_REGIONAL_ENDPOINTS",
                        "AWS_DEFAULT_REGION",
                        "AWS_REGION",
                        "AWS_ROLE_ARN",
                        "AWS_WEB_IDENTITY_TOKEN_FILE"
                    ]
                );
                assert!(o.mounted("containers", 0));
            },
        },
        Case {
            name: "an init container with its own role, region and STS is left alone, the app is not",
            pod: pod(json!({"serviceAccountName": "orders",
                "initContainers": [{"name": "fetch", "image": "fetch:1",
                    "env": vars(&[("AWS_ROLE_ARN", "arn:aws:iam::444455556666:role/fetch"),
                        ("AWS_REGION", "eu-west-1"), ("AWS_STS_REGIONAL_ENDPOINTS", "regional")])}],
                "containers": [{"name": "app", "image": "app:1"}]})),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_spec(
                    o,
                    json!({"serviceAccountName": "orders",
                    "initContainers": [{"name": "fetch", "image": "fetch:1",
                        "env": vars(&[("AWS_ROLE_ARN", "arn:aws:iam::444455556666:role/fetch"),
                            ("AWS_REGION", "eu-west-1"), ("AWS_STS_REGIONAL_ENDPOINTS", "regional")])}],
                    "containers": [{"name": "app", "image": "app:1", "env": vars(&role_vars(ARN)),
                        "volumeMounts": [token_mount()]}],
                    "volumes": [token_volume(86_400)]}),
                )
            },
        },
        Case {
            // Ours only (the original never adds an fsGroup): the token does not reach a
            // container left alone, so its user does not call for one.
            name: "a non-root container left alone asks for no fsGroup",
            pod: pod(
                json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                "securityContext": {"runAsUser": 1000},
                "env": vars(&[("AWS_ROLE_ARN", ARN), ("AWS_REGION", "eu-west-1"),
                    ("AWS_STS_REGIONAL_ENDPOINTS", "regional")])}]}),
            ),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| assert!(o.pod["spec"].get("securityContext").is_none()),
        },
        Case {
            // rawPodHasSTS
            name: "region and STS variables set but no role: the role and the mount are added",
            pod: pod(
                json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                "env": vars(&[("AWS_REGION", "cn-northwest-1"), ("AWS_STS_REGIONAL_ENDPOINTS", "regional")])}]}),
            ),
            sa: Some(json!({"eks.amazonaws.com/role-arn": CN_ARN,
                "eks.amazonaws.com/sts-regional-endpoints": "true"})),
            binding: None,
            configure: |c| c.region = Some("cn-north-1".into()),
            check: |o| {
                assert_spec(
                    o,
                    json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                        "env": vars(&[("AWS_REGION", "cn-northwest-1"), ("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
                            ("AWS_ROLE_ARN", CN_ARN), ("AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN_FILE)]),
                        "volumeMounts": [token_mount()]}],
                    "volumes": [token_volume(86_400)]}),
                )
            },
        },
        Case {
            // rawPodHasTokenExpiration
            name: "the pod's token-expiration annotation sets the token lifetime",
            pod: with_pod_annotations(app(), json!({"eks.amazonaws.com/token-expiration": "3600"})),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_eq!(o.token_volumes(), [&token_volume(3600)]);
                assert!(o.mounted("containers", 0));
            },
        },
        Case {
            // rawPodMinTokenExpiration
            name: "a pod token-expiration of 0 becomes the 600-second minimum",
            pod: with_pod_annotations(app(), json!({"eks.amazonaws.com/token-expiration": "0"})),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| assert_eq!(o.token_volumes(), [&token_volume(600)]),
        },
        Case {
            // rawPodNeedsRegion
            name: "the region flag adds both region variables before the role's",
            pod: app(),
            sa: role(),
            binding: None,
            configure: |c| c.region = Some("us-west-2".into()),
            check: |o| {
                assert_spec(
                    o,
                    json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                        "env": vars(&[("AWS_DEFAULT_REGION", "us-west-2"), ("AWS_REGION", "us-west-2"),
                            ("AWS_ROLE_ARN", ARN), ("AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN_FILE)]),
                        "volumeMounts": [token_mount()]}],
                    "volumes": [token_volume(86_400)]}),
                )
            },
        },
        Case {
            // rawPodNeedsSTS
            name: "regional STS and a region: the STS variable first, then region, then role",
            pod: app(),
            sa: Some(json!({"eks.amazonaws.com/role-arn": CN_ARN,
                "eks.amazonaws.com/sts-regional-endpoints": "true"})),
            binding: None,
            configure: |c| c.region = Some("cn-north-1".into()),
            check: |o| {
                assert_eq!(
                    o.container("containers", 0)["env"],
                    vars(&[
                        ("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
                        ("AWS_DEFAULT_REGION", "cn-north-1"),
                        ("AWS_REGION", "cn-north-1"),
                        ("AWS_ROLE_ARN", CN_ARN),
                        ("AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN_FILE)
                    ])
                );
                assert!(o.mounted("containers", 0));
            },
        },
        Case {
            // rawPodNoSTSAnnotationOverride
            name: "a ServiceAccount's sts-regional-endpoints false beats the flag",
            pod: app(),
            sa: role_with(json!({"eks.amazonaws.com/sts-regional-endpoints": "false"})),
            binding: None,
            configure: |c| {
                c.default_regional_sts = true;
                c.region = Some("eu-central-1".into());
            },
            check: |o| {
                assert_eq!(
                    o.container("containers", 0)["env"],
                    vars(&[
                        ("AWS_DEFAULT_REGION", "eu-central-1"),
                        ("AWS_REGION", "eu-central-1"),
                        ("AWS_ROLE_ARN", ARN),
                        ("AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN_FILE)
                    ])
                )
            },
        },
        Case {
            // rawPodRegionPresent
            name: "a container's own AWS_REGION stays, and the role is added after it",
            pod: pod(
                json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                "env": vars(&[("AWS_REGION", "eu-west-3")])}]}),
            ),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_eq!(
                    o.container("containers", 0)["env"],
                    vars(&[
                        ("AWS_REGION", "eu-west-3"),
                        ("AWS_ROLE_ARN", ARN),
                        ("AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN_FILE)
                    ])
                );
                assert!(o.mounted("containers", 0));
            },
        },
        Case {
            // rawPodSkip. Only AWS_ROLE_ARN set (no STS variable): not left alone, so the
            // region and the mount come, and the token file is the user's to set.
            name: "a skipped sidecar, and a container with only its own AWS_ROLE_ARN",
            pod: with_pod_annotations(
                pod(json!({"serviceAccountName": "orders", "containers": [
                    {"name": "mesh", "image": "mesh:1"},
                    {"name": "app", "image": "app:1", "env": vars(&[("AWS_ROLE_ARN", "chosen-by-hand")])}]})),
                json!({"eks.amazonaws.com/skip-containers": "mesh"}),
            ),
            sa: role(),
            binding: None,
            configure: |c| c.region = Some("us-west-2".into()),
            check: |o| {
                assert_spec(
                    o,
                    json!({"serviceAccountName": "orders", "containers": [
                        {"name": "mesh", "image": "mesh:1"},
                        {"name": "app", "image": "app:1",
                            "env": vars(&[("AWS_ROLE_ARN", "chosen-by-hand"),
                                ("AWS_DEFAULT_REGION", "us-west-2"), ("AWS_REGION", "us-west-2")]),
                            "volumeMounts": [token_mount()]}],
                    "volumes": [token_volume(86_400)]}),
                )
            },
        },
        Case {
            // rawPodWithGRPC. The original once wrote `"service": null` back into gRPC
            // probes when it re-serialized containers; ours never rewrites a container.
            name: "a gRPC readiness probe comes through untouched",
            pod: pod(
                json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                "readinessProbe": {"grpc": {"port": 9000}}}]}),
            ),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_eq!(
                    o.container("containers", 0)["readinessProbe"],
                    json!({"grpc": {"port": 9000}})
                );
                assert!(o.mounted("containers", 0));
            },
        },
        Case {
            // rawPodWithInitContainer
            name: "an init container and a native sidecar get what the main container gets",
            pod: pod(json!({"serviceAccountName": "orders",
                "initContainers": [{"name": "schema", "image": "schema:1"},
                    {"name": "proxy", "image": "proxy:1", "restartPolicy": "Always"}],
                "containers": [{"name": "app", "image": "app:1"}]})),
            sa: role(),
            binding: None,
            configure: |c| c.region = Some("ap-southeast-2".into()),
            check: |o| {
                let env = vars(&[
                    ("AWS_DEFAULT_REGION", "ap-southeast-2"),
                    ("AWS_REGION", "ap-southeast-2"),
                    ("AWS_ROLE_ARN", ARN),
                    ("AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN_FILE),
                ]);
                assert_spec(
                    o,
                    json!({"serviceAccountName": "orders",
                    "initContainers": [
                        {"name": "schema", "image": "schema:1", "env": env, "volumeMounts": [token_mount()]},
                        {"name": "proxy", "image": "proxy:1", "restartPolicy": "Always", "env": env,
                            "volumeMounts": [token_mount()]}],
                    "containers": [{"name": "app", "image": "app:1", "env": env, "volumeMounts": [token_mount()]}],
                    "volumes": [token_volume(86_400)]}),
                )
            },
        },
        Case {
            // initPodNeedsRegion
            name: "an init container named like the main one is injected as well",
            pod: pod(json!({"serviceAccountName": "orders",
                "initContainers": [{"name": "app", "image": "app:1"}],
                "containers": [{"name": "app", "image": "app:1"}]})),
            sa: role(),
            binding: None,
            configure: |c| c.region = Some("us-west-2".into()),
            check: |o| {
                for list in ["initContainers", "containers"] {
                    assert_eq!(
                        o.container(list, 0)["env"],
                        vars(&[
                            ("AWS_DEFAULT_REGION", "us-west-2"),
                            ("AWS_REGION", "us-west-2"),
                            ("AWS_ROLE_ARN", ARN),
                            ("AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN_FILE)
                        ])
                    );
                    assert!(o.mounted(list, 0), "{list}");
                }
            },
        },
        Case {
            // rawPodWithsecCompProfile
            name: "a container's seccomp profile is kept and asks for no fsGroup",
            pod: pod(
                json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}]}),
            ),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_spec(
                    o,
                    json!({"serviceAccountName": "orders", "containers": [{"name": "app", "image": "app:1",
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        "env": vars(&role_vars(ARN)), "volumeMounts": [token_mount()]}],
                    "volumes": [token_volume(86_400)]}),
                )
            },
        },
        Case {
            // windowsPodWithoutVolumes
            name: "a Windows pod reads the token at the C: path, mounted at the Linux path",
            pod: pod(json!({"serviceAccountName": "orders",
                "nodeSelector": {"kubernetes.io/os": "windows", "kubernetes.io/arch": "amd64"},
                "containers": [{"name": "app", "image": "app:1"}]})),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_spec(
                    o,
                    json!({"serviceAccountName": "orders",
                    "nodeSelector": {"kubernetes.io/os": "windows", "kubernetes.io/arch": "amd64"},
                    "containers": [{"name": "app", "image": "app:1",
                        "env": vars(&[("AWS_ROLE_ARN", ARN), ("AWS_WEB_IDENTITY_TOKEN_FILE", WINDOWS_TOKEN_FILE)]),
                        "volumeMounts": [token_mount()]}],
                    "volumes": [token_volume(86_400)]}),
                )
            },
        },
        Case {
            // betaWindowsPodWithoutVolumes
            name: "a Windows pod by the beta os label, likewise",
            pod: pod(json!({"serviceAccountName": "orders",
                "nodeSelector": {"beta.kubernetes.io/os": "windows"},
                "containers": [{"name": "app", "image": "app:1"}]})),
            sa: role(),
            binding: None,
            configure: keep,
            check: |o| {
                assert_eq!(
                    o.container("containers", 0)["env"],
                    vars(&[
                        ("AWS_ROLE_ARN", ARN),
                        ("AWS_WEB_IDENTITY_TOKEN_FILE", WINDOWS_TOKEN_FILE)
                    ])
                );
                assert!(o.mounted("containers", 0));
                assert_eq!(o.token_volumes(), [&token_volume(86_400)]);
            },
        },
    ]
}

#[test]
fn go_webhook_fixture_parity() {
    let failures: Vec<String> = go_parity_cases()
        .iter()
        .filter_map(|case| check(case).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn without_an_operator_configuration_bindings_predict_nothing() {
    let predictor = Predictor::annotations_only("eks.amazonaws.com");
    let binding: PodIdentityBinding = serde_json::from_value(json!({
        "apiVersion": "podidentity.io/v1alpha1", "kind": "PodIdentityBinding",
        "metadata": {"name": "orders-s3", "namespace": "shop"}, "spec": {"serviceAccountName": "orders"}
    }))
    .unwrap_or_else(|err| panic!("{err}"));
    let empty = BTreeMap::new();
    let effective = predictor.effective_annotations("shop", "orders", Some(&empty), Some(&binding));
    let pod: AdmittedPod = serde_json::from_value(app()).unwrap_or_else(|err| panic!("{err}"));
    assert!(mutate(&pod, effective.as_ref(), &MutationConfig::default()).is_none());
    // Annotated ServiceAccounts still work exactly as with the original webhook.
    let annotated = BTreeMap::from([("eks.amazonaws.com/role-arn".to_string(), ARN.to_string())]);
    let effective = predictor.effective_annotations("shop", "orders", Some(&annotated), None);
    assert!(
        mutate(&pod, effective.as_ref(), &MutationConfig::default())
            .is_some_and(|p| !p.0.is_empty())
    );
}
