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
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use podidentity_api::{FIELD_MANAGER, PodIdentityBinding};
use podidentity_iam::build::DesiredSecret;

use super::memory::Memory;
use crate::caches::{MANAGED_BY, owned_by};
use crate::context::Context;
use crate::error::Error;

/// What became of the binding's credentials Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretOutcome {
    /// Written, or already as wanted.
    Ours,
    /// A Secret of that name exists and is not this binding's: untouched.
    Foreign(String),
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
    memory: &Memory,
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
                memory.remember_secret(
                    &binding.uid().unwrap_or_default(),
                    namespace,
                    &desired.name,
                );
                Ok(SecretOutcome::Ours)
            }
            // Not in the watch: either one this process just made and the watch has not
            // brought yet, or one that is not the operator's (those never enter it).
            Err(kube::Error::Api(status)) if status.code == 409 => {
                if memory.made_secret(&binding.uid().unwrap_or_default(), namespace, &desired.name)
                {
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
