//! What a pod's containers were given of a role: the environment and the projected token
//! the pod webhook injects at admission (amazon-eks-pod-identity-webhook's contract). A
//! pod admitted before its ServiceAccount was annotated has none of it and keeps running
//! without the role until it is restarted. Written by the mutation beside it; read by the
//! controller (which pods need a restart) and by `doctor` (what a pod is missing).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Pod};

/// The annotation prefix of the original webhook's contract (`--annotation-prefix`).
pub const DEFAULT_ANNOTATION_PREFIX: &str = "eks.amazonaws.com";

pub const ROLE_ARN_ENV: &str = "AWS_ROLE_ARN";
pub const TOKEN_FILE_ENV: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
pub const REGION_ENV: &str = "AWS_REGION";
pub const DEFAULT_REGION_ENV: &str = "AWS_DEFAULT_REGION";
pub const STS_REGIONAL_ENDPOINTS_ENV: &str = "AWS_STS_REGIONAL_ENDPOINTS";
/// What EKS Pod Identity's webhook gives a container: where the agent serves credentials
/// and the token file to present to it.
pub const CONTAINER_CREDENTIALS_FULL_URI_ENV: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
pub const CONTAINER_AUTHORIZATION_TOKEN_FILE_ENV: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
/// Pod Identity's projected token volume (audience `pods.eks.amazonaws.com`).
pub const POD_IDENTITY_TOKEN_VOLUME: &str = "eks-pod-identity-token";
/// The projected volume and where the webhook mounts it.
pub const TOKEN_VOLUME: &str = "aws-iam-token";
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";

/// One container, as far as credentials go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerCredentials {
    pub name: String,
    /// An init container (native sidecars included).
    pub init: bool,
    /// Named in the pod's `eks.amazonaws.com/skip-containers`: left alone on purpose.
    pub skipped: bool,
    pub role_arn: Option<String>,
    pub token_file: Option<String>,
    /// Where the projected token volume is mounted in it, if it is.
    pub token_mount: Option<String>,
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI`: EKS Pod Identity's agent, if set.
    pub container_credentials_uri: Option<String>,
    /// Where Pod Identity's token volume (`eks-pod-identity-token`) is mounted, if it is.
    pub pod_identity_token_mount: Option<String>,
}

impl ContainerCredentials {
    /// Whether this container runs as `role_arn` (skipped containers count as fine).
    pub fn has_role(&self, role_arn: &str) -> bool {
        self.skipped || self.role_arn.as_deref() == Some(role_arn)
    }

    /// Whether the SDKs in it take IRSA's web identity (both variables set): they prefer
    /// it over container credentials.
    pub fn uses_web_identity(&self) -> bool {
        !self.skipped && self.role_arn.is_some() && self.token_file.is_some()
    }

    /// Whether the SDKs in it take EKS Pod Identity's container credentials: the agent's
    /// URI is set and no web identity comes first.
    pub fn uses_pod_identity(&self) -> bool {
        !self.skipped && self.container_credentials_uri.is_some() && !self.uses_web_identity()
    }
}

/// The projected token volume of a pod: its audience and path, if the pod has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenVolume {
    pub audience: Option<String>,
    pub path: String,
    pub expiration_seconds: Option<i64>,
}

/// Whether a container's own env already says how it reaches AWS, so the webhook leaves it
/// alone altogether: no variable and no token mount. That is the rule of
/// amazon-eks-pod-identity-webhook: `AWS_ROLE_ARN` or `AWS_WEB_IDENTITY_TOKEN_FILE` (either
/// will do), `AWS_REGION` or `AWS_DEFAULT_REGION`, and `AWS_STS_REGIONAL_ENDPOINTS`, each
/// named in the container's `env`, whether by `value` or `valueFrom`. `envFrom` sources are
/// not looked into. A container with less is mutated, keeping what it set.
pub fn sets_own_aws_env<'a>(env_names: impl IntoIterator<Item = &'a str>) -> bool {
    let (mut identity, mut region, mut sts) = (false, false, false);
    for name in env_names {
        match name {
            ROLE_ARN_ENV | TOKEN_FILE_ENV => identity = true,
            REGION_ENV | DEFAULT_REGION_ENV => region = true,
            STS_REGIONAL_ENDPOINTS_ENV => sts = true,
            _ => {}
        }
    }
    identity && region && sts
}

/// The containers a pod's `<prefix>/skip-containers` annotation names (comma-separated):
/// the webhook leaves them alone.
pub fn skipped_containers<'a>(
    annotations: Option<&'a BTreeMap<String, String>>,
    prefix: &str,
) -> BTreeSet<&'a str> {
    annotations
        .and_then(|a| a.get(&format!("{prefix}/skip-containers")))
        .map(|names| {
            names
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The containers of a pod (init containers first, as they start) with what they carry;
/// `prefix`: the webhook's annotation prefix.
pub fn containers(pod: &Pod, prefix: &str) -> Vec<ContainerCredentials> {
    let skipped = skipped_containers(pod.metadata.annotations.as_ref(), prefix);
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let read = |container: &Container, init: bool| {
        let env = |name: &str| {
            container
                .env
                .iter()
                .flatten()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        ContainerCredentials {
            name: container.name.clone(),
            init,
            skipped: skipped.contains(container.name.as_str()),
            role_arn: env(ROLE_ARN_ENV),
            token_file: env(TOKEN_FILE_ENV),
            token_mount: container
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| m.name == TOKEN_VOLUME)
                .map(|m| m.mount_path.clone()),
            container_credentials_uri: env(CONTAINER_CREDENTIALS_FULL_URI_ENV),
            pod_identity_token_mount: container
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| m.name == POD_IDENTITY_TOKEN_VOLUME)
                .map(|m| m.mount_path.clone()),
        }
    };
    spec.init_containers
        .iter()
        .flatten()
        .map(|c| read(c, true))
        .chain(spec.containers.iter().map(|c| read(c, false)))
        .collect()
}

/// The pod's projected ServiceAccount token volume for AWS, if it has one.
pub fn token_volume(pod: &Pod) -> Option<TokenVolume> {
    let volume = pod
        .spec
        .as_ref()?
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == TOKEN_VOLUME)?;
    let token = volume
        .projected
        .as_ref()?
        .sources
        .iter()
        .flatten()
        .find_map(|s| s.service_account_token.as_ref())?;
    Some(TokenVolume {
        audience: token.audience.clone(),
        path: token.path.clone(),
        expiration_seconds: token.expiration_seconds,
    })
}

/// Whether a running pod of the role's ServiceAccount must be restarted to get the role:
/// some container it should reach lacks `AWS_ROLE_ARN` or carries another role's.
/// Finished pods and pods on their way out need nothing.
pub fn needs_restart(pod: &Pod, role_arn: &str, prefix: &str) -> bool {
    if !running(pod) {
        return false;
    }
    containers(pod, prefix)
        .iter()
        .any(|c| !c.has_role(role_arn))
}

/// Whether a pod has stopped for good (Succeeded or Failed).
fn stopped(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
}

/// Whether a pod still runs: finished pods and pods on their way out use nothing.
fn running(pod: &Pod) -> bool {
    !stopped(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// How a running pod's containers reach AWS, as far as a change of mechanism goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodUse {
    /// Some container takes IRSA's web identity for the role.
    Irsa,
    /// Some container takes EKS Pod Identity's container credentials.
    PodIdentity,
}

/// Whether a running pod has a container that uses `how` (for IRSA: with `role_arn`).
pub fn uses(pod: &Pod, how: PodUse, role_arn: &str, prefix: &str) -> bool {
    running(pod) && uses_in_some_container(pod, how, role_arn, prefix)
}

/// Whether a pod that has not stopped takes IRSA's web identity for `role_arn` in some
/// container: a pod on its way out still runs, and may call AWS, until it stops.
pub fn uses_until_stopped(pod: &Pod, role_arn: &str, prefix: &str) -> bool {
    !stopped(pod) && uses_in_some_container(pod, PodUse::Irsa, role_arn, prefix)
}

fn uses_in_some_container(pod: &Pod, how: PodUse, role_arn: &str, prefix: &str) -> bool {
    containers(pod, prefix).iter().any(|c| match how {
        PodUse::Irsa => c.uses_web_identity() && c.role_arn.as_deref() == Some(role_arn),
        PodUse::PodIdentity => c.uses_pod_identity(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:iam::111122223333:role/prod-shop.orders";

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    fn mutated(arn: &str) -> serde_json::Value {
        json!({"name": "app", "image": "x",
            "env": [{"name": "AWS_ROLE_ARN", "value": arn},
                    {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": format!("{TOKEN_MOUNT_PATH}/token")}],
            "volumeMounts": [{"name": "aws-iam-token", "mountPath": TOKEN_MOUNT_PATH, "readOnly": true}]})
    }

    #[test]
    fn a_pod_without_the_role_needs_a_restart_and_one_with_it_does_not() {
        let bare = pod(json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app", "image": "x"}]}}));
        assert!(needs_restart(&bare, ARN, DEFAULT_ANNOTATION_PREFIX));
        let good = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [mutated(ARN)],
            "volumes": [{"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken":
                {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}}]}}),
        );
        assert!(!needs_restart(&good, ARN, DEFAULT_ANNOTATION_PREFIX));
        assert_eq!(
            token_volume(&good),
            Some(TokenVolume {
                audience: Some("sts.amazonaws.com".into()),
                path: "token".into(),
                expiration_seconds: Some(86400)
            })
        );
        assert!(
            needs_restart(
                &good,
                "arn:aws:iam::111122223333:role/other",
                DEFAULT_ANNOTATION_PREFIX
            ),
            "another role's ARN"
        );
    }

    #[test]
    fn a_container_sets_its_own_aws_env_only_with_identity_region_and_sts_all_named() {
        let own = |names: &[&str]| sets_own_aws_env(names.iter().copied());
        assert!(own(&[
            "AWS_ROLE_ARN",
            "AWS_REGION",
            "AWS_STS_REGIONAL_ENDPOINTS"
        ]));
        assert!(own(&[
            "PATH",
            "AWS_STS_REGIONAL_ENDPOINTS",
            "AWS_DEFAULT_REGION",
            "AWS_WEB_IDENTITY_TOKEN_FILE"
        ]));
        assert!(!own(&["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]));
        assert!(!own(&[
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_REGION"
        ]));
        assert!(!own(&[
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_STS_REGIONAL_ENDPOINTS"
        ]));
        assert!(!own(&[
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_STS_REGIONAL_ENDPOINTS"
        ]));
        assert!(!own(&[]));
    }

    #[test]
    fn skipped_containers_finished_pods_and_init_containers_are_judged_as_the_webhook_does() {
        let skipped = pod(json!({"metadata": {"name": "p",
                "annotations": {"eks.amazonaws.com/skip-containers": "sidecar, other"}},
            "spec": {"containers": [mutated(ARN), {"name": "sidecar", "image": "x"}]}}));
        assert!(!needs_restart(&skipped, ARN, DEFAULT_ANNOTATION_PREFIX));
        let init = pod(json!({"metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "setup", "image": "x"}], "containers": [mutated(ARN)]}}));
        assert!(
            needs_restart(&init, ARN, DEFAULT_ANNOTATION_PREFIX),
            "the init container lacks it"
        );
        let listed = containers(&init, DEFAULT_ANNOTATION_PREFIX);
        assert_eq!(
            listed
                .iter()
                .map(|c| (c.name.as_str(), c.init))
                .collect::<Vec<_>>(),
            vec![("setup", true), ("app", false)]
        );
        let done = pod(json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app", "image": "x"}]}, "status": {"phase": "Succeeded"}}));
        assert!(!needs_restart(&done, ARN, DEFAULT_ANNOTATION_PREFIX));
    }

    #[test]
    fn skip_containers_is_read_under_the_webhooks_annotation_prefix() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "annotations": {"acme.io/skip-containers": " proxy ,"}},
            "spec": {"containers": [{"name": "app"}, {"name": "proxy"}]},
        }))
        .unwrap_or_else(|err| panic!("{err}"));
        let skipped = |prefix| -> Vec<String> {
            containers(&pod, prefix)
                .into_iter()
                .filter(|c| c.skipped)
                .map(|c| c.name)
                .collect()
        };
        assert_eq!(skipped("acme.io"), ["proxy"]);
        assert!(skipped(DEFAULT_ANNOTATION_PREFIX).is_empty());
    }

    /// A pod counts as using IRSA only with both variables for the role, and as using Pod
    /// Identity only when no web identity comes first (the SDKs' order).
    #[test]
    fn a_pod_uses_the_mechanism_its_sdks_would_pick() {
        let pod_with = |env: serde_json::Value| {
            pod(json!({"metadata": {"name": "p"},
                "spec": {"containers": [{"name": "app", "image": "x", "env": env}]}}))
        };
        let pod_identity = json!({"name": CONTAINER_CREDENTIALS_FULL_URI_ENV,
            "value": "http://169.254.170.23/v1/credentials"});
        let irsa = mutated(ARN)["env"].clone();
        let irsa_pod = pod_with(irsa.clone());
        let agent_pod = pod_with(json!([pod_identity]));
        let both = {
            let mut env = irsa.as_array().cloned().unwrap_or_default();
            env.push(pod_identity.clone());
            pod_with(serde_json::Value::Array(env))
        };
        let arn_only = pod_with(json!([{"name": ROLE_ARN_ENV, "value": ARN}, pod_identity]));
        let p = DEFAULT_ANNOTATION_PREFIX;
        assert!(uses(&irsa_pod, PodUse::Irsa, ARN, p));
        assert!(!uses(
            &irsa_pod,
            PodUse::Irsa,
            "arn:aws:iam::111122223333:role/other",
            p
        ));
        assert!(!uses(&irsa_pod, PodUse::PodIdentity, ARN, p));
        assert!(uses(&agent_pod, PodUse::PodIdentity, ARN, p));
        assert!(!uses(&agent_pod, PodUse::Irsa, ARN, p));
        assert!(uses(&both, PodUse::Irsa, ARN, p));
        assert!(!uses(&both, PodUse::PodIdentity, ARN, p));
        // AWS_ROLE_ARN without the token file is no web identity: Pod Identity wins.
        assert!(uses(&arn_only, PodUse::PodIdentity, ARN, p));
        let mut gone = agent_pod.clone();
        gone.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        });
        assert!(!uses(&gone, PodUse::PodIdentity, ARN, p));
    }
}
