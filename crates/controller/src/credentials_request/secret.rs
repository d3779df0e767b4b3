//! The Secret a CredentialsRequest names, in ccoctl's format and with the Cloud
//! Credential Operator's label and annotation (so OpenShift's tooling recognises it), and
//! the operator's own label (so its Secret watch puts it back when deleted). A Secret of
//! that name written by ccoctl (no annotation) is taken over; one annotated for another
//! request is left alone.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use podidentity_api::FIELD_MANAGER;
use podidentity_api::credentials_request::{SECRET_ANNOTATION, SECRET_LABEL};
use podidentity_iam::build::DesiredSecret;

use crate::context::Context;
use crate::error::Error;
use crate::secret::MANAGED_BY;

/// What writing the Secret came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    InLine,
    /// The Secret's namespace does not exist.
    NoNamespace,
    /// Annotated for another request.
    Foreign(String),
}

fn wanted(request: &str, namespace: &str, desired: &DesiredSecret) -> Secret {
    let mut secret = Secret {
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            "credentials".to_string(),
            ByteString(desired.credentials.clone().into_bytes()),
        )])),
        ..Secret::default()
    };
    secret.metadata.name = Some(desired.name.clone());
    secret.metadata.namespace = Some(namespace.to_string());
    secret.metadata.labels = Some(BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (SECRET_LABEL.to_string(), "true".to_string()),
    ]));
    secret.metadata.annotations = Some(BTreeMap::from([(
        SECRET_ANNOTATION.to_string(),
        request.to_string(),
    )]));
    secret
}

/// Writes the request's Secret when it differs. `request` is `namespace/name`.
pub async fn apply(
    ctx: &Context,
    request: &str,
    namespace: &str,
    desired: &DesiredSecret,
) -> Result<Written, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let wanted = wanted(request, namespace, desired);
    if let Some(current) = ctx.secrets.get(&api, namespace, &desired.name).await? {
        match current.annotations().get(SECRET_ANNOTATION) {
            Some(owner) if owner != request => return Ok(Written::Foreign(owner.clone())),
            Some(_) if current.data == wanted.data && current.type_ == wanted.type_ => {
                return Ok(Written::InLine);
            }
            _ => {}
        }
    }
    let mut patch = serde_json::to_value(&wanted).map_err(kube::Error::SerdeError)?;
    patch["apiVersion"] = "v1".into();
    patch["kind"] = "Secret".into();
    match api
        .patch(
            &desired.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(Written::InLine),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Written::NoNamespace),
        Err(err) => Err(err.into()),
    }
}

/// Deletes the request's Secret, if it is the request's.
pub async fn delete(
    ctx: &Context,
    request: &str,
    namespace: &str,
    name: &str,
) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(current) = ctx.secrets.get(&api, namespace, name).await? else {
        return Ok(());
    };
    if current
        .annotations()
        .get(SECRET_ANNOTATION)
        .map(String::as_str)
        != Some(request)
    {
        return Ok(());
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}
