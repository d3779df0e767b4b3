//! The EKS Pod Identity association of a binding in Pod Identity mode: one per cluster,
//! namespace and ServiceAccount (EKS allows no second). Made when missing, its options
//! put right in place, adopted when it exists for that ServiceAccount with this binding's
//! role, and never touched when it names another role or an AWS service owns it (an EKS
//! add-on's): that is a conflict the status reports, with no write to it.

use std::collections::BTreeMap;

use kube::ResourceExt;
use podidentity_api::{AssociationStatus, PodIdentityBinding};
use podidentity_aws::eks::{
    Association, AssociationApi, AssociationKey, AssociationOptions, NewAssociation,
};
use podidentity_aws::{AwsError, ErrorKind};
use podidentity_iam::build::DesiredAssociation;

use super::conditions::AssociationState;
use crate::context::Context;
use crate::error::Error;

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
        disable_session_tags: association.options.disable_session_tags,
        target_role_arn: association.options.target_role_arn.clone(),
    }
}

/// Whether the association carries this binding's ownership tags (it made it).
fn tagged_ours(existing: &Association, ownership: &BTreeMap<String, String>) -> bool {
    !ownership.is_empty()
        && ownership
            .iter()
            .all(|(key, value)| existing.tags.get(key) == Some(value))
}

/// Whether two associations' options are the same, session policies compared as JSON
/// (EKS may give a document back formatted otherwise).
fn same_options(a: &AssociationOptions, b: &AssociationOptions) -> bool {
    let policy = |p: &Option<String>| {
        p.as_deref().map(|text| {
            serde_json::from_str::<serde_json::Value>(text).unwrap_or_else(|_| text.into())
        })
    };
    a.role_arn == b.role_arn
        && a.target_role_arn == b.target_role_arn
        && a.disable_session_tags == b.disable_session_tags
        && policy(&a.policy) == policy(&b.policy)
}

/// Why an existing association is not ours to change, if it is not: an AWS service owns
/// it, or it is neither tagged as this binding's nor names its role. One tagged as ours
/// that names another role is ours all the same (the role's name or path changed).
fn foreign(
    existing: &Association,
    role_arn: &str,
    ownership: &BTreeMap<String, String>,
) -> Option<String> {
    if let Some(owner) = &existing.owner_arn {
        return Some(format!("it is owned by {owner}"));
    }
    if tagged_ours(existing, ownership) {
        return None;
    }
    (existing.options.role_arn != role_arn).then(|| {
        format!(
            "it names role {}, not this binding's {role_arn}",
            existing.options.role_arn
        )
    })
}

/// What EKS has: the association of the ServiceAccount (the one the status records if
/// it is still that ServiceAccount's, else the one EKS lists for it), and the recorded
/// one when it is another ServiceAccount's (the spec named another since).
async fn existing(
    api: &dyn AssociationApi,
    binding: &PodIdentityBinding,
    key: &AssociationKey,
) -> Result<(Option<Association>, Option<Association>), AwsError> {
    let recorded = binding.status.as_ref().and_then(|s| s.association.as_ref());
    let mut elsewhere = None;
    if let Some(recorded) = recorded
        && let Some(found) = api.describe(&key.cluster, &recorded.id).await?
    {
        if found.namespace == key.namespace && found.service_account == key.service_account {
            return Ok((Some(found), None));
        }
        elsewhere = Some(found);
    }
    for id in api.find(key).await? {
        if let Some(found) = api.describe(&key.cluster, &id).await? {
            return Ok((Some(found), elsewhere));
        }
    }
    Ok((None, elsewhere))
}

/// Brings an existing association in line, or says why it is not ours.
async fn converge(
    api: &dyn AssociationApi,
    existing: Association,
    options: &AssociationOptions,
    cluster: &str,
    ownership: &BTreeMap<String, String>,
) -> Result<AssociationState, AwsError> {
    if let Some(why) = foreign(&existing, &options.role_arn, ownership) {
        return Ok(AssociationState::Conflict {
            id: existing.id,
            why,
        });
    }
    if same_options(&existing.options, options) {
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
    tags: &BTreeMap<String, String>,
) -> Result<AssociationState, Error> {
    let api = client(ctx, "CreatePodIdentityAssociation")?;
    let key = key(desired);
    let options = wanted(desired, role_arn);
    let ownership = ownership_of(tags);
    let (found, elsewhere) = existing(api, binding, &key).await?;
    // The one the binding made for the ServiceAccount it named before: it would go on
    // giving that ServiceAccount's pods the role.
    if let Some(old) = elsewhere
        && foreign(&old, role_arn, &ownership).is_none()
    {
        api.delete(&key.cluster, &old.id).await?;
        ctx.association_count.removed();
        show_count(ctx);
    }
    if let Some(found) = found {
        return Ok(converge(api, found, &options, &key.cluster, &ownership).await?);
    }
    let new = NewAssociation {
        key: key.clone(),
        options: options.clone(),
        tags: tags.clone(),
    };
    match api.create(&new).await {
        Ok(made) => {
            ctx.association_count.made();
            show_count(ctx);
            Ok(AssociationState::Kept(status_of(&made)))
        }
        // Made meanwhile (by another writer, or by a call whose answer was lost).
        Err(err) if err.kind == ErrorKind::AlreadyExists => {
            match existing(api, binding, &key).await?.0 {
                Some(found) => Ok(converge(api, found, &options, &key.cluster, &ownership).await?),
                None => Err(err.into()),
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// The count as this process knows it, in `/metrics`.
fn show_count(ctx: &Context) {
    if let Some(n) = ctx.association_count.last() {
        ctx.metrics
            .eks_associations
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// Where the binding's association is: its ServiceAccount as last bound.
pub fn bound_association_key(
    ctx: &Context,
    binding: &PodIdentityBinding,
    namespace: &str,
) -> AssociationKey {
    AssociationKey {
        cluster: ctx.config.eks_cluster_name().to_string(),
        namespace: namespace.to_string(),
        service_account: super::service_account::bound_service_account(binding),
    }
}

/// On deletion (`Delete`) of a binding that used Pod Identity: its association goes, if it
/// names the binding's role. Returns whether one was deleted.
pub async fn delete_association(
    ctx: &Context,
    binding: &PodIdentityBinding,
    key: &AssociationKey,
    role_arn: &str,
    ownership: &BTreeMap<String, String>,
) -> Result<bool, Error> {
    let api = client(ctx, "DeletePodIdentityAssociation")?;
    let (found, elsewhere) = existing(api, binding, key).await?;
    let mut deleted = false;
    for found in found.into_iter().chain(elsewhere) {
        if foreign(&found, role_arn, ownership).is_some() {
            tracing::info!(binding = %binding.name_any(), association = %found.id, "an association of the ServiceAccount is not this binding's; left alone");
            continue;
        }
        api.delete(&key.cluster, &found.id).await?;
        ctx.association_count.removed();
        show_count(ctx);
        deleted = true;
    }
    Ok(deleted)
}

/// The ownership tags among a role's tags (what its association is tagged with too).
pub fn ownership_of(tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    use podidentity_api::annotations::{TAG_BINDING, TAG_CLUSTER, TAG_CLUSTER_UID, TAG_NAMESPACE};
    tags.iter()
        .filter(|(key, _)| {
            [TAG_CLUSTER, TAG_NAMESPACE, TAG_BINDING, TAG_CLUSTER_UID].contains(&key.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
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
        let none = BTreeMap::new();
        assert_eq!(foreign(&association(ours, None), ours, &none), None);
        let other = foreign(
            &association("arn:aws:iam::123456789012:role/theirs", None),
            ours,
            &none,
        );
        assert!(other.is_some_and(|why| why.contains("role/theirs")));
        let addon = foreign(
            &association(
                ours,
                Some("arn:aws:eks:us-east-1:123456789012:addon/c/vpc-cni"),
            ),
            ours,
            &none,
        );
        assert!(addon.is_some_and(|why| why.contains("addon/c/vpc-cni")));
        // Tagged as this binding's, it is ours even naming the role it had before.
        let ownership = BTreeMap::from([("podidentity.io/binding".to_string(), "b".to_string())]);
        let mut renamed = association("arn:aws:iam::123456789012:role/old-name", None);
        renamed.tags = ownership.clone();
        assert_eq!(foreign(&renamed, ours, &ownership), None);
        // Another binding's tags do not make it ours.
        renamed.tags =
            BTreeMap::from([("podidentity.io/binding".to_string(), "other".to_string())]);
        assert!(foreign(&renamed, ours, &ownership).is_some());
    }

    #[test]
    fn session_policies_compare_as_documents() {
        let with = |policy: &str| AssociationOptions {
            role_arn: "r".into(),
            policy: Some(policy.into()),
            ..Default::default()
        };
        assert!(same_options(
            &with(r#"{"Version":"2012-10-17","Statement":[]}"#),
            &with("{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": []\n}")
        ));
        assert!(!same_options(
            &with(r#"{"Statement":[1]}"#),
            &with(r#"{"Statement":[2]}"#)
        ));
    }
}
