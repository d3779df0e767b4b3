//! The binding reconciler: dereference → validate → build → apply → status, behind the
//! finalizer. Validation failures make no IAM call; cleanup needs nothing but the role's
//! name and ownership tags, so a bad spec can never block deletion. This pass is the only
//! writer of a binding's status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use podidentity_api::conditions::{self, reason};
use podidentity_api::{
    DeletionPolicy, FIELD_MANAGER, PodIdentityBinding, PodIdentityBindingStatus,
};
use podidentity_aws::api::RoleState;
use podidentity_iam::build::{DesiredState, ownership_tags};
use podidentity_iam::{BindingRef, desired_state, naming, service_account_owner};
use serde_json::json;

use crate::context::{Applied, Context, OwnWrite, RoleFacts, fingerprint};
use crate::error::Error;
use crate::finalizer::{self, Stage};
use crate::role::{Known, RoleIdentity, RoleOutcome, delete_role, ensure_role, retain_role};
use crate::service_account::{bind_service_account, unbind_service_account};
use crate::status::{Assessment, next_status};

/// How long a binding waits after a permanent AWS error before trying again by itself.
const PERMANENT_ERROR_RETRY: Duration = Duration::from_secs(600);

/// The controller's entry point for one binding.
pub async fn reconcile(
    binding: Arc<PodIdentityBinding>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = binding.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<PodIdentityBinding> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = ObjectRef::from_obj(binding.as_ref());
    let result = match finalizer::stage(&binding) {
        // The patch's watch event starts the next pass.
        Stage::Add => finalizer::add(&api, &binding)
            .await
            .map(|_| Action::await_change())
            .map_err(Error::Kube),
        Stage::Apply => apply(&binding, &ctx).await,
        Stage::Cleanup => match cleanup(&binding, &ctx).await {
            Ok(()) => finalizer::remove(&api, &binding)
                .await
                .map(|_| Action::await_change())
                .map_err(Error::Kube),
            Err(err) => Err(err),
        },
        Stage::Done => Ok(Action::await_change()),
    };
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}

/// Requeue policy for failed passes: per-binding exponential backoff for what may pass by
/// itself; a slow retry for what needs a change (AccessDenied, a malformed document).
pub fn error_policy(binding: Arc<PodIdentityBinding>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = if error.is_permanent() {
        PERMANENT_ERROR_RETRY
    } else {
        ctx.backoff(&ObjectRef::from_obj(binding.as_ref()))
    };
    tracing::warn!(binding = %binding.name_any(), namespace = binding.namespace().unwrap_or_default(), reason = error.reason(), %error, ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn binding_ref(binding: &PodIdentityBinding) -> (String, String) {
    (binding.namespace().unwrap_or_default(), binding.name_any())
}

/// Whether the status says this generation's role is in line already.
fn status_in_line(binding: &PodIdentityBinding, desired: &DesiredState) -> bool {
    binding.status.as_ref().is_some_and(|s| {
        s.observed_generation == binding.metadata.generation
            && s.role_id.is_some()
            && s.role_name.as_deref() == Some(desired.role.name.as_str())
            && s.conditions
                .iter()
                .any(|c| c.type_ == conditions::ROLE_SYNCED && c.status == "True")
    })
}

fn facts(role: &RoleState) -> RoleFacts {
    RoleFacts {
        name: role.name.clone(),
        arn: role.arn.clone(),
        id: role.id.clone(),
    }
}

/// The role as the status records it (for a pass that changes nothing in IAM).
fn recorded_role(binding: &PodIdentityBinding) -> Option<RoleFacts> {
    let status = binding.status.as_ref()?;
    Some(RoleFacts {
        name: status.role_name.clone()?,
        arn: status.role_arn.clone()?,
        id: status.role_id.clone()?,
    })
}

async fn apply(binding: &PodIdentityBinding, ctx: &Context) -> Result<Action, Error> {
    let (namespace, name) = binding_ref(binding);
    let key = ObjectRef::from_obj(binding);
    let uid = binding.uid().unwrap_or_default();
    let generation = binding.metadata.generation;

    // Validate and build: a refusal changes nothing in AWS.
    let desired = match desired_state(
        BindingRef {
            namespace: &namespace,
            name: &name,
        },
        &binding.spec,
        &ctx.config,
        &ctx.guardrails,
    ) {
        Ok(desired) => desired,
        Err(refusal) => {
            ctx.set_conflicted(&key, false);
            let message = refusal.to_string();
            let why = refusal.reason();
            let assessment = Assessment::Refused {
                reason: why.into(),
                message: message.clone(),
            };
            if write_status(ctx, binding, &assessment, None).await? {
                ctx.event(binding, EventType::Warning, why, message).await;
            }
            return Ok(Action::await_change());
        }
    };

    // One ServiceAccount, one role: only its owner (the oldest binding naming it) goes on.
    let account = &binding.spec.service_account_name;
    let siblings = ctx.bindings_in(&namespace).await?;
    let owner = service_account_owner(siblings.iter().map(|b| b.as_ref()), &namespace, account);
    if let Some(owner) = owner
        && owner.uid() != binding.uid()
    {
        ctx.set_conflicted(&key, true);
        let assessment = Assessment::ServiceAccountConflict {
            owner: format!("{namespace}/{}", owner.name_any()),
            service_account: format!("{namespace}/{account}"),
        };
        if write_status(ctx, binding, &assessment, recorded_role(binding).as_ref()).await? {
            ctx.event(
                binding,
                EventType::Warning,
                reason::SERVICE_ACCOUNT_CONFLICT,
                format!(
                    "ServiceAccount {account} is owned by {}, the oldest binding naming it; this one waits",
                    owner.name_any()
                ),
            )
            .await;
        }
        return Ok(Action::await_change());
    }
    ctx.set_conflicted(&key, false);

    // The role. Skipped when this generation is in line already, as this process applied
    // it (a pass from a cache that has not seen the last pass's writes yet) or as the
    // status records; a role the sweep found out of line is read and converged.
    let drifted = ctx.take_drifted(&uid);
    let wanted = fingerprint(&desired.role);
    let remembered = ctx.applied(&uid);
    let applied_here = remembered
        .as_ref()
        .is_some_and(|a| a.generation == generation && a.fingerprint == wanted);
    let mut role = remembered
        .as_ref()
        .map(|a| a.role.clone())
        .or_else(|| recorded_role(binding));
    let mut missing_policies = match &remembered {
        Some(applied) if applied_here => applied.missing_policies.clone(),
        _ => Vec::new(),
    };
    if drifted || !(applied_here || status_in_line(binding, &desired)) {
        let known = if role.is_some() {
            Known::Exists
        } else {
            Known::New
        };
        let outcome = match ensure_role(ctx.iam.as_ref(), &desired.role, known).await {
            Ok(outcome) => outcome,
            Err(err) => {
                if drifted {
                    ctx.mark_drifted(&uid);
                }
                let permanent = err.kind.is_permanent();
                let assessment = Assessment::AwsFailed {
                    reason: err.kind.reason().into(),
                    message: err.to_string(),
                    permanent,
                };
                if write_status(ctx, binding, &assessment, role.as_ref()).await? && permanent {
                    ctx.event(
                        binding,
                        EventType::Warning,
                        err.kind.reason(),
                        err.to_string(),
                    )
                    .await;
                }
                return Err(err.into());
            }
        };
        let made = match outcome {
            RoleOutcome::Conflict { existing } => {
                let message = format!(
                    "IAM role {} exists and is not this binding's (its ownership tags do not match); \
                     it was left untouched: delete or retag it, or rename the binding",
                    existing.name
                );
                let assessment = Assessment::Conflict {
                    message: message.clone(),
                };
                if write_status(ctx, binding, &assessment, None).await? {
                    ctx.event(binding, EventType::Warning, reason::ROLE_CONFLICT, message)
                        .await;
                }
                return Ok(Action::requeue(
                    ctx.config.drift_interval().unwrap_or_default(),
                ));
            }
            RoleOutcome::Created(made) => {
                ctx.event(
                    binding,
                    EventType::Normal,
                    "Created",
                    format!("created IAM role {}", made.arn),
                )
                .await;
                made
            }
            RoleOutcome::Converged {
                role: made,
                changed,
            } => {
                if !changed.is_empty() {
                    let what: Vec<&str> = changed.iter().map(|c| c.describe()).collect();
                    let (reason, verb) = if drifted {
                        ("DriftCorrected", "was changed outside; put back")
                    } else {
                        ("Updated", "updated")
                    };
                    ctx.event(
                        binding,
                        EventType::Normal,
                        reason,
                        format!("IAM role {} {verb}: {}", made.arn, what.join(", ")),
                    )
                    .await;
                }
                made
            }
            RoleOutcome::Incomplete {
                role: made,
                missing_policies: missing,
            } => {
                missing_policies = missing;
                made
            }
        };
        let made = facts(&made);
        ctx.remember_applied(
            &uid,
            Applied {
                generation,
                fingerprint: wanted,
                role: made.clone(),
                // Not attached again until the spec changes (or after a restart).
                missing_policies: missing_policies.clone(),
            },
        );
        role = Some(made);
    }

    let service_account =
        bind_service_account(ctx, binding, &namespace, &desired.service_account).await?;
    if let Some(secret) = &desired.credentials_secret {
        crate::secret::apply_secret(ctx, binding, &namespace, secret).await?;
    }
    let assessment = if missing_policies.is_empty() {
        Assessment::RoleSynced { service_account }
    } else {
        Assessment::MissingPolicies {
            arns: missing_policies.clone(),
            service_account,
        }
    };
    let wrote = write_status_with(ctx, binding, &assessment, role.as_ref(), Some(&desired)).await?;
    if wrote && !missing_policies.is_empty() {
        ctx.event(
            binding,
            EventType::Warning,
            reason::MANAGED_POLICY_NOT_FOUND,
            format!(
                "managed policies not found in IAM: {}",
                missing_policies.join(", ")
            ),
        )
        .await;
    }
    Ok(Action::await_change())
}

/// Writes the status when it differs from the current one; says whether it wrote.
async fn write_status(
    ctx: &Context,
    binding: &PodIdentityBinding,
    assessment: &Assessment,
    role: Option<&RoleFacts>,
) -> Result<bool, Error> {
    write_status_with(ctx, binding, assessment, role, None).await
}

async fn write_status_with(
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
    if let Some(desired) = desired {
        status.trust_policy = Some(desired.trust_policy_size.clone());
    }
    if binding.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    // A cache that has not caught up with this process's last write of the same status
    // (a pass woken again before the watch delivered it): nothing to write.
    let uid = binding.uid().unwrap_or_default();
    let over = binding.resource_version().unwrap_or_default();
    let digest = fingerprint(&status);
    if ctx
        .own_status_write(&uid)
        .is_some_and(|w| w.over == over && w.digest == digest)
    {
        return Ok(false);
    }
    let (namespace, name) = binding_ref(binding);
    let api: Api<PodIdentityBinding> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({
        "apiVersion": PodIdentityBinding::api_version(&()),
        "kind": PodIdentityBinding::kind(&()),
        "status": status,
    });
    match api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => {
            ctx.remember_status_write(&uid, OwnWrite { over, digest });
            Ok(true)
        }
        // Deleted meanwhile: nothing to report on.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// The role's name and ownership, known even when the spec no longer validates: the name
/// from status (what was made), else derived as the build would.
fn role_identity(binding: &PodIdentityBinding, ctx: &Context) -> RoleIdentity {
    let (namespace, name) = binding_ref(binding);
    let role_name = binding
        .status
        .as_ref()
        .and_then(|s| s.role_name.clone())
        .or_else(|| binding.spec.role.name.clone().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| naming::role_name(&ctx.config.role_name_prefix(), &namespace, &name));
    RoleIdentity::new(
        role_name,
        ownership_tags(
            &ctx.config,
            BindingRef {
                namespace: &namespace,
                name: &name,
            },
        ),
    )
}

async fn cleanup(binding: &PodIdentityBinding, ctx: &Context) -> Result<(), Error> {
    let (namespace, _) = binding_ref(binding);
    let key = ObjectRef::from_obj(binding);
    ctx.set_conflicted(&key, false);
    write_status(ctx, binding, &Assessment::Deleting, None)
        .await
        .ok();
    let role = role_identity(binding, ctx);
    let result = match binding
        .spec
        .effective_deletion_policy(ctx.config.deletion_policy)
    {
        DeletionPolicy::Delete => delete_role(ctx.iam.as_ref(), &role).await,
        DeletionPolicy::Retain => retain_role(ctx.iam.as_ref(), &role).await,
    };
    // Unfinished IAM cleanup must be an error: the finalizer stays until it is done.
    result?;
    // The annotations are this binding's to take back only if no other binding owns the
    // ServiceAccount now (an owner's own apply replaces them; a binding that was waiting
    // never wrote any).
    let account = &binding.spec.service_account_name;
    let siblings = ctx.bindings_in(&namespace).await?;
    let other_owner =
        service_account_owner(siblings.iter().map(|b| b.as_ref()), &namespace, account)
            .is_some_and(|b| b.uid() != binding.uid());
    if !other_owner {
        unbind_service_account(ctx, &namespace, account).await?;
    }
    ctx.forget_binding(&binding.uid().unwrap_or_default());
    ctx.event(
        binding,
        EventType::Normal,
        "Deleted",
        format!("cleaned up IAM role {}", role.name),
    )
    .await;
    Ok(())
}
