//! Pods that started too early: admitted before their ServiceAccount carried the role,
//! they run without credentials (or with another role's) until restarted. Found per
//! Ready binding by one list of the ServiceAccount's pods (a field selector, so the API
//! server filters; no `limit`: kube-apiserver 1.24 answered a `limit` with this selector
//! with part of the matching pods and no continue token). Nothing about pods is watched
//! or kept between passes, so the controller's memory does not grow with the cluster's
//! pods. With
//! `spec.injection.restartPods` (and the operator's `allowPodRestarts`) their workloads
//! are restarted the way `kubectl rollout restart` does, once per role.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use podidentity_api::FIELD_MANAGER;
use podidentity_webhook::pod_credentials::{DEFAULT_ANNOTATION_PREFIX, needs_restart};
use serde::de::DeserializeOwned;

use crate::context::Context;

/// On the pod template: the role the workload was last restarted for. A restart happens
/// at most once per role, however long its old pods take to go.
pub const RESTARTED_FOR: &str = "podidentity.io/restarted-for-role";
/// What `kubectl rollout restart` sets; any change to it rolls the pods.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Surveys listing pods at once, across every pass of the process.
static SURVEYS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// What owns a pod, as far as restarting goes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// A Deployment (through its ReplicaSet), StatefulSet or DaemonSet.
    Workload { kind: &'static str, name: String },
    /// A bare pod, or one owned by something a rollout cannot restart (a Job, a bare
    /// ReplicaSet): restarted by hand, never deleted by the operator.
    ByHand,
}

/// A pod that needs a restart: its name and owner, nothing else kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarlyPod {
    pub name: String,
    pub owner: Owner,
}

/// The running pods of `namespace/service_account` that lack `role_arn`.
pub async fn survey(
    ctx: &Context,
    namespace: &str,
    service_account: &str,
    role_arn: &str,
) -> Result<Vec<EarlyPod>, kube::Error> {
    survey_where(ctx, namespace, service_account, |pod| {
        needs_restart(pod, role_arn, DEFAULT_ANNOTATION_PREFIX)
    })
    .await
}

/// The pods of `namespace/service_account` that `wanted` picks.
pub async fn survey_where(
    ctx: &Context,
    namespace: &str,
    service_account: &str,
    wanted: impl Fn(&Pod) -> bool,
) -> Result<Vec<EarlyPod>, kube::Error> {
    // One list in memory at a time: concurrent passes would otherwise hold as many pod
    // lists at once, and the heap keeps that high-water mark.
    let _one_at_a_time = SURVEYS.acquire().await;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!("spec.serviceAccountName={service_account}");
    let listed = pods.list(&ListParams::default().fields(&selector)).await?;
    let found = listed
        .items
        .iter()
        .filter(|pod| wanted(pod))
        .map(|pod| EarlyPod {
            name: pod.metadata.name.clone().unwrap_or_default(),
            owner: pod_owner(pod),
        })
        .collect();
    Ok(found)
}

/// For each of `keys`, how many pods of `namespace` (of any ServiceAccount) `counts`
/// picks for it: one list for them all.
pub async fn count_in_namespace(
    ctx: &Context,
    namespace: &str,
    keys: &[String],
    counts: impl Fn(&Pod, &str) -> bool,
) -> Result<Vec<usize>, kube::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let _one_at_a_time = SURVEYS.acquire().await;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let listed = pods.list(&ListParams::default()).await?;
    Ok(keys
        .iter()
        .map(|key| listed.items.iter().filter(|pod| counts(pod, key)).count())
        .collect())
}

fn controller_of(owners: Option<&Vec<OwnerReference>>) -> Option<&OwnerReference> {
    owners?.iter().find(|o| o.controller == Some(true))
}

/// A pod's restartable owner, as far as the pod itself says (a ReplicaSet's Deployment
/// is looked up when restarting).
fn pod_owner(pod: &Pod) -> Owner {
    match controller_of(pod.metadata.owner_references.as_ref()) {
        Some(o) if o.api_version == "apps/v1" => match o.kind.as_str() {
            "ReplicaSet" => Owner::Workload {
                kind: "ReplicaSet",
                name: o.name.clone(),
            },
            "StatefulSet" => Owner::Workload {
                kind: "StatefulSet",
                name: o.name.clone(),
            },
            "DaemonSet" => Owner::Workload {
                kind: "DaemonSet",
                name: o.name.clone(),
            },
            _ => Owner::ByHand,
        },
        _ => Owner::ByHand,
    }
}

/// What a restart pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restarts {
    /// `Kind/name` of each workload restarted now.
    pub restarted: Vec<String>,
    /// `Kind/name` of each workload restarted for this role before (left alone).
    pub already: Vec<String>,
    /// Pods nobody can restart but a person.
    pub by_hand: Vec<String>,
}

/// Restarts the workloads of `pods` that were not restarted for `role_arn` yet (any
/// string that names what the restart is for: a role, or a role and a mechanism).
pub async fn restart(
    ctx: &Context,
    namespace: &str,
    pods: &[EarlyPod],
    role_arn: &str,
) -> Result<Restarts, kube::Error> {
    let mut done = Restarts::default();
    let mut workloads: BTreeSet<(&'static str, String)> = BTreeSet::new();
    for pod in pods {
        match &pod.owner {
            Owner::ByHand => done.by_hand.push(pod.name.clone()),
            Owner::Workload { kind, name } => {
                let owner = if *kind == "ReplicaSet" {
                    deployment_of(ctx, namespace, name).await?
                } else {
                    Some((*kind, name.clone()))
                };
                match owner {
                    Some(owner) => {
                        workloads.insert(owner);
                    }
                    None => done.by_hand.push(pod.name.clone()),
                }
            }
        }
    }
    for (kind, name) in workloads {
        let restarted = match kind {
            "Deployment" => restart_one::<Deployment>(ctx, namespace, &name, role_arn).await?,
            "StatefulSet" => restart_one::<StatefulSet>(ctx, namespace, &name, role_arn).await?,
            _ => restart_one::<DaemonSet>(ctx, namespace, &name, role_arn).await?,
        };
        let shown = format!("{kind}/{name}");
        if restarted {
            done.restarted.push(shown);
        } else {
            done.already.push(shown);
        }
    }
    Ok(done)
}

/// The Deployment that controls a ReplicaSet, if one does (and the ReplicaSet exists).
async fn deployment_of(
    ctx: &Context,
    namespace: &str,
    replica_set: &str,
) -> Result<Option<(&'static str, String)>, kube::Error> {
    let sets: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(set) = sets.get_opt(replica_set).await? else {
        return Ok(None);
    };
    Ok(controller_of(set.metadata.owner_references.as_ref())
        .filter(|o| o.api_version == "apps/v1" && o.kind == "Deployment")
        .map(|o| ("Deployment", o.name.clone())))
}

/// A workload whose pod template can be annotated.
trait PodTemplated {
    fn template_annotations(&self) -> Option<&BTreeMap<String, String>>;
}

/// The three workloads a rollout restarts share the pod-template shape.
macro_rules! pod_templated {
    ($($kind:ty),*) => {$(
        impl PodTemplated for $kind {
            fn template_annotations(&self) -> Option<&BTreeMap<String, String>> {
                self.spec.as_ref()?.template.metadata.as_ref()?.annotations.as_ref()
            }
        }
    )*};
}
pod_templated!(Deployment, StatefulSet, DaemonSet);

/// Annotates the pod template (a rollout) unless it was restarted for this role already;
/// says whether it did. A workload that is gone needs nothing.
async fn restart_one<K>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    role_arn: &str,
) -> Result<bool, kube::Error>
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + PodTemplated
        + Clone
        + std::fmt::Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(workload) = api.get_opt(name).await? else {
        return Ok(false);
    };
    if workload
        .template_annotations()
        .and_then(|a| a.get(RESTARTED_FOR))
        .is_some_and(|done| done == role_arn)
    {
        return Ok(false);
    }
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_AT: now,
        RESTARTED_FOR: role_arn,
    }}}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch)).await?;
    Ok(true)
}

/// The Warning Event's note: how many pods, which, and what to do.
pub fn warning(
    pods: &[EarlyPod],
    service_account: &str,
    role_arn: &str,
    restarts: Option<&Restarts>,
    restarts_allowed: bool,
) -> String {
    format!(
        "{} pod{} of ServiceAccount {service_account} run without role {role_arn} (started \
         before the ServiceAccount was annotated): {}.{}",
        pods.len(),
        if pods.len() == 1 { "" } else { "s" },
        names_shown(pods),
        what_was_restarted(restarts, restarts_allowed)
    )
}

/// The pods' names, the first ten.
pub fn names_shown(pods: &[EarlyPod]) -> String {
    const SHOWN: usize = 10;
    let mut names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).take(SHOWN).collect();
    if pods.len() > SHOWN {
        names.push("…");
    }
    names.join(", ")
}

/// What was restarted, what was before, and what a person must restart (or how to have
/// it done).
pub fn what_was_restarted(restarts: Option<&Restarts>, restarts_allowed: bool) -> String {
    let mut note = String::new();
    match restarts {
        Some(done) => {
            if !done.restarted.is_empty() {
                note.push_str(&format!(" Restarted: {}.", done.restarted.join(", ")));
            }
            if !done.already.is_empty() {
                note.push_str(&format!(
                    " Restarted for this role before, old pods still going: {}.",
                    done.already.join(", ")
                ));
            }
            if !done.by_hand.is_empty() {
                note.push_str(&format!(
                    " Not owned by a Deployment, StatefulSet or DaemonSet, restart by hand: {}.",
                    done.by_hand.join(", ")
                ));
            }
        }
        None if restarts_allowed => note.push_str(
            " Restart them, or set spec.injection.restartPods: true to have their workloads restarted.",
        ),
        None => note.push_str(
            " Restart them (spec.injection.restartPods needs the operator's allowPodRestarts).",
        ),
    }
    note
}
