//! The credentials Secret (ccoctl format) for clusters without the pod webhook.
//!
//! Only the binding's own Secret is ever written: one it created (owned by it, labelled
//! as the operator's). A Secret of that name made by anyone else is refused and left
//! alone (the binding says so), since garbage collection would delete a Secret the
//! binding owns. The operator's Secrets are watched (by that label), so one deleted or
//! edited by hand is put back, and read from that watch: the operator never reads any
//! other Secret. A Secret the spec no longer asks for is deleted.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use podidentity_api::{FIELD_MANAGER, PodIdentityBinding};
use podidentity_iam::build::DesiredSecret;

use crate::context::Context;
use crate::error::Error;
use crate::process::health::Check;

/// The label on every Secret the operator writes; its Secret watch selects on it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "podidentity-operator");

pub fn selector() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

/// Where the operator's Secrets are read from: its watch (the controller), or live reads
/// (tests without a watch).
#[derive(Clone)]
pub enum Secrets {
    Cached { store: Store<Secret>, listed: Check },
    Live,
}

impl Secrets {
    /// The operator's Secret of that name, if it is one of the operator's.
    pub(crate) async fn get(
        &self,
        api: &Api<Secret>,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Secret>, Error> {
        match self {
            Secrets::Cached { store, listed } => {
                let mut listed = listed.clone();
                listed.wait().await;
                Ok(store
                    .get(&ObjectRef::new(name).within(namespace))
                    .map(|s| s.as_ref().clone()))
            }
            Secrets::Live => Ok(api.get_opt(name).await?.filter(|s| {
                s.labels().get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
            })),
        }
    }

    /// The names of the binding's own Secrets in its namespace.
    async fn owned_by_binding(
        &self,
        api: &Api<Secret>,
        namespace: &str,
        binding: &PodIdentityBinding,
    ) -> Result<Vec<String>, Error> {
        match self {
            // Only the namespace's Secrets are looked at, and only names copied out.
            Secrets::Cached { store, .. } => Ok(store
                .state_filter(|s| {
                    s.namespace().as_deref() == Some(namespace) && owned_by(s, binding)
                })
                .iter()
                .map(|s| s.name_any())
                .collect()),
            Secrets::Live => Ok(api
                .list(&ListParams::default().labels(&selector()))
                .await?
                .items
                .iter()
                .filter(|s| owned_by(s, binding))
                .map(ResourceExt::name_any)
                .collect()),
        }
    }
}

/// What became of the binding's credentials Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretOutcome {
    /// Written, or already as wanted.
    Ours,
    /// A Secret of that name exists and is not this binding's: untouched.
    Foreign(String),
}

fn owned_by(secret: &Secret, binding: &PodIdentityBinding) -> bool {
    let uid = binding.uid();
    secret
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
}

/// The credentials Secret as the operator writes it: ccoctl's one `credentials` key,
/// `Opaque`, labelled as the operator's. Its owner (a binding's reference, a request's
/// annotation) is the caller's to add.
pub(crate) fn credentials_secret(namespace: &str, desired: &DesiredSecret) -> Secret {
    Secret {
        metadata: kube::core::ObjectMeta {
            name: Some(desired.name.clone()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY.0.to_string(),
                MANAGED_BY.1.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "credentials".to_string(),
            ByteString(desired.credentials.clone().into_bytes()),
        )])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

fn desired_object(
    binding: &PodIdentityBinding,
    namespace: &str,
    desired: &DesiredSecret,
) -> Secret {
    let mut secret = credentials_secret(namespace, desired);
    secret.metadata.owner_references = binding.controller_owner_ref(&()).map(|o| vec![o]);
    secret
}

/// A Secret as a server-side apply body (the type's serialization leaves out apiVersion
/// and kind).
pub(crate) fn apply_body(secret: &Secret) -> Result<serde_json::Value, kube::Error> {
    let mut body = serde_json::to_value(secret).map_err(kube::Error::SerdeError)?;
    body["apiVersion"] = "v1".into();
    body["kind"] = "Secret".into();
    Ok(body)
}

/// Whether a Secret of ours holds what is wanted.
pub(crate) fn in_line(current: &Secret, wanted: &Secret) -> bool {
    current.data == wanted.data
        && current.type_ == wanted.type_
        && current.labels().get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
}

/// Writes the binding's Secret if it differs (creating it if there is none), refusing a
/// Secret that is not the binding's.
pub async fn apply_secret(
    ctx: &Context,
    binding: &PodIdentityBinding,
    namespace: &str,
    desired: &DesiredSecret,
) -> Result<SecretOutcome, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let wanted = desired_object(binding, namespace, desired);
    match ctx.secrets.get(&api, namespace, &desired.name).await? {
        Some(current) if owned_by(&current, binding) => {
            if in_line(&current, &wanted) {
                return Ok(SecretOutcome::Ours);
            }
            let patch = apply_body(&wanted)?;
            api.patch(
                &desired.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
            Ok(SecretOutcome::Ours)
        }
        // Labelled as the operator's, but another binding's.
        Some(_) => Ok(SecretOutcome::Foreign(desired.name.clone())),
        None => match api.create(&PostParams::default(), &wanted).await {
            Ok(_) => {
                ctx.remember_secret(namespace, &desired.name, binding);
                Ok(SecretOutcome::Ours)
            }
            // Not in the watch: either one this process just made and the watch has not
            // brought yet, or one that is not the operator's (those never enter it).
            Err(kube::Error::Api(status)) if status.code == 409 => {
                if ctx.made_secret(namespace, &desired.name, binding) {
                    Ok(SecretOutcome::Ours)
                } else {
                    Ok(SecretOutcome::Foreign(desired.name.clone()))
                }
            }
            Err(err) => Err(err.into()),
        },
    }
}

/// Deletes the binding's Secrets other than `keep` (the spec renamed or dropped it).
pub async fn delete_stale_secrets(
    ctx: &Context,
    binding: &PodIdentityBinding,
    namespace: &str,
    keep: Option<&str>,
) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let mut stale = ctx
        .secrets
        .owned_by_binding(&api, namespace, binding)
        .await?;
    stale.retain(|name| Some(name.as_str()) != keep);
    for name in stale {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}
