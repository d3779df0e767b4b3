//! The cluster's quota of EKS Pod Identity associations (5,000, which EKS does not raise;
//! `eks.maxAssociations` may set less), against the count `association_count` keeps. A
//! binding whose association would be past the quota is refused before any call is made
//! for it.

use std::time::Duration;

use kube::runtime::controller::Action;
use podidentity_api::PodIdentityBinding;
use podidentity_api::conditions::reason;
use podidentity_iam::build::DesiredState;

use super::conditions::Assessment;
use super::report::{Found, Note, recorded_role};
use crate::context::Context;
use crate::error::Error;

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
}
