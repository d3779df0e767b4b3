//! The cluster's quota of EKS Pod Identity associations (5,000, which EKS does not raise;
//! `eks.maxAssociations` may set less). Counted from EKS (every association of the
//! cluster, ours or not) at most once a minute while bindings ask for new ones, and kept
//! current between counts by this process's own creates and deletes. A binding whose
//! association would be past the quota is refused before any call is made for it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use podidentity_api::PodIdentityBinding;
use podidentity_api::conditions::reason;
use podidentity_aws::AwsError;
use podidentity_aws::eks::AssociationApi;
use podidentity_iam::build::DesiredState;

use super::conditions::Assessment;
use super::report::{Found, Note, recorded_role};
use crate::context::Context;
use crate::error::Error;

/// How long a count from EKS stands (this process's own writes keep it current).
const RECOUNT_AFTER: Duration = Duration::from_secs(60);

/// The cluster's association count, shared by every pass of the process.
#[derive(Default)]
pub struct AssociationCount(Mutex<Option<Counted>>);

#[derive(Clone, Copy)]
struct Counted {
    associations: usize,
    at: Instant,
}

impl AssociationCount {
    /// The cluster's associations now: the last count if recent, else counted anew.
    pub async fn current(
        &self,
        api: &dyn AssociationApi,
        cluster: &str,
    ) -> Result<usize, AwsError> {
        if let Some(counted) = self.counted()
            && counted.at.elapsed() < RECOUNT_AFTER
        {
            return Ok(counted.associations);
        }
        let associations = api.count(cluster).await?;
        if let Ok(mut held) = self.0.lock() {
            *held = Some(Counted {
                associations,
                at: Instant::now(),
            });
        }
        Ok(associations)
    }

    /// The last count, if any (for the metrics).
    pub fn last(&self) -> Option<usize> {
        self.counted().map(|c| c.associations)
    }

    fn counted(&self) -> Option<Counted> {
        self.0.lock().ok().and_then(|held| *held)
    }

    /// This process made an association.
    pub fn made(&self) {
        self.adjust(|n| n.saturating_add(1));
    }

    /// This process deleted an association.
    pub fn removed(&self) {
        self.adjust(|n| n.saturating_sub(1));
    }

    fn adjust(&self, change: impl FnOnce(usize) -> usize) {
        if let Ok(mut held) = self.0.lock()
            && let Some(counted) = held.as_mut()
        {
            counted.associations = change(counted.associations);
        }
    }
}

/// Why a binding's new association would be past the quota, if it would.
pub fn over_quota(associations: usize, quota: u32, cluster: &str) -> Option<String> {
    let quota_n = usize::try_from(quota).unwrap_or(usize::MAX);
    (associations >= quota_n).then(|| {
        format!(
            "EKS cluster {cluster} has {associations} Pod Identity associations and may have \
             {quota} (eks.maxAssociations; EKS's quota is 5000 and not raised): this binding's \
             association would be past it, so nothing was made for it; use IRSA for it \
             (spec.identity.mechanism: IRSA) or delete associations no longer needed"
        )
    })
}

/// How often a binding refused for the association quota asks again.
const RECHECK: Duration = Duration::from_secs(30);

/// A binding that needs a new association while the cluster has as many as it may: refused
/// before any call for it, and asked again on the slow schedule (an association deleted
/// elsewhere makes room).
pub async fn past_association_quota(
    ctx: &Context,
    binding: &PodIdentityBinding,
    desired: &DesiredState,
) -> Result<Option<Found>, Error> {
    let recorded = binding
        .status
        .as_ref()
        .is_some_and(|s| s.association.is_some());
    let (Some(wanted), Some(api), false) = (&desired.association, &ctx.associations, recorded)
    else {
        return Ok(None);
    };
    let associations = ctx
        .association_count
        .current(api.as_ref(), &wanted.cluster)
        .await?;
    ctx.metrics
        .eks_associations
        .set(i64::try_from(associations).unwrap_or(i64::MAX));
    let Some(message) = over_quota(
        associations,
        ctx.config.eks_max_associations(),
        &wanted.cluster,
    ) else {
        return Ok(None);
    };
    let note = Note::warning(reason::ASSOCIATION_QUOTA_EXCEEDED, message.clone());
    let assessment = Assessment::Refused {
        reason: reason::ASSOCIATION_QUOTA_EXCEEDED.into(),
        message,
        revoked: false,
    };
    Ok(Some(
        Found::new(assessment, recorded_role(binding))
            .with_event(note)
            .then(Ok(Action::requeue(RECHECK))),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_refuses_the_association_past_it_and_names_the_setting() {
        assert_eq!(over_quota(4_999, 5_000, "prod"), None);
        let refused = over_quota(5_000, 5_000, "prod").unwrap_or_default();
        assert!(
            refused.contains("has 5000 Pod Identity associations"),
            "{refused}"
        );
        assert!(refused.contains("eks.maxAssociations"), "{refused}");
        assert!(over_quota(2, 2, "prod").is_some());
    }

    #[test]
    fn own_writes_keep_the_count_current_between_counts() {
        let count = AssociationCount::default();
        count.made();
        assert_eq!(count.last(), None, "nothing counted yet: nothing to adjust");
        if let Ok(mut held) = count.0.lock() {
            *held = Some(Counted {
                associations: 3,
                at: Instant::now(),
            });
        }
        count.made();
        count.removed();
        count.removed();
        assert_eq!(count.last(), Some(2));
    }
}
