//! The finalizer `podidentity.io/iam-role`: added before any IAM work, removed once the
//! role is cleaned up, never clobbering another controller's finalizers. Adding is a merge
//! patch with the resourceVersion the pass saw as a precondition; removing is a JSON patch
//! that tests our entry is still where the pass saw it (cleanup's own status write moves
//! the resourceVersion on, but not the finalizers).
//!
//! A real API server answers some of these with errors that are not failures, and they
//! must not be retried with backoff: the object is already gone (404); it changed since
//! the cache saw it (409: the newer version is on its way through the watch and will
//! wake the binding again); it is being deleted, so no finalizer may be added (422 on
//! `metadata.finalizers`; other 422s are failures, see [`superseded`]).

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use podidentity_api::FINALIZER;
use serde::de::DeserializeOwned;
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

/// Where an object of ours (a binding, a CredentialsRequest) stands.
pub fn stage(binding: &impl Resource) -> Stage {
    let ours = binding.finalizers().iter().any(|f| f == FINALIZER);
    match (binding.meta().deletion_timestamp.is_some(), ours) {
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

async fn patch_finalizers<K>(
    api: &Api<K>,
    binding: &K,
    patch: Patch<serde_json::Value>,
) -> Result<Patched, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api
        .patch(&binding.name_any(), &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => Ok(Patched::Done),
        Err(kube::Error::Api(status)) if superseded(&status) => {
            tracing::debug!(binding = %binding.name_any(), code = status.code, message = %status.message, "finalizer patch superseded");
            Ok(Patched::Superseded(status.code))
        }
        Err(err) => Err(err),
    }
}

/// Whether a refused finalizer patch is harmless: the object is gone (404), changed since
/// the cache saw it (409), or refuses new finalizers because it is being deleted (422 on
/// `metadata.finalizers`). Any other 422 is a failure to retry: a kube-apiserver 1.24
/// answered one fresh binding's finalizer patch with "internal error: runtime error:
/// index out of range" from a CEL rule under load, and treating it as superseded left
/// that binding without a pass for good.
fn superseded(status: &kube::core::Status) -> bool {
    match status.code {
        404 | 409 => true,
        422 => {
            let causes = status
                .details
                .as_ref()
                .map(|d| d.causes.as_slice())
                .unwrap_or_default();
            causes.iter().any(|c| c.field == "metadata.finalizers")
                || (causes.is_empty() && status.message.contains("finalizers"))
        }
        _ => false,
    }
}

/// Adds our finalizer to the list the pass saw.
pub async fn add<K>(api: &Api<K>, binding: &K) -> Result<Patched, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
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
pub async fn remove<K>(api: &Api<K>, binding: &K) -> Result<Patched, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(code: u16, message: &str, field: Option<&str>) -> kube::core::Status {
        let status = json!({
            "status": "Failure",
            "code": code,
            "message": message,
            "reason": "Invalid",
            "details": field.map(|f| json!({"causes": [{"field": f, "message": message}]})),
        });
        serde_json::from_value(status).unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn only_refusals_that_change_nothing_are_superseded() {
        assert!(superseded(&refusal(404, "not found", None)));
        assert!(superseded(&refusal(
            409,
            "the object has been modified",
            None
        )));
        // Being deleted: no new finalizers may be added.
        assert!(superseded(&refusal(
            422,
            "Forbidden: no new finalizers can be added if the object is being deleted",
            Some("metadata.finalizers"),
        )));
        // What a 1.24 API server answered under load: a failure, retried.
        assert!(!superseded(&refusal(
            422,
            "spec.permissions: Invalid value: \"object\": internal error: runtime error: index out of range [6] with length 1 evaluating rule: statement sids must be unique",
            Some("spec.permissions"),
        )));
        assert!(!superseded(&refusal(500, "etcd timeout", None)));
    }
}
