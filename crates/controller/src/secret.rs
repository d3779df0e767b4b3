//! The credentials Secret (ccoctl format) for clusters without the pod webhook.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use podidentity_api::{FIELD_MANAGER, PodIdentityBinding};
use podidentity_iam::build::DesiredSecret;
use serde_json::json;

use crate::context::Context;
use crate::error::Error;

/// The ccoctl-format Secret, owned by the binding; written only when it differs.
pub async fn apply_secret(
    ctx: &Context,
    binding: &PodIdentityBinding,
    namespace: &str,
    desired: &DesiredSecret,
) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let wanted = ByteString(desired.credentials.clone().into_bytes());
    if let Some(existing) = api.get_opt(&desired.name).await?
        && existing.data.as_ref().and_then(|d| d.get("credentials")) == Some(&wanted)
    {
        return Ok(());
    }
    let secret = Secret {
        metadata: kube::core::ObjectMeta {
            name: Some(desired.name.clone()),
            namespace: Some(namespace.into()),
            owner_references: binding.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("credentials".to_string(), wanted)])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    let mut patch = serde_json::to_value(&secret).unwrap_or_default();
    patch["apiVersion"] = json!("v1");
    patch["kind"] = json!("Secret");
    api.patch(
        &desired.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
