//! The aws-sdk-eks adapter: the EKS Pod Identity association calls, beside the IAM adapter
//! and with the same settings, error kinds and write fence.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use crate::error::{AwsError, ErrorKind};
use crate::sdk::{AwsSettings, Fence, sdk_config, sorted};

/// What an association grants, and how: everything Update can change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssociationOptions {
    pub role_arn: String,
    /// The role the pod's credentials are for, assumed from `role_arn` (role chaining).
    pub target_role_arn: Option<String>,
    pub disable_session_tags: bool,
    /// A session policy (JSON), narrowing what the session may do.
    pub policy: Option<String>,
}

/// Where an association is: one per cluster, namespace and ServiceAccount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssociationKey {
    pub cluster: String,
    pub namespace: String,
    pub service_account: String,
}

/// What CreatePodIdentityAssociation needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAssociation {
    pub key: AssociationKey,
    pub options: AssociationOptions,
    pub tags: BTreeMap<String, String>,
}

/// An association as EKS describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Association {
    pub id: String,
    pub arn: String,
    pub namespace: String,
    pub service_account: String,
    pub options: AssociationOptions,
    /// Set when another AWS service (an EKS add-on) owns it.
    pub owner_arn: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// Anything that keeps EKS Pod Identity associations (the SDK adapter).
pub trait AssociationApi: Send + Sync {
    fn create<'a>(
        &'a self,
        new: &'a NewAssociation,
    ) -> BoxFuture<'a, Result<Association, AwsError>>;
    /// `None` when there is no such association.
    fn describe<'a>(
        &'a self,
        cluster: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Association>, AwsError>>;
    fn update<'a>(
        &'a self,
        cluster: &'a str,
        id: &'a str,
        options: &'a AssociationOptions,
    ) -> BoxFuture<'a, Result<Association, AwsError>>;
    /// Gone already counts as deleted.
    fn delete<'a>(&'a self, cluster: &'a str, id: &'a str) -> BoxFuture<'a, Result<(), AwsError>>;
    /// The ids of the associations for that ServiceAccount (at most one, EKS says).
    fn find<'a>(&'a self, key: &'a AssociationKey) -> BoxFuture<'a, Result<Vec<String>, AwsError>>;
    /// How many associations the cluster has (its quota is 5,000, not raisable).
    fn count<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<usize, AwsError>>;
    /// The ids of every association of the cluster (pages of 100).
    fn ids<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<Vec<String>, AwsError>>;
}

/// EKS's reads are GET.
fn is_eks_write(request: &aws_smithy_runtime_api::http::Request) -> bool {
    request.method() != "GET"
}

pub struct SdkEks {
    eks: aws_sdk_eks::Client,
}

impl SdkEks {
    pub async fn connect(settings: &AwsSettings) -> Self {
        Self::from_config(&sdk_config(settings).await, settings)
    }

    /// The adapter on an SDK configuration already loaded (IAM's).
    pub fn from_config(shared: &aws_config::SdkConfig, settings: &AwsSettings) -> Self {
        let mut eks = aws_sdk_eks::config::Builder::from(shared);
        if let Some(gate) = &settings.write_gate {
            eks = eks.interceptor(Fence {
                gate: gate.clone(),
                is_write: is_eks_write,
            });
        }
        Self {
            eks: aws_sdk_eks::Client::from_conf(eks.build()),
        }
    }

    async fn create_association(&self, new: &NewAssociation) -> Result<Association, AwsError> {
        let options = &new.options;
        let out = self
            .eks
            .create_pod_identity_association()
            .cluster_name(&new.key.cluster)
            .namespace(&new.key.namespace)
            .service_account(&new.key.service_account)
            .role_arn(&options.role_arn)
            .set_target_role_arn(options.target_role_arn.clone())
            .disable_session_tags(options.disable_session_tags)
            .set_policy(options.policy.clone())
            // EKS refuses an empty tag map (1 to 50 tags).
            .set_tags((!new.tags.is_empty()).then(|| new.tags.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| sorted("CreatePodIdentityAssociation", e))?;
        described("CreatePodIdentityAssociation", out.association)
    }

    async fn describe_association(
        &self,
        cluster: &str,
        id: &str,
    ) -> Result<Option<Association>, AwsError> {
        match self
            .eks
            .describe_pod_identity_association()
            .cluster_name(cluster)
            .association_id(id)
            .send()
            .await
        {
            Ok(out) => described("DescribePodIdentityAssociation", out.association).map(Some),
            Err(err) => {
                let err = sorted("DescribePodIdentityAssociation", err);
                match err.kind {
                    ErrorKind::NotFound => Ok(None),
                    _ => Err(err),
                }
            }
        }
    }

    async fn update_association(
        &self,
        cluster: &str,
        id: &str,
        options: &AssociationOptions,
    ) -> Result<Association, AwsError> {
        // EKS has no "unset": an empty string takes the target role or policy away.
        let out = self
            .eks
            .update_pod_identity_association()
            .cluster_name(cluster)
            .association_id(id)
            .role_arn(&options.role_arn)
            .target_role_arn(options.target_role_arn.clone().unwrap_or_default())
            .disable_session_tags(options.disable_session_tags)
            .policy(options.policy.clone().unwrap_or_default())
            .send()
            .await
            .map_err(|e| sorted("UpdatePodIdentityAssociation", e))?;
        described("UpdatePodIdentityAssociation", out.association)
    }

    async fn delete_association(&self, cluster: &str, id: &str) -> Result<(), AwsError> {
        match self
            .eks
            .delete_pod_identity_association()
            .cluster_name(cluster)
            .association_id(id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => {
                let err = sorted("DeletePodIdentityAssociation", err);
                match err.kind {
                    ErrorKind::NotFound => Ok(()),
                    _ => Err(err),
                }
            }
        }
    }

    /// Every association summary of the cluster, narrowed to a ServiceAccount if given.
    async fn list(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        service_account: Option<&str>,
    ) -> Result<Vec<String>, AwsError> {
        let mut ids = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .eks
                .list_pod_identity_associations()
                .cluster_name(cluster)
                .set_namespace(namespace.map(String::from))
                .set_service_account(service_account.map(String::from))
                .max_results(100)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| sorted("ListPodIdentityAssociations", e))?;
            ids.extend(
                out.associations()
                    .iter()
                    .filter_map(|summary| summary.association_id().map(String::from)),
            );
            match out.next_token {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => return Ok(ids),
            }
        }
    }
}

/// The association an answer carries; an answer without one is malformed.
fn described(
    operation: &'static str,
    association: Option<aws_sdk_eks::types::PodIdentityAssociation>,
) -> Result<Association, AwsError> {
    let association = association.ok_or_else(|| {
        AwsError::new(
            ErrorKind::Other,
            operation,
            "the answer carries no association",
        )
    })?;
    let text = |value: Option<&str>| value.unwrap_or_default().to_string();
    // EKS answers an unset target role or policy as absent or as "".
    let set = |value: Option<&str>| value.filter(|v| !v.is_empty()).map(String::from);
    Ok(Association {
        id: text(association.association_id()),
        arn: text(association.association_arn()),
        namespace: text(association.namespace()),
        service_account: text(association.service_account()),
        options: AssociationOptions {
            role_arn: text(association.role_arn()),
            target_role_arn: set(association.target_role_arn()),
            disable_session_tags: association.disable_session_tags().unwrap_or(false),
            policy: set(association.policy()),
        },
        owner_arn: set(association.owner_arn()),
        tags: association
            .tags()
            .map(|tags| tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    })
}

impl AssociationApi for SdkEks {
    fn create<'a>(
        &'a self,
        new: &'a NewAssociation,
    ) -> BoxFuture<'a, Result<Association, AwsError>> {
        Box::pin(self.create_association(new))
    }
    fn describe<'a>(
        &'a self,
        cluster: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Association>, AwsError>> {
        Box::pin(self.describe_association(cluster, id))
    }
    fn update<'a>(
        &'a self,
        cluster: &'a str,
        id: &'a str,
        options: &'a AssociationOptions,
    ) -> BoxFuture<'a, Result<Association, AwsError>> {
        Box::pin(self.update_association(cluster, id, options))
    }
    fn delete<'a>(&'a self, cluster: &'a str, id: &'a str) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(self.delete_association(cluster, id))
    }
    fn find<'a>(&'a self, key: &'a AssociationKey) -> BoxFuture<'a, Result<Vec<String>, AwsError>> {
        Box::pin(self.list(
            &key.cluster,
            Some(&key.namespace),
            Some(&key.service_account),
        ))
    }
    fn count<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<usize, AwsError>> {
        Box::pin(async move { Ok(self.list(cluster, None, None).await?.len()) })
    }
    fn ids<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<Vec<String>, AwsError>> {
        Box::pin(self.list(cluster, None, None))
    }
}
