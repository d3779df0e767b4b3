//! The Secret a CredentialsRequest names, in ccoctl's format and with the Cloud
//! Credential Operator's label and annotation (so OpenShift's tooling recognises it), and
//! the operator's own label (so its Secret watch holds it). The operator writes only a
//! Secret annotated for this request, or a new one: a Secret someone else wrote (ccoctl,
//! a binding, another request) is refused and left as it is. It is written by server-side
//! apply without force, so a field another writer owns is a conflict, not an overwrite.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use podidentity_api::FIELD_MANAGER;
use podidentity_api::credentials_request::{SECRET_ANNOTATION, SECRET_LABEL};
use podidentity_iam::build::DesiredSecret;

use crate::binding::secret::{apply_body, credentials_secret, in_line};
use crate::caches::MANAGED_BY;
use crate::context::Context;
use crate::error::Error;

/// What writing the Secret came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    InLine,
    /// The Secret's namespace does not exist.
    NoNamespace,
    /// Someone else's Secret of that name: whose, in words.
    Foreign(String),
}

/// The label that selects requests' Secrets (with the operator's own).
pub fn selector() -> String {
    format!("{SECRET_LABEL}=true,{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

/// The request (`namespace/name`) a Secret of ours was written for.
pub fn request_of(secret: &Secret) -> Option<(String, String)> {
    let (namespace, name) = secret
        .annotations()
        .get(SECRET_ANNOTATION)?
        .split_once('/')?;
    Some((namespace.to_string(), name.to_string()))
}

fn wanted(request: &str, namespace: &str, desired: &DesiredSecret) -> Secret {
    let mut secret = credentials_secret(namespace, desired);
    secret
        .labels_mut()
        .insert(SECRET_LABEL.to_string(), "true".to_string());
    secret
        .annotations_mut()
        .insert(SECRET_ANNOTATION.to_string(), request.to_string());
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
            Some(owner) if owner == request => {
                if in_line(&current, &wanted) {
                    return Ok(Written::InLine);
                }
            }
            Some(owner) => return Ok(Written::Foreign(format!("CredentialsRequest {owner}'s"))),
            None => return Ok(Written::Foreign("a PodIdentityBinding's".into())),
        }
    }
    let patch = apply_body(&wanted)?;
    match api
        .patch(
            &desired.name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(Written::InLine),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Written::NoNamespace),
        // Fields another writer owns (ccoctl's `oc apply`, a hand edit).
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Written::Foreign(
            "not the operator's (ccoctl's, or made by hand)".into(),
        )),
        Err(err) => Err(err.into()),
    }
}

/// Deletes the Secret, if it is this request's.
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
