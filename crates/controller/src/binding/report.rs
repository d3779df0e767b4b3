//! The last step of a pass: what it found, said once. The conditions are computed from
//! the assessment (`conditions`), the status is written once, only when it differs, and
//! the pass's Events are published once, those that repeat a status only when the status
//! changed. This is the only writer of a binding's status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use podidentity_api::{
    AccountMoveStatus, Mechanism, MigrationStatus, PodIdentityBinding, PodIdentityBindingStatus,
};
use podidentity_iam::build::DesiredState;

use super::account_move::record_left;
use super::conditions::{Assessment, AssociationState, ServiceAccountState, Synced, next_status};
use super::memory::{Memory, OwnWrite, RoleFacts};
use crate::context::Context;
use crate::error::Error;
use crate::status_patch::{StatusWrite, apply_status};

/// What a pass found, to be reported.
pub struct Found {
    pub assessment: Assessment,
    /// The role, as IAM named it (or as the status records it).
    pub role: Option<RoleFacts>,
    /// What was applied, for the status's trust policy size and ServiceAccount.
    pub desired: Option<DesiredState>,
    pub events: Vec<Note>,
    /// What the pass comes to once reported.
    pub next: Result<Action, Error>,
}

/// An Event of the pass.
pub struct Note {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
    pub when: When,
    /// The Event's action, when not the pass's `Reconcile`.
    pub action: Option<String>,
}

/// When a pass's Event is published.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Whatever becomes of the status: something was done (a role made or changed,
    /// permissions revoked), and it happened.
    Always,
    /// Once the status is written or found as it is: what a pass found (pods to restart)
    /// is said again by the next pass if this one could not write.
    StatusWritten,
    /// Only when the status changed: it repeats what the status says, and a pass that
    /// finds the same again says nothing new.
    StatusChanged,
}

impl Note {
    pub fn warning(reason: &str, message: String) -> Self {
        Self::new(EventType::Warning, reason, message, When::StatusChanged)
    }

    pub fn new(type_: EventType, reason: &str, message: String, when: When) -> Self {
        Self {
            type_,
            reason: reason.into(),
            message,
            when,
            action: None,
        }
    }

    /// The same Note published under its own action (see [`Context::event_for_action`]).
    pub fn for_action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }
}

impl Found {
    pub fn new(assessment: Assessment, role: Option<RoleFacts>) -> Self {
        Self {
            assessment,
            role,
            desired: None,
            events: Vec::new(),
            next: Ok(Action::await_change()),
        }
    }

    pub fn with_event(mut self, note: Note) -> Self {
        self.events.push(note);
        self
    }

    pub fn then(mut self, next: Result<Action, Error>) -> Self {
        self.next = next;
        self
    }
}

/// Publishes Events of a pass that ends without a status to write (it failed part way).
pub async fn publish(ctx: &Context, binding: &PodIdentityBinding, events: Vec<Note>) {
    publish_as(ctx, binding, events, None).await;
}

/// Publishes the Events that are due given how the status write went (`None`: no status
/// was written).
async fn publish_as(
    ctx: &Context,
    binding: &PodIdentityBinding,
    events: Vec<Note>,
    wrote: Option<&Result<bool, Error>>,
) {
    for note in events {
        let due = match note.when {
            When::Always => true,
            When::StatusWritten => wrote.is_some_and(Result::is_ok),
            When::StatusChanged => wrote.is_some_and(|w| matches!(w, Ok(true))),
        };
        if due {
            match &note.action {
                Some(action) => {
                    ctx.event_for_action(binding, note.type_, action, &note.reason, note.message)
                        .await
                }
                None => {
                    ctx.event(binding, note.type_, &note.reason, note.message)
                        .await
                }
            }
        }
    }
}

/// Writes the status (when it differs) and publishes the Events; returns what the pass
/// comes to.
pub async fn report(
    ctx: &Context,
    memory: &Memory,
    binding: &PodIdentityBinding,
    found: Found,
) -> Result<Action, Error> {
    let wrote = write_status(
        ctx,
        memory,
        binding,
        &found.assessment,
        found.role.as_ref(),
        found.desired.as_ref(),
    )
    .await;
    publish_as(ctx, binding, found.events, Some(&wrote)).await;
    tracing::debug!(binding = %binding.name_any(), namespace = binding.namespace().unwrap_or_default(), wrote = ?wrote, "reported");
    wrote?;
    found.next
}

/// The role as the status records it (for a pass that changes nothing in IAM).
pub fn recorded_role(binding: &PodIdentityBinding) -> Option<RoleFacts> {
    let status = binding.status.as_ref()?;
    Some(RoleFacts {
        name: status.role_name.clone()?,
        arn: status.role_arn.clone()?,
        id: status.role_id.clone()?,
    })
}

/// The mechanism the status records after a synced pass. During a migration the new one
/// counts as delivered only once it is in place (the association ours, or the
/// ServiceAccount bound): with a conflict the old one stays recorded, so a later pass
/// never finishes a migration that never delivered.
fn recorded_mechanism(
    wanted: Mechanism,
    synced: &Synced,
    before: Option<Mechanism>,
) -> Option<Mechanism> {
    let delivered = match wanted {
        Mechanism::PodIdentity => matches!(synced.association, Some(AssociationState::Kept(_))),
        Mechanism::Irsa => synced.service_account == ServiceAccountState::Bound,
    };
    if delivered || synced.migration.is_none() {
        Some(wanted)
    } else {
        before
    }
}

/// Writes the status when it differs from the current one; says whether it wrote.
/// `role` and `desired` fill in the role and trust policy fields when known.
pub async fn write_status(
    ctx: &Context,
    memory: &Memory,
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
        // A role in another account than the one recorded: the namespace moved, and the
        // old role is remembered until retired (whatever this pass came to).
        status.account_move = record_left(
            status.account_move.take(),
            status.role_arn.as_deref(),
            &role.arn,
        );
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
            status.mechanism = recorded_mechanism(desired.mechanism, synced, status.mechanism);
            let leaving_pod_identity = synced
                .migration
                .as_ref()
                .is_some_and(|m| m.from == Mechanism::PodIdentity);
            status.account_move = synced.account_move.as_ref().map(|m| AccountMoveStatus {
                from_role_arns: m.from_role_arns.clone(),
                pods_remaining: m
                    .pods_remaining
                    .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            });
            status.migration = synced.migration.as_ref().map(|m| MigrationStatus {
                from: m.from,
                to: m.to,
                pods_remaining: m
                    .pods_remaining
                    .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                service_account_name: Some(m.service_account.clone()),
            });
            status.association = match (&desired.association, &synced.association) {
                // Moving to IRSA: the association stays while pods still use it.
                (None, _) if leaving_pod_identity => status.association.take(),
                // IRSA: the pass took any association of ours away.
                (None, _) => None,
                (Some(_), Some(AssociationState::Kept(kept))) => Some(kept.clone()),
                // A conflict keeps what was recorded: an association of ours, if any,
                // stays known for its deletion.
                (Some(_), _) => status.association.take(),
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
    if apply_status(&api, &binding.name_any(), &status).await? == StatusWrite::Gone {
        return Err(Error::Gone);
    }
    memory.remember_own_write(
        &uid,
        OwnWrite {
            over,
            unreadable: false,
        },
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::conditions::MigrationState;

    #[test]
    fn a_migration_records_the_new_mechanism_only_once_delivered() {
        let migrating = |association| Synced {
            association,
            migration: Some(Box::new(MigrationState {
                from: Mechanism::Irsa,
                to: Mechanism::PodIdentity,
                service_account: "web".into(),
                pods_remaining: Some(0),
            })),
            ..Synced::bound()
        };
        let conflict = Some(AssociationState::Conflict {
            id: "a-theirs".into(),
            why: "it names another role".into(),
        });
        let kept = Some(AssociationState::Kept(
            podidentity_api::AssociationStatus::default(),
        ));
        let before = Some(Mechanism::Irsa);
        assert_eq!(
            recorded_mechanism(Mechanism::PodIdentity, &migrating(conflict.clone()), before),
            before,
            "a conflict delivers nothing: the migration must not finish"
        );
        assert_eq!(
            recorded_mechanism(Mechanism::PodIdentity, &migrating(kept), before),
            Some(Mechanism::PodIdentity)
        );
        // No migration (a new binding): what it asks for, conflict or not.
        let fresh = Synced {
            association: conflict,
            ..Synced::bound()
        };
        assert_eq!(
            recorded_mechanism(Mechanism::PodIdentity, &fresh, None),
            Some(Mechanism::PodIdentity)
        );
    }
}
