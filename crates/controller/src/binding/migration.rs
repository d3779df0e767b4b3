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

use podidentity_api::config::OperatorConfig;
use podidentity_api::{Mechanism, PodIdentityBinding, PodIdentityBindingStatus};
use podidentity_iam::build::{DesiredState, MechanismTrust, mechanism_trust};
use podidentity_webhook::pod_credentials::{DEFAULT_ANNOTATION_PREFIX, PodUse, uses};

use super::early_pods::{self, EarlyPod};
use crate::context::Context;

/// How often a migration waiting for pods counts them again (pods are not watched).
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

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

/// Adds the old mechanism's trust, as the status records it was put in place (the
/// ServiceAccount annotated last; whether the association's sessions were tagged).
pub fn keep_old_trust(
    binding: &PodIdentityBinding,
    namespace: &str,
    config: &OperatorConfig,
    desired: &mut DesiredState,
    from: Mechanism,
) {
    let status = binding.status.as_ref();
    let service_account = status
        .and_then(|s| s.service_account_name.as_deref())
        .unwrap_or(&binding.spec.service_account_name);
    let trust = match from {
        Mechanism::Irsa => MechanismTrust::Irsa { service_account },
        Mechanism::PodIdentity => MechanismTrust::PodIdentity {
            service_account,
            session_tags: !status
                .and_then(|s| s.association.as_ref())
                .is_some_and(|a| a.disable_session_tags),
        },
    };
    desired.trusting_also(mechanism_trust(namespace, &binding.spec, config, trust));
}

/// The role's trust as a pass (or the drift sweep) should find it: the old mechanism's
/// statement kept while a migration is recorded and not finishing.
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
        keep_old_trust(binding, namespace, config, desired, migration.from);
    }
}

fn pod_use(mechanism: Mechanism) -> PodUse {
    match mechanism {
        Mechanism::Irsa => PodUse::Irsa,
        Mechanism::PodIdentity => PodUse::PodIdentity,
    }
}

/// Running pods of the ServiceAccount that still use `from` (for IRSA: with `role_arn`).
pub async fn pods_on(
    ctx: &Context,
    namespace: &str,
    service_account: &str,
    from: Mechanism,
    role_arn: &str,
) -> Result<Vec<EarlyPod>, kube::Error> {
    let how = pod_use(from);
    early_pods::survey_where(ctx, namespace, service_account, |pod| {
        uses(pod, how, role_arn, DEFAULT_ANNOTATION_PREFIX)
    })
    .await
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
    const SHOWN: usize = 10;
    let mut names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).take(SHOWN).collect();
    if pods.len() > SHOWN {
        names.push("…");
    }
    let mut note = format!(
        "moving ServiceAccount {service_account} from {} to {}: {} running pod{} still use{} {} \
         (the role trusts both until none do): {}.",
        migration.from,
        migration.to,
        pods.len(),
        if pods.len() == 1 { "" } else { "s" },
        if pods.len() == 1 { "s" } else { "" },
        migration.from,
        names.join(", ")
    );
    match restarts {
        Some(done) => {
            if !done.restarted.is_empty() {
                note.push_str(&format!(" Restarted: {}.", done.restarted.join(", ")));
            }
            if !done.by_hand.is_empty() {
                note.push_str(&format!(
                    " Not owned by a Deployment, StatefulSet or DaemonSet, restart by hand: {}.",
                    done.by_hand.join(", ")
                ));
            }
        }
        None if restarts_allowed => note.push_str(
            " Restart them, or set spec.injection.restartPods: true to have their workloads restarted.",
        ),
        None => note.push_str(
            " Restart them (spec.injection.restartPods needs the operator's allowPodRestarts).",
        ),
    }
    note
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
}
