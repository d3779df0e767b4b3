//! One way to write a status: a server-side apply of the status subresource under the
//! operator's field manager (it owns every status field it sets, and only those).

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use podidentity_api::FIELD_MANAGER;
use serde_json::json;

/// Applies `status` to the object `name`; `Ok(false)` when the object is gone (deleted
/// meanwhile: nothing to report on).
/// What a status write came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusWrite {
    Written,
    /// The object no longer exists.
    Gone,
}

pub async fn apply_status<K>(
    api: &Api<K>,
    name: &str,
    status: &impl serde::Serialize,
) -> Result<StatusWrite, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    match api
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(StatusWrite::Written),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(StatusWrite::Gone),
        Err(err) => Err(err),
    }
}
