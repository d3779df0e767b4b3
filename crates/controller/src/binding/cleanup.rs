//! Deletion behind the finalizer: the role deleted or retained by the deletion policy,
//! the ServiceAccount's annotations taken back. It needs nothing but the role's name and
//! ownership tags, so a spec that no longer validates can never block deletion; the
//! credentials Secret goes with the binding (garbage collection, it is owned).

use kube::ResourceExt;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use podidentity_api::{DeletionPolicy, Mechanism, PodIdentityBinding};
use podidentity_iam::BindingRef;
use podidentity_iam::build::ownership_tags;

use super::account_move::{left_behind, retire};
use super::association::{bound_association_key, delete_association};
use super::conditions::Assessment;
use super::memory::Memory;
use super::report::write_status;
use super::role::{RoleIdentity, delete_role, retain_role};
use super::service_account::{bound_service_account, release_service_account};
use crate::context::Context;
use crate::error::Error;

/// The role's name and ownership, known even when the spec no longer validates: the name
/// from status (what was made), else derived as the build would.
pub(super) fn role_identity(binding: &PodIdentityBinding, ctx: &Context) -> RoleIdentity {
    let namespace = binding.namespace().unwrap_or_default();
    let reference = BindingRef::of(&namespace, binding);
    let role_name = binding
        .status
        .as_ref()
        .and_then(|s| s.role_name.clone())
        .or_else(|| binding.spec.role.name.clone().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| reference.derived_role_name(&ctx.config));
    RoleIdentity::new(role_name, ownership_tags(&ctx.config, reference))
}

/// Whether the binding may have an association: it recorded one, or it was (or asks to
/// be) in Pod Identity mode. IRSA bindings cost EKS nothing on deletion.
fn used_pod_identity(binding: &PodIdentityBinding, ctx: &Context) -> bool {
    let status = binding.status.as_ref();
    status.is_some_and(|s| s.association.is_some() || s.mechanism == Some(Mechanism::PodIdentity))
        || binding
            .spec
            .identity
            .effective_mechanism(ctx.config.identity.default_mechanism)
            == Mechanism::PodIdentity
}

pub async fn cleanup(
    binding: &PodIdentityBinding,
    ctx: &Context,
    memory: &Memory,
) -> Result<(), Error> {
    let namespace = binding.namespace().unwrap_or_default();
    let key = ObjectRef::from_obj(binding);
    memory.set_waiting(&key, false);
    write_status(ctx, memory, binding, &Assessment::Deleting, None, None)
        .await
        .ok();
    let role = role_identity(binding, ctx);
    let policy = binding
        .spec
        .effective_deletion_policy(ctx.config.deletion_policy);
    // The ARN the status records, else the one the role's name makes in the account the
    // namespace is placed in (a binding gone before its first status write).
    let role_arn = binding
        .status
        .as_ref()
        .and_then(|s| s.role_arn.clone())
        .unwrap_or_else(|| {
            let placed = ctx
                .policies
                .for_namespace(&namespace)
                .account_for(&namespace);
            let config = ctx.config.in_account(placed.as_deref());
            podidentity_iam::naming::role_arn(
                &config.partition(),
                config.account_id_or_placeholder(),
                &config.role_path(),
                &role.name,
            )
        });
    // The association first: one left behind would name a role that is gone.
    if policy == DeletionPolicy::Delete && used_pod_identity(binding, ctx) {
        let key = bound_association_key(ctx, binding, &namespace);
        delete_association(ctx, binding, &key, &role_arn, &role.ownership).await?;
    }
    let iam = ctx.iam_in(ctx.account_of(&role_arn))?;
    let result = match policy {
        DeletionPolicy::Delete => delete_role(iam, &role).await,
        DeletionPolicy::Retain => retain_role(iam, &role).await,
    };
    // Unfinished IAM cleanup must be an error: the finalizer stays until it is done.
    result?;
    // Roles kept in accounts the namespace left (a move under way) go the same way.
    // (one in an account the operator no longer acts in stays there, said in the log).
    for arn in left_behind(binding, &role_arn) {
        retire(ctx, &arn, &role.ownership, policy).await?;
    }
    let siblings = ctx.bindings_in(&namespace).await?;
    let bound = bound_service_account(binding);
    release_service_account(ctx, binding, &namespace, &bound, &siblings).await?;
    memory.forget_binding(&binding.uid().unwrap_or_default(), &key);
    ctx.event(
        binding,
        EventType::Normal,
        "Deleted",
        format!("cleaned up IAM role {}", role.name),
    )
    .await;
    Ok(())
}
