//! The binding reconciler: dereference → validate → build → apply → status, behind the
//! finalizer. Validation failures make no IAM call; cleanup needs nothing but the role's
//! name and ownership tags, so a bad spec can never block deletion.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizing, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use podidentity_api::annotations;
use podidentity_api::conditions::reason;
use podidentity_api::{
    DeletionPolicy, FIELD_MANAGER, FINALIZER, PodIdentityBinding, PodIdentityBindingStatus,
};
use podidentity_iam::build::{DesiredSecret, DesiredServiceAccount, DesiredState, ownership_tags};
use podidentity_iam::{BindingRef, desired_state, naming};
use serde_json::json;

use crate::context::Context;
use crate::error::Error;
use crate::role::{Known, RoleIdentity, RoleOutcome, delete_role, ensure_role, retain_role};
use crate::status::{Assessment, ServiceAccountState, next_status};

/// The controller's entry point for one binding.
pub async fn reconcile(
    binding: Arc<PodIdentityBinding>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = binding.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<PodIdentityBinding> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = ObjectRef::from_obj(binding.as_ref());
    let result = finalizer(&api, FINALIZER, binding, |event| async {
        match event {
            Finalizing::Apply(binding) => apply(&binding, &ctx).await,
            Finalizing::Cleanup(binding) => cleanup(&binding, &ctx).await,
        }
    })
    .await
    .map_err(|err| Error::Finalizer(Box::new(err)));
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}

/// Requeue policy for failed passes: per-binding exponential backoff.
pub fn error_policy(binding: Arc<PodIdentityBinding>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&ObjectRef::from_obj(binding.as_ref()));
    tracing::warn!(binding = %binding.name_any(), reason = error.reason(), %error, ?delay, "reconcile failed; backing off");
    Action::requeue(delay)
}

fn binding_ref(binding: &PodIdentityBinding) -> (String, String) {
    (binding.namespace().unwrap_or_default(), binding.name_any())
}

async fn apply(binding: &PodIdentityBinding, ctx: &Context) -> Result<Action, Error> {
    let (namespace, name) = binding_ref(binding);
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

    // The role: skipped when this generation is already in line (drift is the sweep's).
    let in_line = binding.status.as_ref().is_some_and(|s| {
        s.observed_generation == generation
            && s.role_id.is_some()
            && s.conditions
                .iter()
                .any(|c| c.type_ == podidentity_api::conditions::ROLE_SYNCED && c.status == "True")
    });
    let mut role_id = binding.status.as_ref().and_then(|s| s.role_id.clone());
    if !in_line {
        let known = if role_id.is_some() {
            Known::Exists
        } else {
            Known::New
        };
        match ensure_role(ctx.iam.as_ref(), &desired.role, known).await {
            Err(err) => {
                let assessment = Assessment::AwsFailed {
                    reason: err.kind.reason().into(),
                    message: err.to_string(),
                };
                write_status(ctx, binding, &assessment, None).await?;
                return Err(err.into());
            }
            Ok(RoleOutcome::Conflict { existing }) => {
                let message = format!(
                    "IAM role {} exists and is not this binding's (its ownership tags do not match); \
                     it was left untouched: delete or retag it, or rename the binding",
                    existing.name
                );
                if write_status(
                    ctx,
                    binding,
                    &Assessment::Conflict {
                        message: message.clone(),
                    },
                    None,
                )
                .await?
                {
                    ctx.event(binding, EventType::Warning, reason::ROLE_CONFLICT, message)
                        .await;
                }
                return Ok(Action::requeue(
                    ctx.config.drift_interval().unwrap_or_default(),
                ));
            }
            Ok(RoleOutcome::Created(role)) => {
                role_id = Some(role.id.clone());
                ctx.event(
                    binding,
                    EventType::Normal,
                    "Created",
                    format!("created IAM role {}", role.arn),
                )
                .await;
            }
            Ok(RoleOutcome::Converged { role, changed }) => {
                role_id = Some(role.id.clone());
                if !changed.is_empty() {
                    let what: Vec<&str> = changed.iter().map(|c| c.describe()).collect();
                    ctx.event(
                        binding,
                        EventType::Normal,
                        "Updated",
                        format!("updated IAM role {}: {}", role.arn, what.join(", ")),
                    )
                    .await;
                }
            }
        }
    }

    let service_account =
        bind_service_account(ctx, binding, &namespace, &desired.service_account).await?;
    if let Some(secret) = &desired.credentials_secret {
        apply_secret(ctx, binding, &namespace, secret).await?;
    }
    let assessment = Assessment::RoleSynced { service_account };
    write_status(ctx, binding, &assessment, Some((&desired, role_id))).await?;
    Ok(Action::await_change())
}

fn owner_reference(binding: &PodIdentityBinding) -> Option<OwnerReference> {
    binding.controller_owner_ref(&())
}

/// Annotates the ServiceAccount (server-side apply, own field manager) — creating it when
/// asked — and writes only when an annotation differs.
async fn bind_service_account(
    ctx: &Context,
    binding: &PodIdentityBinding,
    namespace: &str,
    desired: &DesiredServiceAccount,
) -> Result<ServiceAccountState, Error> {
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
    let existing = api.get_opt(&desired.name).await?;
    if existing.is_none() && !desired.create {
        return Ok(ServiceAccountState::NotFound {
            name: desired.name.clone(),
        });
    }
    if let Some(existing) = &existing {
        let current = existing.metadata.annotations.clone().unwrap_or_default();
        if desired
            .annotations
            .iter()
            .all(|(k, v)| current.get(k) == Some(v))
        {
            return Ok(ServiceAccountState::Bound);
        }
    }
    let mut metadata =
        json!({"name": desired.name, "namespace": namespace, "annotations": desired.annotations});
    if existing.is_none()
        && let Some(owner) = owner_reference(binding)
    {
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

/// The ccoctl-format Secret, owned by the binding; written only when it differs.
async fn apply_secret(
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
            owner_references: owner_reference(binding).map(|o| vec![o]),
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

/// Writes the status when it differs from the current one; says whether it wrote.
async fn write_status(
    ctx: &Context,
    binding: &PodIdentityBinding,
    assessment: &Assessment,
    synced: Option<(&DesiredState, Option<String>)>,
) -> Result<bool, Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut status: PodIdentityBindingStatus = next_status(
        binding.status.as_ref(),
        assessment,
        binding.metadata.generation,
        &now,
    );
    if let Some((desired, role_id)) = synced {
        status.role_name = Some(desired.role.name.clone());
        status.role_arn = Some(desired.role.arn.clone());
        status.role_id = role_id;
        status.trust_policy = Some(desired.trust_policy_size.clone());
    }
    if binding.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let (namespace, name) = binding_ref(binding);
    let api: Api<PodIdentityBinding> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({
        "apiVersion": PodIdentityBinding::api_version(&()),
        "kind": PodIdentityBinding::kind(&()),
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(true)
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

async fn cleanup(binding: &PodIdentityBinding, ctx: &Context) -> Result<Action, Error> {
    let (namespace, _) = binding_ref(binding);
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
    unbind_service_account(ctx, &namespace, &binding.spec.service_account_name, binding).await?;
    ctx.event(
        binding,
        EventType::Normal,
        "Deleted",
        format!("cleaned up IAM role {}", role.name),
    )
    .await;
    Ok(Action::await_change())
}

/// Removes the annotations this binding wrote, where they still hold its values.
async fn unbind_service_account(
    ctx: &Context,
    namespace: &str,
    name: &str,
    binding: &PodIdentityBinding,
) -> Result<(), Error> {
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(existing) = api.get_opt(name).await? else {
        return Ok(());
    };
    let current = existing.metadata.annotations.unwrap_or_default();
    let ours = binding.status.as_ref().and_then(|s| s.role_arn.clone());
    let written = [
        annotations::ROLE_ARN,
        annotations::AUDIENCE,
        annotations::STS_REGIONAL_ENDPOINTS,
        annotations::TOKEN_EXPIRATION,
    ];
    // Only when the role annotation is still ours: otherwise someone else owns them now.
    if ours.is_none() || current.get(annotations::ROLE_ARN) != ours.as_ref() {
        return Ok(());
    }
    let removals: serde_json::Map<String, serde_json::Value> = written
        .iter()
        .filter(|key| current.contains_key(**key))
        .map(|key| (key.to_string(), serde_json::Value::Null))
        .collect();
    if removals.is_empty() {
        return Ok(());
    }
    let patch = json!({"metadata": {"annotations": removals}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
