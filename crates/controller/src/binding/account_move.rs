//! A namespace moved to another AWS account (its PodIdentityPolicy's `spec.account`
//! changed, or another policy now places it). The pass makes the role in the new account
//! and points the ServiceAccount at it as for any binding, so new pods get a role that
//! exists; running pods keep the old role's ARN until restarted (and the readiness checks
//! count them, rolling their workloads with `restartPods`). This module keeps each role
//! in an account the namespace left until no running pod uses it, then deletes it (or
//! retains it, by the deletion policy). The status records those roles
//! (`accountMove.fromRoleArns`), so a move survives a restart of the operator, and a
//! binding deleted during a move takes them with it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use podidentity_api::conditions::reason;
use podidentity_api::config::account_of_arn;
use podidentity_api::{AccountMoveStatus, DeletionPolicy, PodIdentityBinding};
use podidentity_iam::build::DesiredState;
use podidentity_webhook::pod_credentials::{DEFAULT_ANNOTATION_PREFIX, uses_until_stopped};

use super::conditions::{AccountMoveState, migrating_since};
use super::early_pods;
use super::report::{Note, When};
use super::role::{RoleIdentity, delete_role, retain_role};
use crate::context::Context;
use crate::error::Error;

/// The status's record after a move's roles were left: `recorded` plus `previous_arn`
/// when the role now in force (`current_arn`) is in another account, less the role in
/// force (a namespace moved back).
pub fn record_left(
    recorded: Option<AccountMoveStatus>,
    previous_arn: Option<&str>,
    current_arn: &str,
) -> Option<AccountMoveStatus> {
    let mut record = recorded.unwrap_or_default();
    if let Some(previous) = previous_arn
        && account_of_arn(previous) != account_of_arn(current_arn)
        && !record.from_role_arns.iter().any(|arn| arn == previous)
    {
        record.from_role_arns.push(previous.to_string());
    }
    record.from_role_arns.retain(|arn| arn != current_arn);
    if record.from_role_arns.is_empty() {
        None
    } else {
        Some(record)
    }
}

/// The roles this binding still has in accounts it left, as its status records them,
/// given the role in force now.
pub fn left_behind(binding: &PodIdentityBinding, current_arn: &str) -> Vec<String> {
    let status = binding.status.as_ref();
    let recorded = status.and_then(|s| s.account_move.clone());
    let previous = status.and_then(|s| s.role_arn.as_deref());
    record_left(recorded, previous, current_arn)
        .map(|r| r.from_role_arns)
        .unwrap_or_default()
}

/// The role name an ARN ends with (after its path).
fn role_name(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_string()
}

/// What became of a role left in another account.
#[derive(Debug, PartialEq, Eq)]
pub enum Retired {
    /// Deleted or retained by the deletion policy (or gone already, or not ours).
    Done,
    /// Its account is no longer among the operator's: nothing can be done there.
    Unreachable,
}

/// Deletes (or retains, by `policy`) a role left in another account. Gone already is
/// done; a role that is no longer ours (its ownership tags differ) is left alone. An
/// account the operator no longer acts in (taken out of `accounts`) cannot hold the
/// binding up: the role is left there, said in a Warning.
pub async fn retire(
    ctx: &Context,
    arn: &str,
    ownership: &BTreeMap<String, String>,
    policy: DeletionPolicy,
) -> Result<Retired, Error> {
    let iam = match ctx.iam_in(ctx.account_of(arn)) {
        Ok(iam) => iam,
        Err(Error::AccountNotConfigured(account)) => {
            tracing::warn!(role = arn, %account, "a role left by a move between accounts is in an account the operator no longer acts in; it stays there");
            return Ok(Retired::Unreachable);
        }
        Err(err) => return Err(err),
    };
    let role = RoleIdentity::new(role_name(arn), ownership.clone());
    match policy {
        DeletionPolicy::Delete => delete_role(iam, &role).await?,
        DeletionPolicy::Retain => retain_role(iam, &role).await?,
    }
    Ok(Retired::Done)
}

/// The Warning of a role left in an account the operator no longer acts in.
fn unreachable(arn: &str) -> Note {
    Note::new(
        EventType::Warning,
        reason::ROLE_RETIRED,
        format!(
            "IAM role {arn} was left by a move between accounts, but its account is no longer \
             under the operator's accounts: delete it there by hand"
        ),
        When::Always,
    )
}

/// The Event of a role retired.
fn retired(
    arn: &str,
    policy: DeletionPolicy,
    service_account: &str,
    to_account: Option<&str>,
) -> Note {
    let done = match policy {
        DeletionPolicy::Delete => "deleted",
        DeletionPolicy::Retain => "retained (its ownership tags removed)",
    };
    Note::new(
        EventType::Normal,
        reason::ROLE_RETIRED,
        format!(
            "IAM role {arn} {done}: the namespace moved to account {}, and no running pod of \
             ServiceAccount {service_account} uses that role any more",
            to_account.unwrap_or("(the operator's own)")
        ),
        When::Always,
    )
}

/// How long after a move began its old roles may go (once no pod uses them).
const MOVE_GRACE: Duration = Duration::from_secs(60);

/// What a move found in one pass.
pub struct Kept {
    pub state: Option<AccountMoveState>,
    pub notes: Vec<Note>,
}

/// Counts the namespace's pods that use each role left behind and retires the roles none
/// use; only once the binding is `ready` in the new account (the ServiceAccount names the
/// new role) and the move is [`MOVE_GRACE`] old, so no pod is ever pointed at a role that
/// is gone.
pub async fn keep_until_unused(
    ctx: &Context,
    binding: &PodIdentityBinding,
    namespace: &str,
    desired: &DesiredState,
    current_arn: &str,
    ready: bool,
) -> Result<Kept, Error> {
    let service_account = desired.service_account.name.as_str();
    let left = left_behind(binding, current_arn);
    let to_account = account_of_arn(current_arn).map(str::to_string);
    if left.is_empty() {
        return Ok(Kept {
            state: None,
            notes: Vec::new(),
        });
    }
    let waiting = |pods_remaining| AccountMoveState {
        from_role_arns: left.clone(),
        to_account: to_account.clone(),
        service_account: service_account.to_string(),
        pods_remaining,
    };
    if !ready {
        return Ok(Kept {
            state: Some(waiting(None)),
            notes: Vec::new(),
        });
    }
    let policy = binding
        .spec
        .effective_deletion_policy(ctx.config.deletion_policy);
    let ownership = RoleIdentity::of(&desired.role).ownership;
    // One the operator can no longer reach is not kept waiting for its pods: nothing
    // could be done with it once they went.
    let (reachable, unreachable_arns): (Vec<String>, Vec<String>) =
        left.iter().cloned().partition(|arn| {
            !matches!(
                ctx.iam_in(ctx.account_of(arn)),
                Err(Error::AccountNotConfigured(_))
            )
        });
    let mut notes: Vec<Note> = unreachable_arns
        .iter()
        .map(|arn| unreachable(arn))
        .collect();
    // One list for every role left: pods of any ServiceAccount of the namespace (the move
    // may have come with a change of ServiceAccount), terminating ones too.
    let counts = early_pods::count_in_namespace(ctx, namespace, &reachable, |pod, arn| {
        uses_until_stopped(pod, arn, DEFAULT_ANNOTATION_PREFIX)
    })
    .await;
    let counts = match counts {
        Ok(counts) => counts,
        Err(err) => {
            // Not counted, not retired: the roles stay until the pods can be listed.
            tracing::warn!(%namespace, error = %err, "cannot list the namespace's pods; the roles left in other accounts stay");
            let state = (!reachable.is_empty()).then(|| AccountMoveState {
                from_role_arns: reachable,
                ..waiting(None)
            });
            return Ok(Kept { state, notes });
        }
    };
    // Not in the pass that switched the ServiceAccount: a pod admitted meanwhile (or by a
    // webhook whose cache still showed the old role) has had time to be counted.
    let old_enough = migrating_since(binding)
        .and_then(|at| Timestamp::now().duration_since(at).try_into().ok())
        .is_some_and(|age: Duration| age >= MOVE_GRACE);
    let (mut kept, mut remaining) = (Vec::new(), 0);
    for (arn, pods) in reachable.into_iter().zip(counts) {
        if pods > 0 || !old_enough {
            remaining += pods;
            kept.push(arn);
            continue;
        }
        match retire(ctx, &arn, &ownership, policy).await {
            Ok(Retired::Done) => notes.push(retired(
                &arn,
                policy,
                service_account,
                to_account.as_deref(),
            )),
            Ok(Retired::Unreachable) => notes.push(unreachable(&arn)),
            Err(err) => {
                // The binding is in force in its new account: one old role IAM refuses to
                // retire holds nothing else back, and is tried again at the next count.
                tracing::warn!(role = %arn, error = %err, "cannot retire a role left in another account; trying again later");
                notes.push(Note::warning(
                    reason::ROLE_RETIRED,
                    format!("IAM role {arn}, left in another account, could not be retired: {err}"),
                ));
                kept.push(arn);
            }
        }
    }
    let state = (!kept.is_empty()).then(|| AccountMoveState {
        from_role_arns: kept,
        ..waiting(Some(remaining))
    });
    Ok(Kept { state, notes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    const IN_A: &str = "arn:aws:iam::444455556666:role/podidentity/c/web";
    const IN_B: &str = "arn:aws:iam::777788889999:role/podidentity/c/web";
    const RENAMED_IN_A: &str = "arn:aws:iam::444455556666:role/podidentity/c/web2";

    fn left(recorded: &[&str], previous: Option<&str>, current: &str) -> Vec<String> {
        let recorded = (!recorded.is_empty()).then(|| AccountMoveStatus {
            from_role_arns: recorded.iter().map(|s| s.to_string()).collect(),
            pods_remaining: None,
        });
        record_left(recorded, previous, current)
            .map(|r| r.from_role_arns)
            .unwrap_or_default()
    }

    #[test]
    fn a_role_in_the_account_left_is_recorded_until_retired() {
        // The pass that moves: the status's role is in another account.
        assert_eq!(left(&[], Some(IN_A), IN_B), [IN_A]);
        // Later passes: the status names the new role; the record keeps the old one.
        assert_eq!(left(&[IN_A], Some(IN_B), IN_B), [IN_A]);
        // No move: nothing is left behind, whatever the role is called.
        assert!(left(&[], Some(IN_A), IN_A).is_empty());
        assert!(left(&[], Some(IN_A), RENAMED_IN_A).is_empty());
        assert!(left(&[], None, IN_B).is_empty());
    }

    #[test]
    fn a_namespace_moved_back_keeps_the_role_it_returns_to() {
        // A → B, then back to A before A's role was retired: B's is left, A's in force.
        assert_eq!(left(&[IN_A], Some(IN_B), IN_A), [IN_B]);
    }

    fn pod(arn: &str, phase: &str, terminating: bool) -> Pod {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1"},
            "spec": {"containers": [{"name": "app", "image": "x", "env": [
                {"name": "AWS_ROLE_ARN", "value": arn},
                {"name": "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}]}]},
            "status": {"phase": phase},
        }))
        .unwrap_or_else(|err| panic!("{err}"));
        if terminating {
            pod.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
            );
        }
        pod
    }

    fn uses_until_stopped_here(pod: &Pod, arn: &str) -> bool {
        uses_until_stopped(pod, arn, DEFAULT_ANNOTATION_PREFIX)
    }

    #[test]
    fn a_pod_uses_the_old_role_until_it_stops() {
        assert!(uses_until_stopped_here(&pod(IN_A, "Running", false), IN_A));
        // Terminating: it still runs through its grace period.
        assert!(uses_until_stopped_here(&pod(IN_A, "Running", true), IN_A));
        assert!(!uses_until_stopped_here(
            &pod(IN_A, "Succeeded", false),
            IN_A
        ));
        assert!(!uses_until_stopped_here(&pod(IN_A, "Failed", true), IN_A));
        assert!(!uses_until_stopped_here(&pod(IN_B, "Running", false), IN_A));
    }

    #[test]
    fn the_role_name_is_the_arns_last_segment() {
        assert_eq!(role_name(IN_A), "web");
        assert_eq!(role_name("arn:aws:iam::1:role/plain"), "plain");
    }
}
