//! Writing what a pass found: the only writer of a binding's status. It writes only when
//! the status differs, and not when the cache is merely behind this process's own last
//! write of the same status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use podidentity_api::{PodIdentityBinding, PodIdentityBindingStatus};
use podidentity_iam::build::DesiredState;

use crate::binding::conditions::{Assessment, ServiceAccountState, next_status};
use crate::context::{Context, OwnWrite, RoleFacts};
use crate::error::Error;
use crate::status_patch::apply_status;

/// The role as the status records it (for a pass that changes nothing in IAM).
pub fn recorded_role(binding: &PodIdentityBinding) -> Option<RoleFacts> {
    let status = binding.status.as_ref()?;
    Some(RoleFacts {
        name: status.role_name.clone()?,
        arn: status.role_arn.clone()?,
        id: status.role_id.clone()?,
    })
}

/// Writes the status when it differs from the current one; says whether it wrote.
/// `role` and `desired` fill in the role and trust policy fields when known.
pub async fn write_status(
    ctx: &Context,
    binding: &PodIdentityBinding,
    assessment: &Assessment,
    role: Option<&RoleFacts>,
    desired: Option<&DesiredState>,
) -> Result<bool, Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut status: PodIdentityBindingStatus = next_status(
        binding.status.as_ref(),
        assessment,
        binding.metadata.generation,
        &now,
    );
    if let Some(role) = role {
        status.role_name = Some(role.name.clone());
        status.role_arn = Some(role.arn.clone());
        status.role_id = Some(role.id.clone());
    }
    // Counted only on passes that found the binding Ready; anything else forgets it.
    status.pods_needing_restart = match assessment {
        Assessment::Synced(synced) => synced
            .pods_needing_restart
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        _ => None,
    };
    if let Some(desired) = desired {
        status.trust_policy = Some(desired.trust_policy_size.clone());
        if let Assessment::Synced(synced) = assessment {
            status.service_account_name = match synced.service_account {
                ServiceAccountState::Bound => Some(desired.service_account.name.clone()),
                ServiceAccountState::NotFound { .. } => None,
            };
        }
    }
    if binding.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let uid = binding.uid().unwrap_or_default();
    let over = binding.resource_version().unwrap_or_default();
    let namespace = binding.namespace().unwrap_or_default();
    let api: Api<PodIdentityBinding> = Api::namespaced(ctx.client.clone(), &namespace);
    let wrote = apply_status(&api, &binding.name_any(), &status).await?;
    if wrote {
        ctx.remember_status_write(
            &uid,
            OwnWrite {
                over,
                unreadable: false,
            },
        );
    }
    Ok(wrote)
}
