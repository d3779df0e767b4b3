//! The second step of a pass: make the world what the judgement allows, and say what was
//! done and found. A refusal revokes (when a policy asks) and writes nothing else; an
//! allowed binding gets its role, its ServiceAccount annotations and its credentials
//! Secret, then the readiness checks. Everything here returns a `Found` for the report;
//! nothing here writes the binding's status or publishes its Events.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use podidentity_api::conditions::reason;
use podidentity_api::{Mechanism, PodIdentityBinding};
use podidentity_aws::api::{IamApi, RoleState};
use podidentity_iam::RuleSet;
use podidentity_iam::build::{DesiredState, service_account_annotations};
use podidentity_iam::namespace_policy::AppliedPolicy;

use super::account_move;
use super::association::{
    bound_association_key, delete_association, ensure_association, ownership_of,
};
use super::association_quota::past_association_quota;
use super::conditions::{Assessment, AssociationState, ServiceAccountState, Synced};
use super::judge::{Judgement, Verdict};
use super::managed_policies::none_exist;
use super::memory::{Applied, Blocked, Memory, PERMANENT_ERROR_RETRY, RoleFacts, fingerprint};
use super::migration;
use super::readiness;
use super::report::{self, Found, Note, When, recorded_role};
use super::revoke::revoke;
use super::role::{Known, RoleError, RoleOutcome, ensure_role};
use super::secret::{SecretOutcome, apply_secret, delete_stale_secrets};
use super::service_account::{bind_service_account, release_service_account};
use crate::caches::Watched;
use crate::context::Context;
use crate::error::Error;

/// What one pass has to work with besides the binding.
pub struct Pass<'a> {
    pub ctx: &'a Context,
    pub memory: &'a Memory,
    pub binding: &'a PodIdentityBinding,
    pub namespace: &'a str,
    pub rules: &'a RuleSet,
    pub siblings: &'a [std::sync::Arc<Watched>],
}

impl Pass<'_> {
    fn uid(&self) -> String {
        self.binding.uid().unwrap_or_default()
    }
}

/// Applies what the judgement allows.
pub async fn apply(pass: &Pass<'_>, judgement: Judgement<'_>) -> Result<Found, Error> {
    match judgement.verdict {
        Verdict::Refused { refusal, revoking } => refused(pass, &refusal, revoking).await,
        Verdict::ServiceAccountTaken { owner } => Ok(service_account_taken(pass, &owner)),
        Verdict::Allowed(desired) => allowed(pass, *desired).await,
    }
}

/// What the status says of a refusal.
fn refusal_assessment(refusal: &podidentity_iam::Error, revoked: bool) -> Assessment {
    Assessment::Refused {
        reason: refusal.reason().into(),
        message: refusal.to_string(),
        revoked,
    }
}

/// The Warning a refusal is reported with.
fn refusal_note(assessment: &Assessment) -> Option<Note> {
    match assessment {
        Assessment::Refused {
            reason, message, ..
        } => Some(Note::warning(reason, message.clone())),
        _ => None,
    }
}

/// A refusal of the spec as the namespace's policies judge it: the role (if any) keeps
/// what it has, unless a policy that refuses the binding asks for revocation.
async fn refused(
    pass: &Pass<'_>,
    refusal: &podidentity_iam::Error,
    revoking: Option<&AppliedPolicy>,
) -> Result<Found, Error> {
    let (revoked, revocation) = match revoking {
        Some(policy) => revoke(pass.ctx, pass.memory, pass.binding, policy).await?,
        None => (false, None),
    };
    let assessment = refusal_assessment(refusal, revoked);
    let mut found = Found::new(assessment, None);
    found.events.extend(revocation);
    found.events.extend(refusal_note(&found.assessment));
    Ok(found)
}

fn service_account_taken(pass: &Pass<'_>, owner: &str) -> Found {
    let (namespace, account) = (pass.namespace, &pass.binding.spec.service_account_name);
    let assessment = Assessment::ServiceAccountConflict {
        owner: format!("{namespace}/{owner}"),
        service_account: format!("{namespace}/{account}"),
    };
    Found::new(assessment, recorded_role(pass.binding)).with_event(Note::warning(
        reason::SERVICE_ACCOUNT_CONFLICT,
        format!(
            "ServiceAccount {account} is owned by {owner}, the oldest binding naming it; this one waits"
        ),
    ))
}

/// The role, the ServiceAccount, the credentials Secret, and the readiness checks.
async fn allowed(pass: &Pass<'_>, mut desired: DesiredState) -> Result<Found, Error> {
    // A change of mechanism keeps the old one's trust until no running pod uses it.
    let migration = migration::under_way(pass.binding, desired.mechanism);
    let role_arn = recorded_role(pass.binding).map_or(desired.role.arn.clone(), |r| r.arn);
    let finishing = match &migration {
        Some(m) if m.delivered => {
            migration::old_pods(pass.ctx, pass.binding, pass.namespace, &role_arn, m)
                .await
                .is_some_and(|pods| pods.is_empty())
        }
        _ => false,
    };
    migration::trust_in_force(
        pass.binding,
        pass.namespace,
        &pass.ctx.config,
        &mut desired,
        finishing,
    );
    let moving = migration.filter(|_| !finishing);
    if let Some(found) = past_association_quota(pass.ctx, pass.binding, &desired).await? {
        return Ok(found);
    }
    let mut made = match role_step(pass, &desired).await? {
        RoleStep::Made(made) => made,
        RoleStep::Over(found) => return Ok(*found),
    };
    // Said by the pass that widened the trust (a pass waiting on a conflict says nothing).
    if let Some(m) = migration.filter(|m| !m.delivered && made.changed) {
        made.events.push(migration::started(&m));
    }
    if let Some(m) = migration.filter(|_| finishing) {
        made.events.push(migration::complete(&m));
    }
    match around_the_role(pass, &desired, &made, moving).await {
        Ok(around) => Ok(synced(pass, desired, made, around)),
        Err(err) => {
            // What was done to the role is said even when the pass fails after it.
            report::publish(pass.ctx, pass.binding, std::mem::take(&mut made.events)).await;
            Err(err)
        }
    }
}

/// What the steps after the role found.
struct Around {
    synced: Synced,
    early: Option<readiness::EarlyFound>,
    /// What a migration waiting for pods has to say.
    migration_note: Option<Note>,
    /// What else the steps did (roles retired after a move between accounts).
    notes: Vec<Note>,
}

/// The ServiceAccount, the credentials Secret and the readiness checks, once the role
/// exists.
async fn around_the_role(
    pass: &Pass<'_>,
    desired: &DesiredState,
    made: &MadeRole,
    moving: Option<migration::Migration>,
) -> Result<Around, Error> {
    let (ctx, binding, namespace) = (pass.ctx, pass.binding, pass.namespace);

    // Pod Identity's association, for the role as IAM named it, before the ServiceAccount
    // (a migration from IRSA takes the annotation away only once it exists); under IRSA,
    // none left, unless a migration from Pod Identity waits for its pods.
    let leaving_pod_identity = moving.is_some_and(|m| m.from == Mechanism::PodIdentity);
    let association = match (&desired.association, &made.role) {
        (Some(wanted), Some(role)) => {
            Some(ensure_association(ctx, binding, wanted, &role.arn, &desired.role.tags).await?)
        }
        (None, role) if !leaving_pod_identity => {
            let recorded = binding.status.as_ref().and_then(|s| s.association.as_ref());
            if recorded.is_some() {
                let key = bound_association_key(ctx, binding, namespace);
                let arn = role
                    .as_ref()
                    .map_or(desired.role.arn.as_str(), |r| r.arn.as_str());
                let ownership = ownership_of(&desired.role.tags);
                delete_association(ctx, binding, &key, arn, &ownership).await?;
            }
            None
        }
        _ => None,
    };

    // The ServiceAccount; and the one it named before, if the spec moved on from it. A
    // migration from IRSA whose association is not in place keeps the annotation.
    let association_kept = matches!(association, Some(AssociationState::Kept(_)));
    let mut account = desired.service_account.clone();
    if moving.is_some_and(|m| m.from == Mechanism::Irsa) && !association_kept {
        let arn = made
            .role
            .as_ref()
            .map_or(desired.role.arn.as_str(), |r| r.arn.as_str());
        account.annotations = service_account_annotations(&binding.spec, arn);
    }
    let service_account = bind_service_account(ctx, binding, namespace, &account).await?;
    let before = binding
        .status
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref());
    if let Some(before) = before
        && before != desired.service_account.name
    {
        release_service_account(ctx, binding, namespace, before, pass.siblings).await?;
    }

    // The credentials Secret, and any the spec no longer asks for.
    let foreign_secret = match &desired.credentials_secret {
        Some(secret) => match apply_secret(ctx, pass.memory, binding, namespace, secret).await? {
            SecretOutcome::Ours => None,
            SecretOutcome::Foreign(name) => Some(name),
        },
        None => None,
    };
    let keep = desired.credentials_secret.as_ref().map(|s| s.name.as_str());
    delete_stale_secrets(ctx, binding, namespace, keep).await?;

    let mut synced = Synced {
        service_account,
        missing_policies: made.missing_policies.clone(),
        foreign_secret: foreign_secret.clone(),
        assumable: None,
        pods_needing_restart: None,
        association,
        migration: None,
        account_move: None,
    };
    // The readiness checks are IRSA's: a web identity token exchanged with STS, and
    // pods counted by the role ARN the IRSA webhook put in them (a migration counts its
    // own pods instead).
    let early = match &made.role {
        Some(role)
            if synced.service_account == ServiceAccountState::Bound
                && desired.mechanism == Mechanism::Irsa =>
        {
            let count_early = moving.is_none();
            readiness::check(
                ctx,
                binding,
                namespace,
                role,
                made.changed,
                count_early,
                &mut synced,
            )
            .await?
        }
        _ => None,
    };
    // A namespace moved to another account: the roles left there go once no pod uses
    // them (readiness above counted and, with restartPods, rolled those pods).
    let mut notes = Vec::new();
    if let Some(role) = &made.role {
        let ready = synced.is_ready();
        let kept =
            account_move::keep_until_unused(ctx, binding, namespace, desired, &role.arn, ready)
                .await?;
        synced.account_move = kept.state.map(Box::new);
        notes = kept.notes;
    }
    let mut migration_note = None;
    if let Some(m) = &moving {
        let role_arn = made
            .role
            .as_ref()
            .map_or(desired.role.arn.as_str(), |r| r.arn.as_str());
        // Restarts only once new pods get the new mechanism.
        let delivered = match m.to {
            Mechanism::PodIdentity => association_kept,
            Mechanism::Irsa => synced.service_account == ServiceAccountState::Bound,
        };
        let (state, note) =
            migration::wait(ctx, binding, namespace, role_arn, m, delivered).await?;
        synced.migration = Some(Box::new(state));
        migration_note = note;
    }
    Ok(Around {
        synced,
        early,
        migration_note,
        notes,
    })
}

/// The report of a pass that got the role made.
fn synced(pass: &Pass<'_>, desired: DesiredState, made: MadeRole, around: Around) -> Found {
    let Around {
        synced,
        early,
        migration_note,
        notes,
    } = around;
    let migrating = synced.migration.is_some() || synced.account_move.is_some();
    let not_assumable = synced.assumable.as_ref().is_some_and(|a| !a.is_assumed());
    let foreign_secret = synced.foreign_secret.clone();
    let mut found = Found::new(Assessment::Synced(synced), made.role.clone());
    found.desired = Some(desired);
    found.events = made.events;
    found
        .events
        .extend(early.map(|early| readiness::note(pass.ctx, pass.binding, early)));
    found.events.extend(migration_note);
    found.events.extend(notes);
    // A pass that waits on STS says what needs a change once it is through.
    if !not_assumable && !made.missing_policies.is_empty() {
        found.events.push(Note::warning(
            reason::MANAGED_POLICY_NOT_FOUND,
            format!(
                "managed policies not found in IAM: {}",
                made.missing_policies.join(", ")
            ),
        ));
    }
    if let Some(name) = foreign_secret.filter(|_| !not_assumable) {
        found.events.push(Note::warning(
            reason::CREDENTIALS_SECRET_CONFLICT,
            format!("Secret {name} exists and is not this binding's; it was left untouched"),
        ));
    }
    found.next = if not_assumable {
        // Retried with the binding's backoff (IAM takes seconds to apply a change).
        Err(Error::NotAssumable)
    } else if migrating {
        // Pods are not watched: a migration (or a move between accounts) counts them
        // again, sooner while it is young.
        let recheck = migration::recheck(pass.binding);
        Ok(Action::requeue(
            made.recheck_in.map_or(recheck, |r| r.min(recheck)),
        ))
    } else {
        // Stalled on managed policies IAM does not have: asked again on the slow schedule
        // (a change of the spec or the configuration wakes it sooner).
        Ok(made
            .recheck_in
            .map_or_else(Action::await_change, Action::requeue))
    };
    found
}

/// What the role part of a pass came to.
enum RoleStep {
    /// The role exists (made, converged, or in line already).
    Made(MadeRole),
    /// The pass ends here (a conflict, a refused managed policy, an IAM failure).
    Over(Box<Found>),
}

struct MadeRole {
    role: Option<RoleFacts>,
    missing_policies: Vec<String>,
    /// IAM was written (the role made, or something in it changed).
    changed: bool,
    /// When to ask IAM again whether the missing policies exist now.
    recheck_in: Option<std::time::Duration>,
    events: Vec<Note>,
}

impl MadeRole {
    fn untouched(role: Option<RoleFacts>) -> Self {
        Self {
            role,
            missing_policies: Vec::new(),
            changed: false,
            recheck_in: None,
            events: Vec::new(),
        }
    }
}

/// Whether the status says this generation's role is in line already.
fn status_in_line(binding: &PodIdentityBinding, desired: &DesiredState) -> bool {
    binding.status.as_ref().is_some_and(|s| {
        s.observed_generation == binding.metadata.generation
            && s.role_id.is_some()
            && s.role_name.as_deref() == Some(desired.role.name.as_str())
            // The ARN IAM gave: another path, account or partition is not in line.
            && s.role_arn.as_deref() == Some(desired.role.arn.as_str())
            // The trust as applied: a migration widens it, then narrows it, within one
            // generation.
            && s.trust_policy.as_ref().map(|t| t.bytes) == Some(desired.trust_policy_size.bytes)
            && s.conditions.iter().any(|c| {
                c.type_ == podidentity_api::conditions::ROLE_SYNCED && c.status == "True"
            })
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

/// The role. Skipped when this generation is in line already, as this process applied it
/// (a pass from a cache that has not seen the last pass's writes yet) or as the status
/// records; a role the sweep found out of line is read and converged.
async fn role_step(pass: &Pass<'_>, desired: &DesiredState) -> Result<RoleStep, Error> {
    let (binding, memory) = (pass.binding, pass.memory);
    let uid = pass.uid();
    let generation = binding.metadata.generation;
    let drifted = memory.take_drifted(&uid);
    let wanted = fingerprint(&desired.role);
    let record = memory.record(&uid);
    let remembered = record.applied;
    let applied_here = remembered
        .as_ref()
        .is_some_and(|a| a.generation == generation && a.fingerprint == wanted);
    let role = remembered
        .as_ref()
        .map(|a| a.role.clone())
        .or_else(|| recorded_role(binding));
    // A conflict or permanent error found for this generation stands until its re-check
    // (the requeue), so passes woken meanwhile (its own status write, its
    // ServiceAccount) ask IAM nothing.
    if let Some(blocked) = record.blocked
        && !drifted
        && blocked.generation == generation
        && blocked.fingerprint == wanted
        && let Some(left) = blocked
            .recheck_at
            .checked_duration_since(std::time::Instant::now())
    {
        return Ok(RoleStep::Over(Box::new(
            Found::new(blocked.assessment, role).then(Ok(Action::requeue(left))),
        )));
    }
    // IAM in the account the namespace's roles live in.
    let iam = pass.ctx.iam_in(desired.account.as_deref())?;
    if !drifted && (applied_here || status_in_line(binding, desired)) {
        let stalled =
            remembered.filter(|applied| applied_here && !applied.missing_policies.is_empty());
        match stalled {
            None => return Ok(RoleStep::Made(MadeRole::untouched(role))),
            Some(applied) => {
                if let Some(waiting) = still_stalled(pass, iam, applied, role.clone()).await? {
                    return Ok(RoleStep::Made(waiting));
                }
                // One of them exists now: the role is converged (it gets attached).
            }
        }
    }
    // Managed policies are judged by what they grant, before anything is written.
    let arns = &desired.role.managed_policy_arns;
    let judged = if arns.is_empty() {
        Ok(Vec::new())
    } else {
        let ctx = pass.ctx;
        ctx.managed_policies.judge(iam, pass.rules, arns).await
    };
    let known = if role.is_some() {
        Known::Exists
    } else {
        Known::New
    };
    let outcome = match judged {
        Ok(violations) if !violations.is_empty() => {
            // Nothing is written, the role (if any) stays as it was, and the refusal stands
            // until the drift interval has passed (a new default version may grant less).
            let assessment =
                refusal_assessment(&podidentity_iam::Error::Refused(violations), false);
            let recheck = block_until_recheck(pass, generation, wanted, assessment.clone());
            let note = refusal_note(&assessment);
            let mut found = Found::new(assessment, role).then(Ok(Action::requeue(recheck)));
            found.events.extend(note);
            return Ok(RoleStep::Over(Box::new(found)));
        }
        Ok(_) => ensure_role(iam, &desired.role, known).await,
        Err(error) => Err(RoleError { error, role: None }),
    };
    match outcome {
        Ok(outcome) => Ok(role_made(pass, outcome, drifted, generation, wanted)),
        Err(failure) => Ok(RoleStep::Over(Box::new(role_failed(
            pass, failure, role, drifted, generation, wanted,
        )))),
    }
}

/// A binding stalled on managed policies IAM does not have: until the re-check, or when
/// IAM still has none of them, the pass asks nothing more and writes nothing (`None`: one
/// exists now).
async fn still_stalled(
    pass: &Pass<'_>,
    iam: &dyn IamApi,
    applied: Applied,
    role: Option<RoleFacts>,
) -> Result<Option<MadeRole>, Error> {
    let now = std::time::Instant::now();
    let left = applied
        .missing_recheck_at
        .and_then(|at| at.checked_duration_since(now))
        .filter(|left| !left.is_zero());
    let still_missing = match left {
        Some(_) => true,
        None => none_exist(iam, &applied.missing_policies).await?,
    };
    if !still_missing {
        return Ok(None);
    }
    let recheck_in = left.unwrap_or(PERMANENT_ERROR_RETRY);
    let missing_policies = applied.missing_policies.clone();
    if left.is_none() {
        pass.memory.remember_applied(
            &pass.uid(),
            Some(Applied {
                missing_recheck_at: Some(now + recheck_in),
                ..applied
            }),
        );
    }
    Ok(Some(MadeRole {
        missing_policies,
        recheck_in: Some(recheck_in),
        ..MadeRole::untouched(role)
    }))
}

/// IAM answered: the role is made or converged (or is not ours).
fn role_made(
    pass: &Pass<'_>,
    outcome: RoleOutcome,
    drifted: bool,
    generation: Option<i64>,
    wanted: u64,
) -> RoleStep {
    let mut missing_policies = Vec::new();
    let mut changed = true;
    let mut events = Vec::new();
    let made = match outcome {
        RoleOutcome::Conflict { name, why } => {
            let message = why.explain(&name);
            let assessment = Assessment::Conflict {
                message: message.clone(),
            };
            let recheck = block_until_recheck(pass, generation, wanted, assessment.clone());
            return RoleStep::Over(Box::new(
                Found::new(assessment, None)
                    .with_event(Note::warning(reason::ROLE_CONFLICT, message))
                    .then(Ok(Action::requeue(recheck))),
            ));
        }
        RoleOutcome::Created(made) => {
            events.push(Note::new(
                EventType::Normal,
                "Created",
                format!("created IAM role {}", made.arn),
                When::Always,
            ));
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
                events.push(Note::new(
                    EventType::Normal,
                    reason,
                    format!("IAM role {} {verb}: {}", made.arn, what.join(", ")),
                    When::Always,
                ));
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
    let uid = pass.uid();
    pass.memory.remember_blocked(&uid, None);
    // The ARN and id IAM answered with, not ones computed here.
    let made = facts(&made);
    let recheck_in = (!missing_policies.is_empty()).then_some(PERMANENT_ERROR_RETRY);
    pass.memory.remember_applied(
        &uid,
        Some(Applied {
            generation,
            fingerprint: wanted,
            role: made.clone(),
            // Not attached again until the spec changes, the re-check finds them in IAM
            // (or after a restart).
            missing_policies: missing_policies.clone(),
            missing_recheck_at: recheck_in.map(|after| std::time::Instant::now() + after),
        }),
    );
    RoleStep::Made(MadeRole {
        role: Some(made),
        missing_policies,
        changed,
        recheck_in,
        events,
    })
}

/// IAM failed: said in the status; a permanent failure waits for its re-check.
fn role_failed(
    pass: &Pass<'_>,
    failure: RoleError,
    role: Option<RoleFacts>,
    drifted: bool,
    generation: Option<i64>,
    wanted: u64,
) -> Found {
    let (memory, uid) = (pass.memory, pass.uid());
    if drifted {
        memory.mark_drifted(&uid);
    }
    // The role exists now: the next pass reads and converges it, never makes it again.
    let role = failure.role.as_ref().map(facts).or(role);
    if let Some(made) = &failure.role {
        memory.remember_applied(
            &uid,
            Some(Applied {
                generation,
                fingerprint: NOTHING_APPLIED,
                role: facts(made),
                missing_policies: Vec::new(),
                missing_recheck_at: None,
            }),
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
        memory.remember_blocked(
            &uid,
            Some(Blocked {
                generation,
                fingerprint: wanted,
                assessment: assessment.clone(),
                recheck_at: std::time::Instant::now() + PERMANENT_ERROR_RETRY,
            }),
        );
    }
    let mut found = Found::new(assessment, role);
    if permanent {
        found
            .events
            .push(Note::warning(err.kind.reason(), err.to_string()));
    }
    found.then(Err(err.into()))
}

/// Holds this generation's role back until the drift interval has passed (a conflicting
/// role may go, a managed policy may change); returns that interval, for the requeue.
fn block_until_recheck(
    pass: &Pass<'_>,
    generation: Option<i64>,
    fingerprint: u64,
    assessment: Assessment,
) -> std::time::Duration {
    let recheck = pass.ctx.config.drift_interval().unwrap_or_default();
    pass.memory.remember_blocked(
        &pass.uid(),
        Some(Blocked {
            generation,
            fingerprint,
            assessment,
            recheck_at: std::time::Instant::now() + recheck,
        }),
    );
    recheck
}
