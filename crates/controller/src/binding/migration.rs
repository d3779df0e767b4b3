//! A change of mechanism (IRSA ↔ EKS Pod Identity) on a binding already in place, with no
//! moment where a running pod's credentials stop working. The status is the migration's
//! only memory:
//!
//! 1. the role trusts both mechanisms;
//! 2. the new mechanism is delivered: the association made (or the annotation written);
//! 3. the old one is taken from new pods: IRSA's annotation removed once the association
//!    exists (Pod Identity's association stays until step 5: removing it would cut the
//!    credentials of pods that still use it, and the SDKs prefer IRSA's variables anyway);
//! 4. running pods that still use the old mechanism are counted (and, with
//!    `restartPods`, their workloads rolled once);
//! 5. when none remain, the old trust statement (and association) goes.
//!
//! Steps 1–3 happen in the first pass; the status then records `mechanism` (the new one)
//! and `migration`; later passes count pods until none remain.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use podidentity_api::conditions::reason;
use podidentity_api::config::OperatorConfig;
use podidentity_api::{Mechanism, PodIdentityBinding, PodIdentityBindingStatus};
use podidentity_iam::build::{DesiredState, MechanismTrust, mechanism_trust};
use podidentity_webhook::pod_credentials::{DEFAULT_ANNOTATION_PREFIX, PodUse, uses};

use super::conditions::{MigrationState, migrating_since as began};
use super::early_pods::{self, EarlyPod};
use super::report::{Note, When};
use crate::context::Context;
use crate::error::Error;

/// How soon a migration waiting for pods counts them again at first (pods are not
/// watched); the wait grows with the migration's age, up to [`LONGEST_RECHECK`].
const FIRST_RECHECK: Duration = Duration::from_secs(5);
const LONGEST_RECHECK: Duration = Duration::from_secs(300);

/// Pods created this long after a migration began still count (a webhook's cache may lag
/// the annotation's removal); later ones do not, so new pods cannot hold a migration open.
const LATE_POD_GRACE: Duration = Duration::from_secs(60);

/// A change of mechanism the status shows under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    pub from: Mechanism,
    pub to: Mechanism,
    /// A pass delivered `to` already (the status records it): what is left is waiting for
    /// the pods of `from`.
    pub delivered: bool,
}

/// The mechanism the status says was put in place: as recorded, or IRSA for a binding
/// bound before mechanisms were recorded (none at all for one never bound).
fn applied(status: &PodIdentityBindingStatus) -> Option<Mechanism> {
    status.mechanism.or_else(|| {
        status
            .service_account_name
            .as_ref()
            .map(|_| Mechanism::Irsa)
    })
}

/// The migration a pass towards `to` is in, if any: the binding was put in place under
/// the other mechanism, or a migration is recorded (finishing, or turned back).
pub fn under_way(binding: &PodIdentityBinding, to: Mechanism) -> Option<Migration> {
    let status = binding.status.as_ref()?;
    status.role_id.as_ref()?;
    let applied = applied(status)?;
    let recorded = status.migration.as_ref();
    if applied == to && recorded.is_none() {
        return None;
    }
    Some(Migration {
        from: to.other(),
        to,
        delivered: applied == to && recorded.is_some_and(|m| m.to == to),
    })
}

/// How soon to count the pods again: a tenth of the migration's age, from 5 s to 5 min, so
/// a migration that waits long (pods nobody restarts) costs little.
pub fn recheck(binding: &PodIdentityBinding) -> Duration {
    let age = began(binding)
        .and_then(|at| Timestamp::now().duration_since(at).try_into().ok())
        .unwrap_or(Duration::ZERO);
    (age / 10).clamp(FIRST_RECHECK, LONGEST_RECHECK)
}

/// The ServiceAccount whose pods use the old mechanism: as the migration recorded it, or
/// the one bound when it begins.
pub fn migrating_account(binding: &PodIdentityBinding) -> &str {
    let status = binding.status.as_ref();
    status
        .and_then(|s| s.migration.as_ref())
        .and_then(|m| m.service_account_name.as_deref())
        .or_else(|| status.and_then(|s| s.service_account_name.as_deref()))
        .unwrap_or(&binding.spec.service_account_name)
}

/// Keeps what the old mechanism's running pods need, as the status records it was put in
/// place: its trust statement (for the ServiceAccount the migration began with; whether
/// the association's sessions were tagged) and, leaving Pod Identity, the role's right
/// to chain into the association's target.
pub fn keep_old_mechanism(
    binding: &PodIdentityBinding,
    namespace: &str,
    config: &OperatorConfig,
    desired: &mut DesiredState,
    from: Mechanism,
) {
    let association = binding.status.as_ref().and_then(|s| s.association.as_ref());
    let service_account = migrating_account(binding);
    let trust = match from {
        Mechanism::Irsa => MechanismTrust::Irsa { service_account },
        Mechanism::PodIdentity => MechanismTrust::PodIdentity {
            service_account,
            session_tags: !association.is_some_and(|a| a.disable_session_tags),
        },
    };
    // The old trust as the role's own account names it.
    let config = config.in_account(desired.account.as_deref());
    desired.trusting_also(mechanism_trust(namespace, &binding.spec, &config, trust));
    if from == Mechanism::PodIdentity
        && let Some(target) = association.and_then(|a| a.target_role_arn.as_deref())
    {
        desired.chaining_also(target);
    }
}

/// The role as a pass (or the drift sweep) should find it: what the old mechanism needs
/// kept while a migration is recorded and not finishing.
pub fn trust_in_force(
    binding: &PodIdentityBinding,
    namespace: &str,
    config: &OperatorConfig,
    desired: &mut DesiredState,
    finishing: bool,
) {
    if let Some(migration) = under_way(binding, desired.mechanism)
        && !finishing
    {
        keep_old_mechanism(binding, namespace, config, desired, migration.from);
    }
}

fn pod_use(mechanism: Mechanism) -> PodUse {
    match mechanism {
        Mechanism::Irsa => PodUse::Irsa,
        Mechanism::PodIdentity => PodUse::PodIdentity,
    }
}

/// Running pods of the ServiceAccount that still use `from` (for IRSA: with `role_arn`),
/// created before `cutoff` (if any).
async fn pods_on(
    ctx: &Context,
    namespace: &str,
    service_account: &str,
    from: Mechanism,
    role_arn: &str,
    cutoff: Option<Timestamp>,
) -> Result<Vec<EarlyPod>, kube::Error> {
    let how = pod_use(from);
    early_pods::survey_where(ctx, namespace, service_account, |pod| {
        let early = match (cutoff, &pod.metadata.creation_timestamp) {
            (Some(cutoff), Some(created)) => created.0 <= cutoff,
            _ => true,
        };
        early && uses(pod, how, role_arn, DEFAULT_ANNOTATION_PREFIX)
    })
    .await
}

/// Running pods still using the mechanism a migration leaves (`None`: they could not
/// be listed; the migration waits).
pub async fn old_pods(
    ctx: &Context,
    binding: &PodIdentityBinding,
    namespace: &str,
    role_arn: &str,
    migration: &Migration,
) -> Option<Vec<EarlyPod>> {
    let account = migrating_account(binding);
    let cutoff = began(binding).and_then(|at| at.checked_add(LATE_POD_GRACE).ok());
    match pods_on(ctx, namespace, account, migration.from, role_arn, cutoff).await {
        Ok(pods) => Some(pods),
        Err(err) => {
            tracing::warn!(%namespace, service_account = %account, error = %err, "cannot list the ServiceAccount's pods; the migration waits");
            None
        }
    }
}

/// A migration's old pods counted (and, once the new mechanism is `delivered`, their
/// workloads rolled once, with `restartPods`).
pub async fn wait(
    ctx: &Context,
    binding: &PodIdentityBinding,
    namespace: &str,
    role_arn: &str,
    migration: &Migration,
    delivered: bool,
) -> Result<(MigrationState, Option<Note>), Error> {
    let pods = old_pods(ctx, binding, namespace, role_arn, migration).await;
    let account = migrating_account(binding).to_string();
    let restarts = match &pods {
        Some(pods)
            if !pods.is_empty()
                && delivered
                && binding.spec.injection.restart_pods
                && ctx.config.allow_pod_restarts =>
        {
            let key = restart_key(role_arn, migration.to);
            Some(early_pods::restart(ctx, namespace, pods, &key).await?)
        }
        _ => None,
    };
    let before = binding
        .status
        .as_ref()
        .and_then(|s| s.migration.as_ref())
        .and_then(|m| m.pods_remaining);
    let count = pods.as_ref().map(Vec::len);
    let restarted = restarts.as_ref().is_some_and(|r| !r.restarted.is_empty());
    let changed = count.map(|n| i64::try_from(n).unwrap_or(i64::MAX)) != before || restarted;
    // Its own reason when something was rolled: Events of one reason are kept as a series
    // whose note is the first one's.
    let why = if restarted {
        reason::PODS_RESTARTED
    } else {
        reason::WAITING_FOR_PODS
    };
    let note = pods
        .as_ref()
        .filter(|pods| changed && !pods.is_empty())
        .map(|pods| {
            let message = waiting_note(
                migration,
                &account,
                pods,
                restarts.as_ref(),
                ctx.config.allow_pod_restarts,
            );
            Note::new(EventType::Normal, why, message, When::StatusWritten)
                .for_action(action(migration.to))
        });
    let state = MigrationState {
        from: migration.from,
        to: migration.to,
        service_account: account,
        pods_remaining: count,
    };
    Ok((state, note))
}

/// The Event of a migration's first pass.
pub fn started(migration: &Migration) -> Note {
    let Migration { from, to, .. } = migration;
    Note::new(
        EventType::Normal,
        reason::MIGRATION_STARTED,
        format!("moving from {from} to {to}: the role trusts both; new pods get {to}"),
        When::Always,
    )
    .for_action(action(*to))
}

/// The Event of a migration's last pass (said once its status is written).
pub fn complete(migration: &Migration) -> Note {
    let Migration { from, to, .. } = migration;
    Note::new(
        EventType::Normal,
        reason::MIGRATION_COMPLETE,
        format!("no running pod uses {from} any more: the role trusts {to} only"),
        When::StatusWritten,
    )
    .for_action(action(*to))
}

/// The action of a migration's Events: one series per direction, so each direction's
/// note stays its own.
pub fn action(to: Mechanism) -> String {
    format!("MigrateTo{to}")
}

/// What restarts for a migration are recorded as on a pod template: once per role and
/// mechanism moved to.
pub fn restart_key(role_arn: &str, to: Mechanism) -> String {
    format!("{role_arn} ({to})")
}

/// The Event note of a migration waiting for pods.
pub fn waiting_note(
    migration: &Migration,
    service_account: &str,
    pods: &[EarlyPod],
    restarts: Option<&early_pods::Restarts>,
    restarts_allowed: bool,
) -> String {
    let Migration { from, to, .. } = migration;
    let one = pods.len() == 1;
    format!(
        "moving ServiceAccount {service_account} from {from} to {to}: {} running pod{} still \
         use{} {from} (the role trusts both until none do): {}.{}",
        pods.len(),
        if one { "" } else { "s" },
        if one { "s" } else { "" },
        early_pods::names_shown(pods),
        early_pods::what_was_restarted(restarts, restarts_allowed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use podidentity_api::{MigrationStatus, PodIdentityBindingSpec};

    fn binding(status: Option<PodIdentityBindingStatus>) -> PodIdentityBinding {
        let mut b = PodIdentityBinding::new(
            "orders",
            PodIdentityBindingSpec {
                service_account_name: "orders".into(),
                ..PodIdentityBindingSpec::default()
            },
        );
        b.metadata.namespace = Some("shop".into());
        b.status = status;
        b
    }

    fn placed(mechanism: Option<Mechanism>) -> PodIdentityBindingStatus {
        PodIdentityBindingStatus {
            role_id: Some("AROAEXAMPLE".into()),
            service_account_name: Some("orders".into()),
            mechanism,
            ..Default::default()
        }
    }

    #[test]
    fn a_change_of_mechanism_is_a_migration_and_nothing_else_is() {
        use Mechanism::{Irsa, PodIdentity};
        // Never put in place: nothing to migrate.
        assert_eq!(under_way(&binding(None), PodIdentity), None);
        let never_bound = PodIdentityBindingStatus {
            role_id: Some("AROAEXAMPLE".into()),
            ..Default::default()
        };
        assert_eq!(under_way(&binding(Some(never_bound)), PodIdentity), None);
        // Bound before mechanisms were recorded: that was IRSA.
        assert_eq!(under_way(&binding(Some(placed(None))), Irsa), None);
        let started = under_way(&binding(Some(placed(None))), PodIdentity);
        assert_eq!(
            started,
            Some(Migration {
                from: Irsa,
                to: PodIdentity,
                delivered: false
            })
        );
        assert_eq!(
            under_way(&binding(Some(placed(Some(PodIdentity)))), PodIdentity),
            None
        );
        // Delivered: waiting for the old pods.
        let mut waiting = placed(Some(PodIdentity));
        waiting.migration = Some(MigrationStatus {
            from: Irsa,
            to: PodIdentity,
            pods_remaining: Some(2),
            service_account_name: Some("orders".into()),
        });
        assert_eq!(
            under_way(&binding(Some(waiting.clone())), PodIdentity),
            Some(Migration {
                from: Irsa,
                to: PodIdentity,
                delivered: true
            })
        );
        // Turned back half way: moving away from what was delivered.
        assert_eq!(
            under_way(&binding(Some(waiting)), Irsa),
            Some(Migration {
                from: PodIdentity,
                to: Irsa,
                delivered: false
            })
        );
    }

    fn config() -> OperatorConfig {
        OperatorConfig {
            cluster_name: "prod".into(),
            aws: podidentity_api::config::AwsConfig {
                account_id: Some("111122223333".into()),
                region: Some("eu-west-1".into()),
                ..Default::default()
            },
            oidc: podidentity_api::config::OidcConfig {
                issuer_url: Some("https://oidc.example.com/id/ABC".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn desired(b: &PodIdentityBinding) -> DesiredState {
        let config = config();
        podidentity_iam::desired_state(
            podidentity_iam::BindingRef::of("shop", b),
            &b.spec,
            &config,
            &podidentity_iam::Guardrails::from_config(&config),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The ServiceAccount named when the migration began keeps its trust after the spec
    /// names another (status.serviceAccountName follows the spec; the migration does not).
    #[test]
    fn the_old_trust_is_for_the_service_account_the_migration_began_with() {
        let mut status = placed(Some(Mechanism::PodIdentity));
        status.service_account_name = Some("orders-v2".into());
        status.migration = Some(MigrationStatus {
            from: Mechanism::Irsa,
            to: Mechanism::PodIdentity,
            pods_remaining: Some(1),
            service_account_name: Some("orders".into()),
        });
        let mut b = binding(Some(status));
        b.spec.service_account_name = "orders-v2".into();
        b.spec.identity.mechanism = Some(Mechanism::PodIdentity);
        let mut want = desired(&b);
        trust_in_force(&b, "shop", &config(), &mut want, false);
        let trust = want.role.trust_policy.minified();
        assert!(
            trust.contains("system:serviceaccount:shop:orders\""),
            "{trust}"
        );
        assert!(
            !trust.contains("system:serviceaccount:shop:orders-v2"),
            "{trust}"
        );
        assert_eq!(migrating_account(&b), "orders");
        // Finishing: the new mechanism's alone.
        let mut done = desired(&b);
        trust_in_force(&b, "shop", &config(), &mut done, true);
        assert!(!done.role.trust_policy.minified().contains("Federated"));
    }

    /// Leaving Pod Identity with a target role: the association (kept for the running
    /// pods) still chains into it, so the role keeps the right to.
    #[test]
    fn leaving_pod_identity_keeps_the_chaining_its_association_needs() {
        let target = "arn:aws:iam::444455556666:role/reports";
        let mut status = placed(Some(Mechanism::PodIdentity));
        status.association = Some(podidentity_api::AssociationStatus {
            id: "a-1".into(),
            arn: "arn:aws:eks:eu-west-1:111122223333:podidentityassociation/prod/a-1".into(),
            disable_session_tags: true,
            target_role_arn: Some(target.into()),
        });
        let b = binding(Some(status));
        let mut want = desired(&b);
        assert_eq!(want.mechanism, Mechanism::Irsa);
        trust_in_force(&b, "shop", &config(), &mut want, false);
        let inline = want
            .role
            .inline_policy
            .as_ref()
            .map(|p| p.minified())
            .unwrap_or_default();
        assert!(inline.contains(target), "{inline}");
        let trust = want.role.trust_policy.minified();
        assert!(trust.contains("pods.eks.amazonaws.com"), "{trust}");
        // Session tags were off: the kept statement pins no tag the sessions lack.
        assert!(!trust.contains("kubernetes-namespace"), "{trust}");
    }

    /// A young migration counts its pods every 5 s; an old one rarely.
    #[test]
    fn the_recount_slows_as_the_migration_ages() {
        let with_age = |seconds: i64| {
            let mut status = placed(Some(Mechanism::PodIdentity));
            let at = Timestamp::now()
                .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(seconds))
                .unwrap_or_else(|e| panic!("{e}"));
            status
                .conditions
                .push(podidentity_api::conditions::Condition {
                    type_: podidentity_api::conditions::MIGRATING.into(),
                    status: "True".into(),
                    reason: reason::WAITING_FOR_PODS.into(),
                    message: String::new(),
                    observed_generation: None,
                    last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at),
                });
            recheck(&binding(Some(status)))
        };
        assert_eq!(recheck(&binding(Some(placed(None)))), FIRST_RECHECK);
        assert_eq!(with_age(10), FIRST_RECHECK);
        let middle = with_age(1_000);
        assert!(
            (Duration::from_secs(99)..=Duration::from_secs(101)).contains(&middle),
            "{middle:?}"
        );
        assert_eq!(with_age(86_400), LONGEST_RECHECK);
    }
}
