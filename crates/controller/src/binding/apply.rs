//! One pass over a binding that is not being deleted: validate and build (a refusal makes
//! no IAM call), the ServiceAccount ownership rule, the role, the ServiceAccount
//! annotations, the credentials Secret, and the status that says how it went.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use podidentity_api::PodIdentityBinding;
use podidentity_api::conditions::{self, reason};
use podidentity_aws::api::RoleState;
use podidentity_iam::build::DesiredState;
use podidentity_iam::namespace_policy::{AppliedPolicy, over_quota};
use podidentity_iam::{BindingRef, RuleSet, desired_state_under, service_account_owner};

use super::quota;
use super::report::{recorded_role, write_status};
use super::revoke::{revoke, revoking_policy};
use crate::binding::conditions::{Assessment, ServiceAccountState, Synced};
use crate::binding::role::{Known, RoleError, RoleOutcome, ensure_role};
use crate::binding::secret::{SecretOutcome, apply_secret, delete_stale_secrets};
use crate::binding::service_account::{bind_service_account, release_service_account};
use crate::context::{Applied, Blocked, Context, RoleFacts, fingerprint};
use crate::error::Error;

use super::readiness;

/// Whether the status says this generation's role is in line already.
fn status_in_line(binding: &PodIdentityBinding, desired: &DesiredState) -> bool {
    binding.status.as_ref().is_some_and(|s| {
        s.observed_generation == binding.metadata.generation
            && s.role_id.is_some()
            && s.role_name.as_deref() == Some(desired.role.name.as_str())
            // The ARN IAM gave: another path, account or partition is not in line.
            && s.role_arn.as_deref() == Some(desired.role.arn.as_str())
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

/// The fingerprint of an applied record for a role that exists but is not known to be in
/// line (a pass failed part way): it matches no desired role.
const NOTHING_APPLIED: u64 = 0;

/// What the role part of a pass came to.
enum RolePass {
    /// The role exists (made, converged, or in line already).
    Made {
        role: Option<RoleFacts>,
        missing_policies: Vec<String>,
        /// IAM was written (the role made, or something in it changed).
        changed: bool,
        /// When to ask IAM again whether the missing policies exist now.
        recheck_in: Option<std::time::Duration>,
    },
    /// The pass is over (a conflict, reported).
    Done(Action),
}

pub async fn apply(binding: &PodIdentityBinding, ctx: &Context) -> Result<Action, Error> {
    let namespace = binding.namespace().unwrap_or_default();
    let key = ObjectRef::from_obj(binding);
    // A pass woken before the watch delivered this process's own last status write sees
    // the binding as it was before that pass: its work is done, and the write's own
    // event brings the binding back as it is now.
    let uid = binding.uid().unwrap_or_default();
    if ctx
        .own_status_write(&uid)
        .is_some_and(|w| Some(&w.over) == binding.resource_version().as_ref())
    {
        return Ok(Action::await_change());
    }

    // Validate and build: a refusal changes nothing in AWS (unless a policy asks for
    // revocation).
    let guardrails = ctx.policies.for_namespace(&namespace);
    let rules = guardrails.rules_for(&namespace);
    let policies = &rules.policies;
    let desired = match desired_state_under(
        BindingRef::of(&namespace, binding),
        &binding.spec,
        &ctx.config,
        &rules,
    ) {
        Ok(desired) => desired,
        Err(refusal) => {
            ctx.set_waiting(&key, false);
            refuse(ctx, binding, policies, &refusal, None).await?;
            return Ok(Action::await_change());
        }
    };

    // One ServiceAccount, one role: only its owner (the oldest binding naming it) goes on.
    let account = &binding.spec.service_account_name;
    let siblings = ctx.bindings_in(&namespace).await?;
    let owner = service_account_owner(
        siblings.iter().filter_map(|b| b.0.as_ref().ok()),
        &namespace,
        account,
    );
    if let Some(owner) = owner
        && owner.uid() != binding.uid()
    {
        ctx.set_waiting(&key, true);
        let assessment = Assessment::ServiceAccountConflict {
            owner: format!("{namespace}/{}", owner.name_any()),
            service_account: format!("{namespace}/{account}"),
        };
        let recorded = recorded_role(binding);
        if write_status(ctx, binding, &assessment, recorded.as_ref(), None).await? {
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
    // Under a quota, any change to an older binding can move this one in or out of it.
    ctx.set_waiting(&key, quota::has_quota(policies));
    if quota::has_quota(policies) {
        let ahead = quota::places_ahead(
            binding,
            &namespace,
            &siblings,
            &ctx.config,
            &rules,
            &ctx.sibling_verdicts,
        );
        if let Some(violation) = over_quota(policies, ahead) {
            let refusal = podidentity_iam::Error::Refused(vec![violation]);
            refuse(ctx, binding, policies, &refusal, Some(ahead)).await?;
            return Ok(Action::await_change());
        }
    }

    let (role, missing_policies, role_changed, recheck_in) =
        match role_pass(binding, ctx, &desired, &rules).await? {
            RolePass::Made {
                role,
                missing_policies,
                changed,
                recheck_in,
            } => (role, missing_policies, changed, recheck_in),
            RolePass::Done(action) => return Ok(action),
        };

    // The ServiceAccount; and the one it named before, if the spec moved on from it.
    let service_account =
        bind_service_account(ctx, binding, &namespace, &desired.service_account).await?;
    let before = binding
        .status
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref());
    if let Some(before) = before
        && before != desired.service_account.name
    {
        release_service_account(ctx, binding, &namespace, before, &siblings).await?;
    }

    // The credentials Secret, and any the spec no longer asks for.
    let foreign_secret = match &desired.credentials_secret {
        Some(secret) => match apply_secret(ctx, binding, &namespace, secret).await? {
            SecretOutcome::Ours => None,
            SecretOutcome::Foreign(name) => Some(name),
        },
        None => None,
    };
    let keep = desired.credentials_secret.as_ref().map(|s| s.name.as_str());
    delete_stale_secrets(ctx, binding, &namespace, keep).await?;

    let mut synced = Synced {
        service_account,
        missing_policies: missing_policies.clone(),
        foreign_secret: foreign_secret.clone(),
        assumable: None,
        pods_needing_restart: None,
    };
    let early = match &role {
        Some(role) if synced.service_account == ServiceAccountState::Bound => {
            readiness::check(ctx, binding, &namespace, role, role_changed, &mut synced).await?
        }
        _ => None,
    };
    let not_assumable = synced.assumable.as_ref().is_some_and(|a| !a.is_assumed());
    let wrote = write_status(
        ctx,
        binding,
        &Assessment::Synced(synced),
        role.as_ref(),
        Some(&desired),
    )
    .await?;
    if let Some(early) = early {
        readiness::report(ctx, binding, early).await;
    }
    if not_assumable {
        // Retried with the binding's backoff (IAM takes seconds to apply a change).
        return Err(Error::NotAssumable);
    }
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
    if let Some(name) = foreign_secret.filter(|_| wrote) {
        ctx.event(
            binding,
            EventType::Warning,
            reason::CREDENTIALS_SECRET_CONFLICT,
            format!("Secret {name} exists and is not this binding's; it was left untouched"),
        )
        .await;
    }
    // Stalled on managed policies IAM does not have: asked again on the slow schedule (a
    // change of the spec or the configuration wakes it sooner).
    Ok(recheck_in.map_or_else(Action::await_change, Action::requeue))
}

/// The role. Skipped when this generation is in line already, as this process applied it
/// (a pass from a cache that has not seen the last pass's writes yet) or as the status
/// records; a role the sweep found out of line is read and converged.
async fn role_pass(
    binding: &PodIdentityBinding,
    ctx: &Context,
    desired: &DesiredState,
    rules: &RuleSet,
) -> Result<RolePass, Error> {
    let uid = binding.uid().unwrap_or_default();
    let generation = binding.metadata.generation;
    let drifted = ctx.take_drifted(&uid);
    let wanted = fingerprint(&desired.role);
    let remembered = ctx.applied(&uid);
    let applied_here = remembered
        .as_ref()
        .is_some_and(|a| a.generation == generation && a.fingerprint == wanted);
    let role = remembered
        .as_ref()
        .map(|a| a.role.clone())
        .or_else(|| recorded_role(binding));
    let known = if role.is_some() {
        Known::Exists
    } else {
        Known::New
    };
    // A conflict or permanent error found for this generation stands until its re-check
    // (the requeue), so passes woken meanwhile (its own status write, its
    // ServiceAccount) ask IAM nothing.
    if let Some(blocked) = ctx.blocked(&uid)
        && !drifted
        && blocked.generation == generation
        && blocked.fingerprint == wanted
        && let Some(left) = blocked
            .recheck_at
            .checked_duration_since(std::time::Instant::now())
    {
        write_status(ctx, binding, &blocked.assessment, role.as_ref(), None).await?;
        return Ok(RolePass::Done(Action::requeue(left)));
    }
    if !drifted && (applied_here || status_in_line(binding, desired)) {
        let stalled = remembered
            .as_ref()
            .filter(|applied| applied_here && !applied.missing_policies.is_empty());
        let Some(applied) = stalled else {
            return Ok(RolePass::Made {
                role,
                missing_policies: Vec::new(),
                changed: false,
                recheck_in: None,
            });
        };
        let now = std::time::Instant::now();
        let left = applied
            .missing_recheck_at
            .and_then(|at| at.checked_duration_since(now))
            .filter(|left| !left.is_zero());
        // Until the re-check, or when IAM still has none of them, the pass asks nothing
        // more and writes nothing: the binding waits on the policies appearing.
        let still_missing = match left {
            Some(_) => true,
            None => none_exist(ctx, &applied.missing_policies).await?,
        };
        if still_missing {
            let recheck_in = left.unwrap_or(super::PERMANENT_ERROR_RETRY);
            if left.is_none() {
                ctx.remember_applied(
                    &uid,
                    Applied {
                        missing_recheck_at: Some(now + recheck_in),
                        ..applied.clone()
                    },
                );
            }
            return Ok(RolePass::Made {
                role,
                missing_policies: applied.missing_policies.clone(),
                changed: false,
                recheck_in: Some(recheck_in),
            });
        }
        // One of them exists now: the role is converged (it gets attached).
    }
    // Managed policies are judged by what they grant, before anything is written.
    let arns = &desired.role.managed_policy_arns;
    let judged = if arns.is_empty() {
        Ok(Vec::new())
    } else {
        ctx.managed_policies
            .judge(ctx.iam.as_ref(), rules, arns)
            .await
    };
    let outcome = match judged {
        Ok(violations) if !violations.is_empty() => {
            // Nothing is written, the role (if any) stays as it was, and the refusal stands
            // until the drift interval has passed (a new default version may grant less).
            let assessment = refused(&podidentity_iam::Error::Refused(violations), false);
            let recheck = block_until_recheck(ctx, &uid, generation, wanted, assessment.clone());
            report_refusal(ctx, binding, &assessment, role.as_ref()).await?;
            return Ok(RolePass::Done(Action::requeue(recheck)));
        }
        Ok(_) => ensure_role(ctx.iam.as_ref(), &desired.role, known).await,
        Err(error) => Err(RoleError { error, role: None }),
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(failure) => {
            if drifted {
                ctx.mark_drifted(&uid);
            }
            // The role exists now: the next pass reads and converges it, never makes it again.
            let role = failure.role.as_ref().map(facts).or(role);
            if let Some(made) = &failure.role {
                ctx.remember_applied(
                    &uid,
                    Applied {
                        generation,
                        fingerprint: NOTHING_APPLIED,
                        role: facts(made),
                        missing_policies: Vec::new(),
                        missing_recheck_at: None,
                    },
                );
            }
            let err = failure.error;
            let permanent = err.kind.is_permanent();
            let assessment = Assessment::AwsFailed {
                reason: err.kind.reason().into(),
                message: err.to_string(),
                permanent,
            };
            if permanent {
                ctx.remember_blocked(
                    &uid,
                    Some(Blocked {
                        generation,
                        fingerprint: wanted,
                        assessment: assessment.clone(),
                        recheck_at: std::time::Instant::now() + super::PERMANENT_ERROR_RETRY,
                    }),
                );
            }
            if write_status(ctx, binding, &assessment, role.as_ref(), None).await? && permanent {
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
    let mut missing_policies = Vec::new();
    let mut changed = true;
    let made = match outcome {
        RoleOutcome::Conflict { name, why } => {
            let message = why.explain(&name);
            let assessment = Assessment::Conflict {
                message: message.clone(),
            };
            let recheck = block_until_recheck(ctx, &uid, generation, wanted, assessment.clone());
            if write_status(ctx, binding, &assessment, None, None).await? {
                ctx.event(binding, EventType::Warning, reason::ROLE_CONFLICT, message)
                    .await;
            }
            return Ok(RolePass::Done(Action::requeue(recheck)));
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
            changed: changes,
        } => {
            changed = !changes.is_empty();
            if changed {
                let what: Vec<&str> = changes.iter().map(|c| c.describe()).collect();
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
    ctx.remember_blocked(&uid, None);
    // The ARN and id IAM answered with, not ones computed here.
    let made = facts(&made);
    ctx.remember_applied(
        &uid,
        Applied {
            generation,
            fingerprint: wanted,
            role: made.clone(),
            // Not attached again until the spec changes, the re-check finds them in IAM
            // (or after a restart).
            missing_policies: missing_policies.clone(),
            missing_recheck_at: Some(std::time::Instant::now() + super::PERMANENT_ERROR_RETRY),
        },
    );
    let recheck_in = (!missing_policies.is_empty()).then_some(super::PERMANENT_ERROR_RETRY);
    Ok(RolePass::Made {
        role: Some(made),
        missing_policies,
        changed,
        recheck_in,
    })
}

/// Whether IAM still has none of these managed policies (GetPolicy, reads only).
async fn none_exist(ctx: &Context, arns: &[String]) -> Result<bool, Error> {
    let iam = podidentity_aws::api::Iam::new(ctx.iam.as_ref());
    for arn in arns {
        match iam.policy_default_version(arn).await {
            Ok(_) => return Ok(false),
            Err(err) if err.kind == podidentity_aws::error::ErrorKind::NotFound => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(true)
}

/// What the status says of a refusal.
fn refused(refusal: &podidentity_iam::Error, revoked: bool) -> Assessment {
    Assessment::Refused {
        reason: refusal.reason().into(),
        message: refusal.to_string(),
        revoked,
    }
}

/// A refusal of the spec as the namespace's policies judge it: the role (if any) keeps
/// what it has, unless a policy that refuses the binding asks for revocation. `ahead`: the
/// binding's place in the quota, for a quota refusal.
async fn refuse(
    ctx: &Context,
    binding: &PodIdentityBinding,
    policies: &[AppliedPolicy],
    refusal: &podidentity_iam::Error,
    ahead: Option<usize>,
) -> Result<(), Error> {
    let revoked = match revoking_policy(policies, &binding.spec, ahead) {
        Some(policy) => revoke(ctx, binding, policy).await?,
        None => false,
    };
    report_refusal(ctx, binding, &refused(refusal, revoked), None).await
}

/// Says why a binding is refused: the status (with the role, if one exists) and, when
/// that changed, a Warning Event.
async fn report_refusal(
    ctx: &Context,
    binding: &PodIdentityBinding,
    assessment: &Assessment,
    role: Option<&RoleFacts>,
) -> Result<(), Error> {
    if write_status(ctx, binding, assessment, role, None).await?
        && let Assessment::Refused {
            reason, message, ..
        } = assessment
    {
        ctx.event(binding, EventType::Warning, reason, message.clone())
            .await;
    }
    Ok(())
}

/// Holds this generation's role back until the drift interval has passed (a conflicting
/// role may go, a managed policy may change); returns that interval, for the requeue.
fn block_until_recheck(
    ctx: &Context,
    uid: &str,
    generation: Option<i64>,
    fingerprint: u64,
    assessment: Assessment,
) -> std::time::Duration {
    let recheck = ctx.config.drift_interval().unwrap_or_default();
    ctx.remember_blocked(
        uid,
        Some(Blocked {
            generation,
            fingerprint,
            assessment,
            recheck_at: std::time::Instant::now() + recheck,
        }),
    );
    recheck
}
