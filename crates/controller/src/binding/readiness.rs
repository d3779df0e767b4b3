//! What a pass checks once the role exists and the ServiceAccount carries it: the
//! assumable gate (with `verifyAssumable`), and the pods that started before the
//! ServiceAccount was annotated (counted, named, and with `restartPods` restarted).

use kube::runtime::events::EventType;
use podidentity_api::PodIdentityBinding;
use podidentity_api::conditions::reason;

use super::memory::RoleFacts;
use super::report::{Note, When};
use crate::binding::assumable::{self, Assumability};
use crate::binding::conditions::Synced;
use crate::binding::early_pods::{self, EarlyPod, Restarts};
use crate::context::Context;
use crate::error::Error;

/// Pods found running without the role, to be reported once the status is written.
pub struct EarlyFound {
    pods: Vec<EarlyPod>,
    restarts: Option<Restarts>,
    role_arn: String,
}

/// Fills in `synced.assumable` and `synced.pods_needing_restart`; returns what to report.
pub async fn check(
    ctx: &Context,
    binding: &PodIdentityBinding,
    namespace: &str,
    role: &RoleFacts,
    role_changed: bool,
    count_early: bool,
    synced: &mut Synced,
) -> Result<Option<EarlyFound>, Error> {
    let account = &binding.spec.service_account_name;
    if ctx.config.verify_assumable {
        let generation = binding.metadata.generation;
        let proven =
            !role_changed && assumable::proven(binding.status.as_ref(), generation, &role.arn);
        synced.assumable = Some(if proven {
            Assumability::Assumed
        } else {
            assumable::verify(ctx, namespace, account, &binding.spec.audience, &role.arn).await
        });
    }
    if !synced.is_ready() || !count_early {
        return Ok(None);
    }
    let pods = match early_pods::survey(ctx, namespace, account, &role.arn).await {
        Ok(pods) => pods,
        Err(err) => {
            // Counting is a courtesy: a failure to list never holds the binding back.
            tracing::warn!(%namespace, service_account = %account, error = %err, "cannot list the ServiceAccount's pods");
            return Ok(None);
        }
    };
    synced.pods_needing_restart = Some(pods.len());
    let before = binding.status.as_ref().and_then(|s| s.pods_needing_restart);
    if pods.is_empty() {
        return Ok(None);
    }
    let restarts = if binding.spec.injection.restart_pods && ctx.config.allow_pod_restarts {
        Some(early_pods::restart(ctx, namespace, &pods, &role.arn).await?)
    } else {
        None
    };
    let restarted = restarts.as_ref().is_some_and(|r| !r.restarted.is_empty());
    let count = i64::try_from(pods.len()).unwrap_or(i64::MAX);
    if before == Some(count) && !restarted {
        // Said already: the Event repeats only when something changed.
        return Ok(None);
    }
    Ok(Some(EarlyFound {
        pods,
        restarts,
        role_arn: role.arn.clone(),
    }))
}

/// The Warning Event naming the pods (and what was restarted).
pub fn note(ctx: &Context, binding: &PodIdentityBinding, found: EarlyFound) -> Note {
    let message = early_pods::warning(
        &found.pods,
        &binding.spec.service_account_name,
        &found.role_arn,
        found.restarts.as_ref(),
        ctx.config.allow_pod_restarts,
    );
    Note::new(
        EventType::Warning,
        reason::PODS_NEED_RESTART,
        message,
        When::StatusWritten,
    )
}
