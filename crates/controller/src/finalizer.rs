//! The finalizer `podidentity.io/iam-role`: added before any IAM work, removed once the
//! role is cleaned up, never clobbering another controller's finalizers. Adding is a merge
//! patch with the resourceVersion the pass saw as a precondition; removing is a JSON patch
//! that tests our entry is still where the pass saw it (cleanup's own status write moves
//! the resourceVersion on, but not the finalizers).
//!
//! A real API server answers some of these with errors that are not failures, and they
//! must not be retried with backoff: the object is already gone (404); it changed since
//! the cache saw it (409: the newer version is on its way through the watch and will
//! wake the binding again); it is being deleted, so no finalizer may be added (422).

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use podidentity_api::{FINALIZER, PodIdentityBinding};
use serde_json::json;

/// Where a binding stands with respect to the finalizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Not deleting, finalizer missing: add it first.
    Add,
    /// Not deleting, finalizer on: reconcile.
    Apply,
    /// Deleting, finalizer on: clean up, then remove it.
    Cleanup,
    /// Deleting and not ours (any more): nothing to do.
    Done,
}

pub fn stage(binding: &PodIdentityBinding) -> Stage {
    let ours = binding.finalizers().iter().any(|f| f == FINALIZER);
    match (binding.metadata.deletion_timestamp.is_some(), ours) {
        (false, false) => Stage::Add,
        (false, true) => Stage::Apply,
        (true, true) => Stage::Cleanup,
        (true, false) => Stage::Done,
    }
}

/// What a finalizer patch came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patched {
    Done,
    /// Not applied, harmlessly (gone, stale, being deleted); the watch brings what's next.
    Superseded(u16),
}

async fn patch_finalizers(
    api: &Api<PodIdentityBinding>,
    binding: &PodIdentityBinding,
    patch: Patch<serde_json::Value>,
) -> Result<Patched, kube::Error> {
    match api
        .patch(&binding.name_any(), &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => Ok(Patched::Done),
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409 | 422) => {
            tracing::debug!(binding = %binding.name_any(), code = status.code, message = %status.message, "finalizer patch superseded");
            Ok(Patched::Superseded(status.code))
        }
        Err(err) => Err(err),
    }
}

/// Adds our finalizer to the list the pass saw.
pub async fn add(
    api: &Api<PodIdentityBinding>,
    binding: &PodIdentityBinding,
) -> Result<Patched, kube::Error> {
    let mut finalizers = binding.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let patch = json!({
        "metadata": {
            "resourceVersion": binding.resource_version(),
            "finalizers": finalizers,
        }
    });
    patch_finalizers(api, binding, Patch::Merge(patch)).await
}

/// Removes our finalizer from the list the pass saw.
pub async fn remove(
    api: &Api<PodIdentityBinding>,
    binding: &PodIdentityBinding,
) -> Result<Patched, kube::Error> {
    let Some(index) = binding.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(Patched::Done);
    };
    let path = format!("/metadata/finalizers/{index}");
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]))
    .map_err(kube::Error::SerdeError)?;
    patch_finalizers(api, binding, Patch::Json(patch)).await
}
