//! Status and conditions, computed purely from what a pass found. Conditions keep their
//! `lastTransitionTime` while their status stays, so an unchanged binding yields an
//! identical status and the operator writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podidentity_api::conditions::{self, reason};
use podidentity_api::conditions::{Condition, MAX_CONDITION_MESSAGE, Word, shortened, word};
use podidentity_api::{AssociationStatus, PodIdentityBindingStatus};

/// What one pass found, in the order things can fail.
#[derive(Clone, Debug, PartialEq)]
pub enum Assessment {
    /// Validation or guardrails (the configuration's, the namespace's policies') refused
    /// the spec: nothing was done in AWS, unless a policy asked for the role's permissions
    /// to be revoked (`revoked`).
    Refused {
        reason: String,
        message: String,
        revoked: bool,
    },
    /// A role of that name exists and is not this binding's.
    Conflict { message: String },
    /// Another binding owns the ServiceAccount (the oldest naming it): nothing is done
    /// until it goes or this binding names another ServiceAccount.
    ServiceAccountConflict {
        owner: String,
        service_account: String,
    },
    /// AWS failed. Transient failures (throttled, unavailable) are retried with backoff;
    /// permanent ones (denied, malformed, over a limit) wait for a change.
    AwsFailed {
        reason: String,
        message: String,
        permanent: bool,
    },
    /// The role exists and was worked on; what is still not right, if anything.
    Synced(Synced),
    /// The finalizer is cleaning up.
    Deleting,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ServiceAccountState {
    Bound,
    NotFound { name: String },
}

/// What the association step found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AssociationState {
    /// In line (made, updated, adopted, or already so).
    Kept(AssociationStatus),
    /// The ServiceAccount's association is not this binding's to change.
    Conflict { id: String, why: String },
}

impl AssociationState {
    pub fn kept(&self) -> Option<&AssociationStatus> {
        match self {
            AssociationState::Kept(status) => Some(status),
            AssociationState::Conflict { .. } => None,
        }
    }
}

/// A pass that got the role made: the ServiceAccount's state, and what needs a change of
/// the spec (managed policies IAM does not have, a credentials Secret that is not ours).
#[derive(Clone, Debug, PartialEq)]
pub struct Synced {
    pub service_account: ServiceAccountState,
    pub missing_policies: Vec<String>,
    /// The name of a Secret of the wanted name that this binding does not own.
    pub foreign_secret: Option<String>,
    /// What the assumable gate found (`None`: the gate is off).
    pub assumable: Option<Assumability>,
    /// Pods of the ServiceAccount running without the role (`None`: not counted).
    pub pods_needing_restart: Option<usize>,
    /// The EKS Pod Identity association (`None`: IRSA).
    pub association: Option<AssociationState>,
    /// A change of mechanism waiting for pods of the old one (`None`: none under way, or
    /// it finished in this pass). Boxed, as `account_move`: both are rare, and an
    /// assessment is passed by value.
    pub migration: Option<Box<MigrationState>>,
    /// A move to another account waiting for the pods of the roles left behind (`None`:
    /// none under way, or it finished in this pass).
    pub account_move: Option<Box<AccountMoveState>>,
}

/// A change of mechanism waiting for the pods of the old one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationState {
    pub from: podidentity_api::Mechanism,
    pub to: podidentity_api::Mechanism,
    pub service_account: String,
    /// Running pods still using `from` (`None`: they could not be listed).
    pub pods_remaining: Option<usize>,
}

/// A move waiting for the pods of the roles left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountMoveState {
    /// The roles kept in the accounts left.
    pub from_role_arns: Vec<String>,
    /// The account of the role in force now (`None`: no account in its ARN).
    pub to_account: Option<String>,
    pub service_account: String,
    /// Running pods still using one of them (`None`: not counted in this pass).
    pub pods_remaining: Option<usize>,
}

impl Synced {
    pub fn bound() -> Self {
        Self::with(ServiceAccountState::Bound)
    }

    /// Whether the Ready condition of this pass will be True: nothing waits (the
    /// ServiceAccount, the assumable gate) and nothing needs a change.
    pub fn is_ready(&self) -> bool {
        self.service_account == ServiceAccountState::Bound
            && self.assumable.as_ref().is_none_or(Assumability::is_assumed)
            && self.missing_policies.is_empty()
            && self.foreign_secret.is_none()
            && !matches!(self.association, Some(AssociationState::Conflict { .. }))
    }

    pub fn with(service_account: ServiceAccountState) -> Self {
        Self {
            service_account,
            missing_policies: Vec::new(),
            foreign_secret: None,
            association: None,
            assumable: None,
            pods_needing_restart: None,
            migration: None,
            account_move: None,
        }
    }
}

/// What the assumable gate found.
#[derive(Clone, Debug, PartialEq)]
pub enum Assumability {
    /// STS exchanged the token for the role.
    Assumed,
    /// STS refused (or could not be asked): why, in words.
    NotAssumable { message: String },
    /// The API server issued no token for the ServiceAccount.
    NoToken { message: String },
}

impl Assumability {
    pub fn is_assumed(&self) -> bool {
        matches!(self, Assumability::Assumed)
    }

    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Assumability::Assumed => reason::ASSUMED,
            Assumability::NotAssumable { .. } => reason::NOT_ASSUMABLE,
            Assumability::NoToken { .. } => reason::TOKEN_REQUEST_FAILED,
        }
    }
}

struct Row {
    type_: &'static str,
    status: &'static str,
    reason: String,
    message: String,
}

fn row(type_: &'static str, status: &'static str, reason: &str, message: &str) -> Row {
    Row {
        type_,
        status,
        reason: reason.to_string(),
        message: message.to_string(),
    }
}

/// The six conditions for an assessment.
fn rows(assessment: &Assessment) -> Vec<Row> {
    use conditions::{reason, *};
    let synced = |t| row(t, "True", reason::SYNCED, "");
    match assessment {
        Assessment::Refused {
            reason: why,
            message,
            revoked,
        } => vec![
            row(READY, "False", why, message),
            row(
                RECONCILING,
                "False",
                why,
                "waiting for the spec, or the policies governing its namespace, to change",
            ),
            row(STALLED, "True", why, message),
            row(POLICY_ACCEPTED, "False", why, message),
            if *revoked {
                row(
                    ROLE_SYNCED,
                    "False",
                    "PermissionsRevoked",
                    "the spec was refused and its namespace's policy asks for revocation \
                     (onViolation: Revoke): the role's policies were taken away",
                )
            } else {
                row(
                    ROLE_SYNCED,
                    "Unknown",
                    "NotAttempted",
                    "the spec was refused; nothing was changed in AWS (a role made before \
                     keeps what it had)",
                )
            },
            row(
                SERVICE_ACCOUNT_BOUND,
                "Unknown",
                "NotAttempted",
                "the spec was refused",
            ),
        ],
        Assessment::Conflict { message } => vec![
            row(READY, "False", reason::ROLE_CONFLICT, message),
            row(
                RECONCILING,
                "False",
                reason::ROLE_CONFLICT,
                "waiting for the conflicting role to go or the binding to change",
            ),
            row(STALLED, "True", reason::ROLE_CONFLICT, message),
            synced(POLICY_ACCEPTED),
            row(ROLE_SYNCED, "False", reason::ROLE_CONFLICT, message),
            row(
                SERVICE_ACCOUNT_BOUND,
                "Unknown",
                "NotAttempted",
                "the role is not ours",
            ),
        ],
        Assessment::ServiceAccountConflict {
            owner,
            service_account,
        } => {
            let message = format!(
                "ServiceAccount {service_account} is owned by PodIdentityBinding {owner}, the oldest \
                 binding naming it (a ServiceAccount carries one role); this binding writes nothing \
                 and takes over when {owner} goes: remove one of them, or name another ServiceAccount"
            );
            vec![
                row(READY, "False", reason::SERVICE_ACCOUNT_CONFLICT, &message),
                row(
                    RECONCILING,
                    "False",
                    reason::SERVICE_ACCOUNT_CONFLICT,
                    "waiting for the owning binding to go",
                ),
                row(STALLED, "True", reason::SERVICE_ACCOUNT_CONFLICT, &message),
                synced(POLICY_ACCEPTED),
                row(
                    ROLE_SYNCED,
                    "Unknown",
                    "NotAttempted",
                    "the ServiceAccount is another binding's",
                ),
                row(
                    SERVICE_ACCOUNT_BOUND,
                    "False",
                    reason::SERVICE_ACCOUNT_CONFLICT,
                    &message,
                ),
            ]
        }
        Assessment::AwsFailed {
            reason: why,
            message,
            permanent,
        } => {
            let (reconciling, stalled, next) = if *permanent {
                (
                    "False",
                    "True",
                    "waiting for a change to the spec, the configuration or AWS",
                )
            } else {
                ("True", "False", "retrying with backoff")
            };
            vec![
                row(READY, "False", why, message),
                row(RECONCILING, reconciling, why, next),
                row(STALLED, stalled, why, if *permanent { message } else { "" }),
                synced(POLICY_ACCEPTED),
                row(ROLE_SYNCED, "False", why, message),
                row(
                    SERVICE_ACCOUNT_BOUND,
                    "Unknown",
                    "NotAttempted",
                    "the role is not in line yet",
                ),
            ]
        }
        Assessment::Synced(synced) => synced_rows(synced),
        Assessment::Deleting => vec![
            row(
                READY,
                "False",
                reason::DELETING,
                "the binding is being deleted",
            ),
            row(
                RECONCILING,
                "True",
                reason::DELETING,
                "cleaning up the IAM role",
            ),
            row(STALLED, "False", reason::DELETING, ""),
        ],
    }
}

fn missing_policies_message(arns: &[String]) -> String {
    let one = arns.len() == 1;
    format!(
        "managed polic{} {} do{} not exist in IAM: fix or remove {} in \
         spec.permissions.managedPolicyArns (the role exists with everything else)",
        if one { "y" } else { "ies" },
        arns.join(", "),
        if one { "es" } else { "" },
        if one { "it" } else { "them" },
    )
}

fn foreign_secret_message(name: &str) -> String {
    format!(
        "Secret {name} exists and is not this binding's: it was left untouched; delete it, or \
         set spec.credentialsSecret.name to another name"
    )
}

/// The conditions of a pass that got the role made: Ready when nothing is left; else the
/// first thing left, in the order a user should look at them.
fn synced_rows(synced: &Synced) -> Vec<Row> {
    use conditions::{reason, *};
    let ok = |t| row(t, "True", reason::SYNCED, "");
    let mut needs_change = Vec::new();
    if !synced.missing_policies.is_empty() {
        needs_change.push((
            reason::MANAGED_POLICY_NOT_FOUND,
            missing_policies_message(&synced.missing_policies),
        ));
    }
    if let Some(name) = &synced.foreign_secret {
        needs_change.push((
            reason::CREDENTIALS_SECRET_CONFLICT,
            foreign_secret_message(name),
        ));
    }
    if let Some(AssociationState::Conflict { id, why }) = &synced.association {
        needs_change.push((
            reason::ASSOCIATION_CONFLICT,
            format!(
                "the ServiceAccount's EKS Pod Identity association {id} is not this binding's \
                 ({why}): it was left untouched; delete it, or use another ServiceAccount"
            ),
        ));
    }
    let waiting = match (&synced.service_account, &synced.assumable) {
        (ServiceAccountState::NotFound { name }, _) => {
            Some((reason::SERVICE_ACCOUNT_NOT_FOUND, not_found_message(name)))
        }
        (ServiceAccountState::Bound, Some(Assumability::NotAssumable { message }))
        | (ServiceAccountState::Bound, Some(Assumability::NoToken { message })) => {
            let why = synced.assumable.as_ref().map_or("", Assumability::reason);
            Some((why, message.clone()))
        }
        (ServiceAccountState::Bound, _) => None,
    };
    let ready = match waiting.iter().chain(needs_change.iter()).next() {
        None => ok(READY),
        Some((why, message)) => row(READY, "False", why, message),
    };
    let reconciling = match &waiting {
        Some((why, _)) if synced.service_account == ServiceAccountState::Bound => row(
            RECONCILING,
            "True",
            why,
            "verifying the role is assumable, retrying with backoff",
        ),
        Some((why, _)) => row(RECONCILING, "True", why, "waiting for the ServiceAccount"),
        None => match needs_change.first() {
            Some((why, _)) => row(RECONCILING, "False", why, "waiting for the spec to change"),
            None => row(RECONCILING, "False", reason::SYNCED, ""),
        },
    };
    let stalled = match needs_change.first() {
        Some((why, message)) => row(STALLED, "True", why, message),
        None => match &waiting {
            Some((why, _)) => row(STALLED, "False", why, ""),
            None => row(STALLED, "False", reason::SYNCED, ""),
        },
    };
    let role_synced = if synced.missing_policies.is_empty() {
        ok(ROLE_SYNCED)
    } else {
        row(
            ROLE_SYNCED,
            "False",
            reason::MANAGED_POLICY_NOT_FOUND,
            &missing_policies_message(&synced.missing_policies),
        )
    };
    let mut rows = vec![
        ready,
        reconciling,
        stalled,
        ok(POLICY_ACCEPTED),
        role_synced,
        service_account_row(&synced.service_account),
    ];
    if let Some(assumable) = &synced.assumable {
        rows.push(assumable_row(assumable));
    }
    // One Migrating row: a change of mechanism says more than a move between accounts.
    match (&synced.migration, &synced.account_move) {
        (Some(migration), _) => rows.push(migrating_row(migration)),
        (None, Some(moving)) => rows.push(moving_account_row(moving)),
        (None, None) => {}
    }
    rows
}

fn migrating_row(migration: &MigrationState) -> Row {
    let MigrationState {
        from,
        to,
        service_account,
        pods_remaining,
    } = migration;
    let pods = match pods_remaining {
        Some(1) => "1 running pod still uses it".to_string(),
        Some(n) => format!("{n} running pods still use it"),
        None => "its pods could not be listed".to_string(),
    };
    row(
        conditions::MIGRATING,
        "True",
        conditions::reason::WAITING_FOR_PODS,
        &format!(
            "ServiceAccount {service_account} moves from {from} to {to}: new pods get {to}; the \
             role trusts {from} too while {pods}"
        ),
    )
}

fn moving_account_row(moving: &AccountMoveState) -> Row {
    let AccountMoveState {
        from_role_arns,
        to_account,
        service_account,
        pods_remaining,
    } = moving;
    let pods = match pods_remaining {
        Some(1) => "1 running pod still uses them".to_string(),
        Some(n) => format!("{n} running pods still use them"),
        None => "the new role is not Ready yet, or the pods could not be listed".to_string(),
    };
    row(
        conditions::MIGRATING,
        "True",
        conditions::reason::MOVING_ACCOUNT,
        &format!(
            "the namespace moved to account {}: ServiceAccount {service_account} names the role \
             there; kept in the account left while {pods}: {}",
            to_account.as_deref().unwrap_or("(the operator's own)"),
            from_role_arns.join(", ")
        ),
    )
}

fn assumable_row(assumable: &Assumability) -> Row {
    let (status, message) = match assumable {
        Assumability::Assumed => (
            "True",
            "STS exchanged a token of the ServiceAccount for the role",
        ),
        Assumability::NotAssumable { message } | Assumability::NoToken { message } => {
            ("False", message.as_str())
        }
    };
    row(
        conditions::ROLE_ASSUMABLE,
        status,
        assumable.reason(),
        message,
    )
}

fn service_account_row(state: &ServiceAccountState) -> Row {
    match state {
        ServiceAccountState::Bound => row(
            conditions::SERVICE_ACCOUNT_BOUND,
            "True",
            conditions::reason::SYNCED,
            "",
        ),
        ServiceAccountState::NotFound { name } => row(
            conditions::SERVICE_ACCOUNT_BOUND,
            "False",
            conditions::reason::SERVICE_ACCOUNT_NOT_FOUND,
            &not_found_message(name),
        ),
    }
}

fn not_found_message(name: &str) -> String {
    format!(
        "ServiceAccount {name} does not exist: create it, or set spec.createServiceAccount: true"
    )
}

/// The conditions for `assessment`, keeping each existing condition's transition time
/// when its status does not change.
pub fn conditions(
    assessment: &Assessment,
    generation: Option<i64>,
    existing: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    rows(assessment)
        .into_iter()
        .map(|row| {
            let previous = existing.iter().find(|c| c.type_ == row.type_);
            let last_transition_time = match previous {
                Some(previous) if previous.status == row.status => {
                    previous.last_transition_time.clone()
                }
                _ => now.clone(),
            };
            Condition {
                type_: Word::Borrowed(row.type_),
                status: Word::Borrowed(row.status),
                reason: word(&row.reason),
                message: shortened(row.message, MAX_CONDITION_MESSAGE),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The next status: the previous one with this pass's findings.
pub fn next_status(
    previous: Option<&PodIdentityBindingStatus>,
    assessment: &Assessment,
    generation: Option<i64>,
    now: &Time,
) -> PodIdentityBindingStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let existing = std::mem::take(&mut status.conditions);
    status.conditions = conditions(assessment, generation, &existing, now);
    status.observed_generation = generation;
    status
}

/// When the migration (or a move between accounts) began: the `Migrating` condition's
/// transition (`None`: this pass begins it).
pub fn migrating_since(
    binding: &podidentity_api::PodIdentityBinding,
) -> Option<k8s_openapi::jiff::Timestamp> {
    binding
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::MIGRATING && c.status == "True")
        .map(|c| c.last_transition_time.0)
}

/// Whether the Ready condition is True.
pub fn is_ready(status: Option<&PodIdentityBindingStatus>) -> bool {
    status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == conditions::READY && c.status == "True")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap_or_default())
    }

    fn condition<'a>(status: &'a PodIdentityBindingStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("{type_} missing"))
    }

    #[test]
    fn a_synced_binding_is_ready_and_nothing_else() {
        let status = next_status(
            None,
            &Assessment::Synced(Synced::bound()),
            Some(3),
            &time(10),
        );
        assert!(is_ready(Some(&status)));
        assert_eq!(condition(&status, "Stalled").status, "False");
        assert_eq!(condition(&status, "Reconciling").status, "False");
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
        assert_eq!(status.conditions.len(), 6);
    }

    #[test]
    fn an_unchanged_pass_yields_an_identical_status() {
        let synced = Assessment::Synced(Synced::bound());
        let first = next_status(None, &synced, Some(1), &time(10));
        let second = next_status(Some(&first), &synced, Some(1), &time(99));
        assert_eq!(first, second, "no timestamp moves, so nothing is written");
    }

    #[test]
    fn transition_times_move_only_with_the_status() {
        let first = next_status(
            None,
            &Assessment::Synced(Synced::with(ServiceAccountState::NotFound {
                name: "app".into(),
            })),
            Some(1),
            &time(10),
        );
        let second = next_status(
            Some(&first),
            &Assessment::Synced(Synced::bound()),
            Some(1),
            &time(20),
        );
        assert_eq!(condition(&second, "Ready").last_transition_time, time(20));
        assert_eq!(
            condition(&second, "RoleSynced").last_transition_time,
            time(10),
            "RoleSynced stayed True"
        );
    }

    #[test]
    fn refusals_stall_with_the_reason_and_message() {
        let status = next_status(
            None,
            &Assessment::Refused {
                reason: "GuardrailViolation".into(),
                message: "spec.permissions.statements[0].actions[0]: ...".into(),
                revoked: false,
            },
            Some(2),
            &time(1),
        );
        assert!(!is_ready(Some(&status)));
        let stalled = condition(&status, "Stalled");
        assert_eq!(
            (&*stalled.status, &*stalled.reason),
            ("True", "GuardrailViolation")
        );
        assert_eq!(condition(&status, "PolicyAccepted").status, "False");
        assert!(
            condition(&status, "Ready")
                .message
                .starts_with("spec.permissions")
        );
    }
}
