//! The EKS Pod Identity association of a binding in Pod Identity mode: one per cluster,
//! namespace and ServiceAccount (EKS allows no second). Made when missing, its options
//! put right in place, adopted when it exists for that ServiceAccount with this binding's
//! role, and never touched when it names another role or an AWS service owns it (an EKS
//! add-on's): that is a conflict the status reports, with no write to it.

use kube::ResourceExt;
use podidentity_api::{AssociationStatus, PodIdentityBinding};
use podidentity_aws::eks::{
    Association, AssociationApi, AssociationKey, AssociationOptions, NewAssociation,
};
use podidentity_aws::{AwsError, ErrorKind};
use podidentity_iam::build::DesiredAssociation;

use crate::context::Context;
use crate::error::Error;

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

fn client<'a>(ctx: &'a Context, operation: &'static str) -> Result<&'a dyn AssociationApi, Error> {
    ctx.associations.as_deref().ok_or_else(|| {
        Error::Aws(AwsError::new(
            ErrorKind::Other,
            operation,
            "this operator has no EKS client, so it cannot keep Pod Identity associations",
        ))
    })
}

fn key(desired: &DesiredAssociation) -> AssociationKey {
    AssociationKey {
        cluster: desired.cluster.clone(),
        namespace: desired.namespace.clone(),
        service_account: desired.service_account.clone(),
    }
}

/// The options the association should have, for the role IAM named.
fn wanted(desired: &DesiredAssociation, role_arn: &str) -> AssociationOptions {
    AssociationOptions {
        role_arn: role_arn.to_string(),
        target_role_arn: desired.target_role_arn.clone(),
        disable_session_tags: desired.disable_session_tags,
        policy: desired.policy.as_ref().map(|p| p.minified()),
    }
}

fn status_of(association: &Association) -> AssociationStatus {
    AssociationStatus {
        id: association.id.clone(),
        arn: association.arn.clone(),
    }
}

/// Why an existing association is not ours to change, if it is not.
fn foreign(existing: &Association, role_arn: &str) -> Option<String> {
    if let Some(owner) = &existing.owner_arn {
        return Some(format!("it is owned by {owner}"));
    }
    (existing.options.role_arn != role_arn).then(|| {
        format!(
            "it names role {}, not this binding's {role_arn}",
            existing.options.role_arn
        )
    })
}

/// The association of the ServiceAccount as EKS has it: the one the status records if it
/// is still that ServiceAccount's, else the one EKS lists for it.
async fn existing(
    api: &dyn AssociationApi,
    binding: &PodIdentityBinding,
    key: &AssociationKey,
) -> Result<Option<Association>, AwsError> {
    let recorded = binding.status.as_ref().and_then(|s| s.association.as_ref());
    if let Some(recorded) = recorded
        && let Some(found) = api.describe(&key.cluster, &recorded.id).await?
        && found.namespace == key.namespace
        && found.service_account == key.service_account
    {
        return Ok(Some(found));
    }
    for id in api.find(key).await? {
        if let Some(found) = api.describe(&key.cluster, &id).await? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Brings an existing association in line, or says why it is not ours.
async fn converge(
    api: &dyn AssociationApi,
    existing: Association,
    options: &AssociationOptions,
    cluster: &str,
) -> Result<AssociationState, AwsError> {
    if let Some(why) = foreign(&existing, &options.role_arn) {
        return Ok(AssociationState::Conflict {
            id: existing.id,
            why,
        });
    }
    if &existing.options == options {
        return Ok(AssociationState::Kept(status_of(&existing)));
    }
    let updated = api.update(cluster, &existing.id, options).await?;
    Ok(AssociationState::Kept(status_of(&updated)))
}

/// Makes the association what the binding asks for (`role_arn`: the role as IAM named
/// it). Reads first: a pass whose status records the association describes it, one that
/// does not lists the ServiceAccount's; only a missing association is created.
pub async fn ensure_association(
    ctx: &Context,
    binding: &PodIdentityBinding,
    desired: &DesiredAssociation,
    role_arn: &str,
    tags: &std::collections::BTreeMap<String, String>,
) -> Result<AssociationState, Error> {
    let api = client(ctx, "CreatePodIdentityAssociation")?;
    let key = key(desired);
    let options = wanted(desired, role_arn);
    if let Some(found) = existing(api, binding, &key).await? {
        return Ok(converge(api, found, &options, &key.cluster).await?);
    }
    let new = NewAssociation {
        key: key.clone(),
        options: options.clone(),
        tags: tags.clone(),
    };
    match api.create(&new).await {
        Ok(made) => Ok(AssociationState::Kept(status_of(&made))),
        // Made meanwhile (by another writer, or by a call whose answer was lost).
        Err(err) if err.kind == ErrorKind::AlreadyExists => {
            match existing(api, binding, &key).await? {
                Some(found) => Ok(converge(api, found, &options, &key.cluster).await?),
                None => Err(err.into()),
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// On deletion (`Delete`) of a binding that used Pod Identity: its association goes, if it
/// names the binding's role. Returns whether one was deleted.
pub async fn delete_association(
    ctx: &Context,
    binding: &PodIdentityBinding,
    key: &AssociationKey,
    role_arn: Option<&str>,
) -> Result<bool, Error> {
    let api = client(ctx, "DeletePodIdentityAssociation")?;
    let Some(found) = existing(api, binding, key).await? else {
        return Ok(false);
    };
    let ours =
        found.owner_arn.is_none() && role_arn.is_some_and(|arn| found.options.role_arn == arn);
    if !ours {
        tracing::info!(binding = %binding.name_any(), association = %found.id, "the ServiceAccount's association is not this binding's; left alone");
        return Ok(false);
    }
    api.delete(&key.cluster, &found.id).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn association(role: &str, owner: Option<&str>) -> Association {
        Association {
            id: "a-1".into(),
            arn: "arn:aws:eks:us-east-1:123456789012:podidentityassociation/c/a-1".into(),
            namespace: "shop".into(),
            service_account: "orders".into(),
            options: AssociationOptions {
                role_arn: role.into(),
                ..Default::default()
            },
            owner_arn: owner.map(String::from),
            tags: Default::default(),
        }
    }

    #[test]
    fn an_association_of_another_role_or_owned_by_a_service_is_foreign() {
        let ours = "arn:aws:iam::123456789012:role/ours";
        assert_eq!(foreign(&association(ours, None), ours), None);
        let other = foreign(
            &association("arn:aws:iam::123456789012:role/theirs", None),
            ours,
        );
        assert!(other.is_some_and(|why| why.contains("role/theirs")));
        let addon = foreign(
            &association(
                ours,
                Some("arn:aws:eks:us-east-1:123456789012:addon/c/vpc-cni"),
            ),
            ours,
        );
        assert!(addon.is_some_and(|why| why.contains("addon/c/vpc-cni")));
    }
}
