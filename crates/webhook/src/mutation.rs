//! The pod mutation, pure: (pod, the effective ServiceAccount annotations, configuration)
//! in, JSON patch out. Same contract as amazon-eks-pod-identity-webhook: env variables,
//! the projected token volume and its read-only mount, for every container and init
//! container (native sidecars included) not listed in `skip-containers`. It never
//! overwrites what the user set, leaves alone a container whose env already names a web
//! identity variable, a region and the STS endpoint variable (as the original does, see
//! `sets_own_aws_env`), and a second pass yields an empty patch.

use std::collections::{BTreeMap, BTreeSet};

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::{Value, json};

use crate::pod::{AdmittedPod, ContainerView, PodSpecView};

pub use crate::pod_credentials::{
    DEFAULT_REGION_ENV, REGION_ENV, ROLE_ARN_ENV, STS_REGIONAL_ENDPOINTS_ENV, TOKEN_FILE_ENV,
    sets_own_aws_env,
};
use crate::pod_credentials::{TOKEN_MOUNT_PATH, TOKEN_VOLUME, skipped_containers};
/// The API server refuses projected tokens that live shorter than this.
pub const MIN_TOKEN_EXPIRATION_SECONDS: i64 = 600;

/// How non-root containers get to read the projected token (kubelet writes it 0600 for
/// root unless the pod has an fsGroup).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAccess {
    /// Add `fsGroup` when the pod sets none and declares it runs as non-root
    /// (`runAsNonRoot: true` or a non-zero `runAsUser`, on the pod or a token-mounting
    /// container).
    FsGroupForNonRoot { gid: i64 },
    /// Add `fsGroup` whenever the pod sets none (also covers images that switch user with
    /// a Dockerfile `USER`, which the pod spec does not show).
    FsGroupAlways { gid: i64 },
    /// Leave the pod's security context alone (the original webhook's behaviour).
    Off,
}

impl TokenAccess {
    fn gid(self) -> Option<i64> {
        match self {
            TokenAccess::FsGroupForNonRoot { gid } | TokenAccess::FsGroupAlways { gid } => {
                Some(gid)
            }
            TokenAccess::Off => None,
        }
    }
}

/// The webhook's settings (flags of `podidentity webhook`).
#[derive(Clone, Debug, PartialEq)]
pub struct MutationConfig {
    /// Annotation domain, `eks.amazonaws.com` unless configured.
    pub annotation_prefix: String,
    pub default_audience: String,
    pub default_token_expiration: i64,
    pub default_regional_sts: bool,
    /// Sets `AWS_REGION` and `AWS_DEFAULT_REGION` when present.
    pub region: Option<String>,
    pub mount_path: String,
    pub volume_name: String,
    pub token_path: String,
    pub token_access: TokenAccess,
}

impl Default for MutationConfig {
    fn default() -> Self {
        Self {
            annotation_prefix: "eks.amazonaws.com".into(),
            default_audience: "sts.amazonaws.com".into(),
            default_token_expiration: 86_400,
            default_regional_sts: false,
            region: None,
            mount_path: TOKEN_MOUNT_PATH.into(),
            volume_name: TOKEN_VOLUME.into(),
            token_path: "token".into(),
            token_access: TokenAccess::FsGroupForNonRoot { gid: 65_534 },
        }
    }
}

impl MutationConfig {
    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.annotation_prefix)
    }
}

/// What a ServiceAccount's annotations ask for, settled against the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injection {
    pub role_arn: String,
    pub audience: String,
    pub regional_sts: bool,
    pub token_expiration: i64,
}

/// Reads the role from ServiceAccount annotations; `None` when there is no role.
pub fn injection_from_annotations(
    annotations: &BTreeMap<String, String>,
    config: &MutationConfig,
) -> Option<Injection> {
    let role_arn = annotations
        .get(&config.key("role-arn"))
        .map(|arn| arn.trim())
        .filter(|arn| !arn.is_empty())?;
    let audience = annotations
        .get(&config.key("audience"))
        .filter(|audience| !audience.is_empty())
        .cloned()
        .unwrap_or_else(|| config.default_audience.clone());
    let regional_sts = annotations
        .get(&config.key("sts-regional-endpoints"))
        .and_then(|value| parse_bool(value))
        .unwrap_or(config.default_regional_sts);
    let token_expiration = annotations
        .get(&config.key("token-expiration"))
        .and_then(|value| value.trim().parse::<i64>().ok())
        .map(at_least_minimum)
        .unwrap_or(config.default_token_expiration);
    Some(Injection {
        role_arn: role_arn.to_string(),
        audience,
        regional_sts,
        token_expiration,
    })
}

/// Go's `strconv.ParseBool`, which the original webhook uses for these annotations.
fn parse_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn at_least_minimum(seconds: i64) -> i64 {
    seconds.max(MIN_TOKEN_EXPIRATION_SECONDS)
}

/// The whole mutation: the patch for `pod` given the annotations that count for its
/// ServiceAccount (see `identity::Predictor::effective_annotations`); `None` when they
/// name no role.
pub fn mutate(
    pod: &AdmittedPod,
    effective_annotations: Option<&BTreeMap<String, String>>,
    config: &MutationConfig,
) -> Option<Patch> {
    let injection = injection_from_annotations(effective_annotations?, config)?;
    let empty = BTreeMap::new();
    let default_spec = PodSpecView::default();
    let view = PodView {
        annotations: pod.metadata.annotations.as_ref().unwrap_or(&empty),
        spec: pod.spec.as_ref().unwrap_or(&default_spec),
    };
    Some(pod_patch(&view, &injection, config))
}

/// The pod as the mutation needs it: spec and annotations.
pub struct PodView<'a> {
    pub annotations: &'a BTreeMap<String, String>,
    pub spec: &'a PodSpecView,
}

/// The JSON patch that injects `injection` into the pod; empty when nothing is missing.
pub fn pod_patch(pod: &PodView<'_>, injection: &Injection, config: &MutationConfig) -> Patch {
    let skip = containers_to_skip(pod.annotations, config);
    let token_expiration = pod
        .annotations
        .get(&config.key("token-expiration"))
        .and_then(|value| value.trim().parse::<i64>().ok())
        .map(at_least_minimum)
        .unwrap_or(injection.token_expiration);
    let windows = ["kubernetes.io/os", "beta.kubernetes.io/os"]
        .iter()
        .any(|key| {
            pod.spec
                .node_selector
                .as_ref()
                .and_then(|selector| selector.get(*key))
                .is_some_and(|os| os == "windows")
        });
    let unix_token_file = format!(
        "{}/{}",
        config.mount_path.trim_end_matches('/'),
        config.token_path
    );
    let token_file = if windows {
        format!("C:{}", unix_token_file.replace('/', "\\"))
    } else {
        unix_token_file
    };

    let mut ops = Vec::new();
    let mut any_container = false;
    // The containers that will mount the token: the fsGroup is for their users.
    let mut token_readers = Vec::new();
    for (list, containers) in [
        (
            "initContainers",
            pod.spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", pod.spec.containers.as_slice()),
    ] {
        for (index, container) in containers.iter().enumerate() {
            if skip.contains(container.name.as_str()) {
                continue;
            }
            any_container = true;
            if sets_own_aws_env(env_names(container)) {
                // Left alone, as the original does; it may mount the token by itself.
                if mounts_token(container, config) {
                    token_readers.push(container);
                }
                continue;
            }
            token_readers.push(container);
            container_ops(
                &mut ops,
                list,
                index,
                container,
                injection,
                &token_file,
                config,
            );
        }
    }
    // Every container skipped: no patch, not even the volume, which nothing would mount
    // (the original adds it all the same). A container left alone still gets the pod its
    // volume, as with the original.
    if !any_container {
        return Patch(Vec::new());
    }

    let has_volume = pod
        .spec
        .volumes
        .as_ref()
        .is_some_and(|volumes| volumes.iter().any(|v| v.name == config.volume_name));
    if !has_volume {
        let volume = token_volume(config, &injection.audience, token_expiration);
        push_item(
            &mut ops,
            &["spec", "volumes"],
            pod.spec.volumes.is_some(),
            volume,
        );
    }
    // Windows has no fsGroup; its token files are readable as they are.
    if let Some(gid) = config.token_access.gid()
        && !windows
        && needs_fs_group(pod.spec, &token_readers, config.token_access)
    {
        // A group the pod's processes already run as is the least surprising choice.
        let gid = pod
            .spec
            .security_context
            .as_ref()
            .and_then(|context| context.run_as_group)
            .unwrap_or(gid);
        if pod.spec.security_context.is_some() {
            ops.push(add(&["spec", "securityContext", "fsGroup"], json!(gid)));
        } else {
            ops.push(add(&["spec", "securityContext"], json!({ "fsGroup": gid })));
        }
    }
    Patch(ops)
}

fn containers_to_skip<'a>(
    annotations: &'a BTreeMap<String, String>,
    config: &MutationConfig,
) -> BTreeSet<&'a str> {
    skipped_containers(Some(annotations), &config.annotation_prefix)
}

fn container_ops(
    ops: &mut Vec<PatchOperation>,
    list: &str,
    index: usize,
    container: &ContainerView,
    injection: &Injection,
    token_file: &str,
    config: &MutationConfig,
) {
    let index = index.to_string();
    let defined: BTreeSet<&str> = env_names(container).collect();
    let mut env: Vec<(&str, String)> = Vec::new();
    if injection.regional_sts && !defined.contains(STS_REGIONAL_ENDPOINTS_ENV) {
        env.push((STS_REGIONAL_ENDPOINTS_ENV, "regional".into()));
    }
    if let Some(region) = &config.region
        && !defined.contains(REGION_ENV)
        && !defined.contains(DEFAULT_REGION_ENV)
    {
        env.push((DEFAULT_REGION_ENV, region.clone()));
        env.push((REGION_ENV, region.clone()));
    }
    // Either web identity variable set by the user means the user manages both.
    if !defined.contains(ROLE_ARN_ENV) && !defined.contains(TOKEN_FILE_ENV) {
        env.push((ROLE_ARN_ENV, injection.role_arn.clone()));
        env.push((TOKEN_FILE_ENV, token_file.to_string()));
    }
    let has_env = container.env.as_ref().is_some_and(|env| !env.is_empty());
    let env_path = ["spec", list, index.as_str(), "env"];
    if !env.is_empty() {
        if has_env {
            for (name, value) in env {
                ops.push(add(
                    &[&env_path[..], &["-"]].concat(),
                    json!({"name": name, "value": value}),
                ));
            }
        } else {
            let values: Vec<Value> = env
                .into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect();
            ops.push(add(&env_path, Value::Array(values)));
        }
    }
    if !mounts_token(container, config) {
        let mount = json!({
            "mountPath": config.mount_path,
            "name": config.volume_name,
            "readOnly": true,
        });
        let has_mounts = container
            .volume_mounts
            .as_ref()
            .is_some_and(|m| !m.is_empty());
        push_item(
            ops,
            &["spec", list, index.as_str(), "volumeMounts"],
            has_mounts,
            mount,
        );
    }
}

/// The names in a container's `env` (`envFrom` sources are not looked into).
fn env_names(container: &ContainerView) -> impl Iterator<Item = &str> {
    container.env.iter().flatten().map(|env| env.name.as_str())
}

fn mounts_token(container: &ContainerView, config: &MutationConfig) -> bool {
    container
        .volume_mounts
        .iter()
        .flatten()
        .any(|mount| mount.name == config.volume_name)
}

/// The projected token volume, as a Volume serializes.
fn token_volume(config: &MutationConfig, audience: &str, expiration: i64) -> Value {
    json!({
        "name": config.volume_name,
        "projected": {"sources": [{"serviceAccountToken": {
            "audience": audience,
            "expirationSeconds": expiration,
            "path": config.token_path,
        }}]},
    })
}

fn needs_fs_group(spec: &PodSpecView, readers: &[&ContainerView], access: TokenAccess) -> bool {
    let context = spec.security_context.as_ref();
    if context.and_then(|c| c.fs_group).is_some() {
        return false;
    }
    match access {
        TokenAccess::Off => false,
        TokenAccess::FsGroupAlways { .. } => true,
        TokenAccess::FsGroupForNonRoot { .. } => {
            let pod_non_root = context.is_some_and(|c| {
                c.run_as_non_root == Some(true) || c.run_as_user.is_some_and(|uid| uid != 0)
            });
            pod_non_root
                || readers.iter().any(|container| {
                    container.security_context.as_ref().is_some_and(|c| {
                        c.run_as_non_root == Some(true) || c.run_as_user.is_some_and(|uid| uid != 0)
                    })
                })
        }
    }
}

fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(tokens.iter().copied()),
        value,
    })
}

/// Appends to an array, or creates it when the pod has none.
fn push_item(ops: &mut Vec<PatchOperation>, array: &[&str], exists: bool, item: Value) {
    if exists {
        ops.push(add(&[array, &["-"]].concat(), item));
    } else {
        ops.push(add(array, Value::Array(vec![item])));
    }
}
