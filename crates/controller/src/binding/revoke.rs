//! `onViolation: Revoke`: when a PodIdentityPolicy that asks for it refuses a binding whose
//! role exists, the role loses its permissions (managed policies detached, inline policy
//! deleted); its trust policy stays, so pods still assume it and are denied, not broken.
//! Once done, the record of it keeps later passes of the refusal from asking IAM again; a
//! pass that finds the binding allowed again converges the role back.

use kube::ResourceExt;
use kube::runtime::events::EventType;
use podidentity_api::{PodIdentityBinding, PodIdentityBindingSpec};
use podidentity_iam::namespace_policy::{AppliedPolicy, over_quota};

use super::cleanup::role_identity;
use super::report::recorded_role;
use crate::binding::role::revoke_permissions;
use crate::context::{Applied, Context};
use crate::error::Error;

/// The record of a revocation in place of an applied role's fingerprint.
pub const REVOKED: u64 = 1;

/// The first policy that refuses the binding (by its own rules, or its quota when the
/// binding stands `ahead` places back) and asks for revocation.
pub fn revoking_policy<'a>(
    policies: &'a [AppliedPolicy],
    spec: &PodIdentityBindingSpec,
    ahead: Option<usize>,
) -> Option<&'a AppliedPolicy> {
    policies.iter().filter(|p| p.revokes()).find(|p| {
        !p.check(spec).is_empty()
            || ahead.is_some_and(|rank| over_quota(std::slice::from_ref(*p), rank).is_some())
    })
}

/// Takes the permissions of the binding's role away; says whether it has a role whose
/// permissions are now gone.
pub async fn revoke(
    ctx: &Context,
    binding: &PodIdentityBinding,
    policy: &AppliedPolicy,
) -> Result<bool, Error> {
    let uid = binding.uid().unwrap_or_default();
    let remembered = ctx.applied(&uid);
    if remembered
        .as_ref()
        .is_some_and(|a| a.fingerprint == REVOKED)
    {
        return Ok(true);
    }
    let Some(role) = remembered
        .map(|a| a.role)
        .or_else(|| recorded_role(binding))
    else {
        return Ok(false);
    };
    let taken = revoke_permissions(ctx.iam.as_ref(), &role_identity(binding, ctx)).await?;
    ctx.remember_applied(
        &uid,
        Applied {
            generation: binding.metadata.generation,
            fingerprint: REVOKED,
            role: role.clone(),
            missing_policies: Vec::new(),
            missing_recheck_at: None,
        },
    );
    if taken > 0 {
        ctx.event(
            binding,
            EventType::Warning,
            "PermissionsRevoked",
            format!(
                "PodIdentityPolicy {} refuses this binding and asks for revocation \
                 (onViolation: Revoke): took {taken} policies from IAM role {}",
                policy.name, role.arn
            ),
        )
        .await;
    }
    Ok(true)
}
