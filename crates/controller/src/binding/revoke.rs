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
use super::memory::{Applied, Memory};
use super::report::{Note, When, recorded_role};
use super::role::revoke_permissions;
use crate::context::Context;
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
/// permissions are now gone, and what to tell (when something was taken).
pub async fn revoke(
    ctx: &Context,
    memory: &Memory,
    binding: &PodIdentityBinding,
    policy: &AppliedPolicy,
) -> Result<(bool, Option<Note>), Error> {
    let uid = binding.uid().unwrap_or_default();
    let remembered = memory.applied(&uid);
    if remembered
        .as_ref()
        .is_some_and(|a| a.fingerprint == REVOKED)
    {
        return Ok((true, None));
    }
    let Some(role) = remembered
        .map(|a| a.role)
        .or_else(|| recorded_role(binding))
    else {
        return Ok((false, None));
    };
    let iam = ctx.iam_in(ctx.account_of(&role.arn))?;
    let taken = revoke_permissions(iam, &role_identity(binding, ctx)).await?;
    memory.remember_applied(
        &uid,
        Some(Applied {
            generation: binding.metadata.generation,
            fingerprint: REVOKED,
            role: role.clone(),
            missing_policies: Vec::new(),
            missing_recheck_at: None,
        }),
    );
    let note = (taken > 0).then(|| {
        Note::new(
            EventType::Warning,
            "PermissionsRevoked",
            format!(
                "PodIdentityPolicy {} refuses this binding and asks for revocation \
                 (onViolation: Revoke): took {taken} policies from IAM role {}",
                policy.name, role.arn
            ),
            When::Always,
        )
    });
    Ok((true, note))
}
