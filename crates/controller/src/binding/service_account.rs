//! What the operator writes to a ServiceAccount: the annotations of its owning binding,
//! by server-side apply under the operator's field manager. Every apply sends the whole
//! set the binding wants (and the owner reference when the binding created the
//! ServiceAccount), so the API server itself drops what the operator no longer asks for,
//! and never touches fields other managers own.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use podidentity_api::{FIELD_MANAGER, PodIdentityBinding};
use podidentity_iam::build::DesiredServiceAccount;
use serde_json::{Value, json};

use crate::binding::conditions::ServiceAccountState;
use crate::context::Context;
use crate::error::Error;

/// The annotation keys the operator's field manager owns on this object, from its
/// managedFields; `None` when the API server keeps no managedFields (fakes).
pub fn owned_annotations(metadata: &kube::core::ObjectMeta) -> Option<BTreeSet<String>> {
    let entries = metadata.managed_fields.as_ref()?;
    let mut keys = BTreeSet::new();
    for entry in entries {
        if entry.manager.as_deref() != Some(FIELD_MANAGER)
            || entry.operation.as_deref() != Some("Apply")
        {
            continue;
        }
        let fields = entry.fields_v1.as_ref().map(|f| &f.0);
        if let Some(Value::Object(annotations)) =
            fields.and_then(|f| f.pointer("/f:metadata/f:annotations"))
        {
            keys.extend(
                annotations
                    .keys()
                    .filter_map(|k| k.strip_prefix("f:"))
                    .map(str::to_string),
            );
        }
    }
    Some(keys)
}

/// Whether the ServiceAccount carries an owner reference to this binding (it was created
/// for it, `createServiceAccount`).
fn owned_by(account: &ServiceAccount, binding: &PodIdentityBinding) -> bool {
    let uid = binding.uid();
    account
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == uid.as_ref())
}

/// Annotates the ServiceAccount (creating it when asked) when what it holds differs from
/// what the binding wants; writes nothing otherwise.
pub async fn bind_service_account(
    ctx: &Context,
    binding: &PodIdentityBinding,
    namespace: &str,
    desired: &DesiredServiceAccount,
) -> Result<ServiceAccountState, Error> {
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
    let existing = api.get_opt(&desired.name).await?;
    let keep_owner = match &existing {
        None if !desired.create => {
            return Ok(ServiceAccountState::NotFound {
                name: desired.name.clone(),
            });
        }
        None => true,
        Some(account) => {
            let current = account.metadata.annotations.clone().unwrap_or_default();
            let values_in_line = desired
                .annotations
                .iter()
                .all(|(k, v)| current.get(k) == Some(v));
            let wanted: BTreeSet<String> = desired.annotations.keys().cloned().collect();
            let nothing_stale =
                owned_annotations(&account.metadata).is_none_or(|owned| owned == wanted);
            if values_in_line && nothing_stale {
                return Ok(ServiceAccountState::Bound);
            }
            owned_by(account, binding)
        }
    };
    let mut metadata =
        json!({"name": desired.name, "namespace": namespace, "annotations": desired.annotations});
    // Sent on every apply: an apply without it would drop it (and orphan the account).
    if keep_owner && let Some(owner) = binding.controller_owner_ref(&()) {
        metadata["ownerReferences"] = json!([owner]);
    }
    let patch = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata});
    api.patch(
        &desired.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(ServiceAccountState::Bound)
}

/// Takes the binding's annotations back from a ServiceAccount it no longer names (or on
/// deletion), unless another binding owns that ServiceAccount now: all bindings write
/// under one field manager, so the owner's own apply replaces them instead. A
/// ServiceAccount the binding created keeps its owner reference (garbage collection takes
/// it with the binding).
pub async fn release_service_account(
    ctx: &Context,
    binding: &PodIdentityBinding,
    namespace: &str,
    name: &str,
    siblings: &[std::sync::Arc<crate::caches::Watched>],
) -> Result<(), Error> {
    let other_owner = podidentity_iam::service_account_owner(
        siblings.iter().filter_map(|b| b.0.as_ref().ok()),
        namespace,
        name,
    )
    .is_some_and(|owner| owner.uid() != binding.uid());
    if other_owner {
        return Ok(());
    }
    unbind_service_account(ctx, binding, namespace, name).await
}

/// Takes back everything the operator's field manager wrote on the ServiceAccount (an
/// apply of nothing), if it still exists and holds any of it.
async fn unbind_service_account(
    ctx: &Context,
    binding: &PodIdentityBinding,
    namespace: &str,
    name: &str,
) -> Result<(), Error> {
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(existing) = api.get_opt(name).await? else {
        return Ok(());
    };
    let owned = owned_by(&existing, binding);
    // Deleting a binding that created its ServiceAccount: the account goes with it.
    if owned && binding.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let holds_ours = match owned_annotations(&existing.metadata) {
        Some(owned) => !owned.is_empty(),
        // No managedFields to go by: look at the annotations themselves.
        None => existing
            .annotations()
            .contains_key(podidentity_api::annotations::ROLE_ARN),
    };
    if !holds_ours {
        return Ok(());
    }
    let mut metadata = json!({"name": name, "namespace": namespace});
    // Changing owner references needs delete rights (OwnerReferencesPermissionEnforcement):
    // the apply keeps the one it owns.
    if owned && let Some(owner) = binding.controller_owner_ref(&()) {
        metadata["ownerReferences"] = json!([owner]);
    }
    let patch = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata});
    match api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// The ServiceAccount the binding last bound (else the one its spec names).
pub(super) fn bound_service_account(binding: &PodIdentityBinding) -> String {
    binding
        .status
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| binding.spec.service_account_name.clone())
}
