//! Admission of PodIdentityBindings (the `/validate-bindings` route): a binding the
//! operator would refuse is refused at `kubectl apply`, with the message its status would
//! carry; and a binding asking for a credentials Secret is admitted only from someone who
//! may create Secrets in its namespace, since the operator writes that Secret on the
//! author's behalf. Only a change of the spec is judged: the operator's own writes
//! (finalizers, deletion) and unchanged re-applies always pass.

use std::sync::Arc;

use futures::future::BoxFuture;
pub use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use podidentity_api::config::OperatorConfig;
use podidentity_api::config::{ACCOUNT_PLACEHOLDER, REGION_PLACEHOLDER};
use podidentity_api::{PodIdentityBinding, annotations::FROM_SERVICE_ACCOUNT_LABEL};
use podidentity_iam::{BindingRef, desired_state_under};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::admission::{NotAReview, Response, ReviewResponse};
use crate::policies::NamespaceRules;

/// Asks the API server whether a user may create Secrets in a namespace.
pub trait SecretRights: Send + Sync {
    fn may_create_secrets<'a>(
        &'a self,
        user: &'a UserInfo,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<bool, String>>;
}

/// SubjectAccessReview through the API server.
pub struct SubjectAccessReviews(pub kube::Client);

impl SecretRights for SubjectAccessReviews {
    fn may_create_secrets<'a>(
        &'a self,
        user: &'a UserInfo,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: user.username.clone(),
                    uid: user.uid.clone(),
                    groups: user.groups.clone(),
                    extra: user.extra.clone(),
                    resource_attributes: Some(ResourceAttributes {
                        namespace: Some(namespace.to_string()),
                        verb: Some("create".into()),
                        resource: Some("secrets".into()),
                        ..ResourceAttributes::default()
                    }),
                    ..SubjectAccessReviewSpec::default()
                },
                ..SubjectAccessReview::default()
            };
            let api: Api<SubjectAccessReview> = Api::all(self.0.clone());
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|err| err.to_string())?;
            Ok(answer.status.is_some_and(|status| status.allowed))
        })
    }
}

/// What judges a binding at admission.
pub struct BindingAdmission {
    /// The operator's configuration and the rules per namespace (its PodIdentityPolicies
    /// too): refusals the controller would make. `None` judges only the credentials
    /// Secret right.
    pub operator: Option<(OperatorConfig, NamespaceRules)>,
    pub rights: Arc<dyn SecretRights>,
    /// The controller's user (`system:serviceaccount:<namespace>:<name>`): the bindings it
    /// makes from annotated ServiceAccounts report refusals in their status, so their
    /// creation is not refused. A label anyone can set never exempts a binding.
    pub controller_user: Option<String>,
}

/// The AdmissionReview as read, the objects kept as raw JSON until read as bindings.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a> {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(borrow)]
    request: Option<RequestIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<'a> {
    uid: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    user_info: UserInfo,
    #[serde(default, borrow)]
    object: Option<&'a RawValue>,
    #[serde(default, borrow)]
    old_object: Option<&'a RawValue>,
}

impl BindingAdmission {
    /// Handles one AdmissionReview body.
    pub async fn review(&self, body: &[u8]) -> Result<ReviewResponse, NotAReview> {
        let review: ReviewIn<'_> =
            serde_json::from_slice(body).map_err(|err| NotAReview(err.to_string()))?;
        let request = review
            .request
            .ok_or_else(|| NotAReview("the request is missing".into()))?;
        let response = self.respond(&request).await;
        Ok(ReviewResponse::answering(
            review.api_version.as_deref(),
            response,
        ))
    }

    async fn respond(&self, request: &RequestIn<'_>) -> Response {
        let uid = request.uid.as_str();
        if !matches!(request.operation.as_str(), "CREATE" | "UPDATE") {
            return Response::allow(uid);
        }
        // A binding this webhook cannot read (a newer schema) is the API server's to judge.
        let read = |raw: Option<&RawValue>| {
            raw.and_then(|raw| serde_json::from_str::<PodIdentityBinding>(raw.get()).ok())
        };
        let Some(binding) = read(request.object) else {
            return Response::allow(uid);
        };
        let old = read(request.old_object);
        if binding.metadata.deletion_timestamp.is_some()
            || old.as_ref().is_some_and(|old| old.spec == binding.spec)
        {
            return Response::allow(uid);
        }
        let namespace = request
            .namespace
            .clone()
            .or(binding.metadata.namespace.clone())
            .unwrap_or_default();

        // Bindings the controller makes from annotated ServiceAccounts report refusals in
        // their status (and on the ServiceAccount); refusing their creation would hide it.
        // Made by the controller itself, that is: the label alone is anyone's to set.
        let made_from_annotations = binding
            .metadata
            .labels
            .as_ref()
            .is_some_and(|labels| labels.contains_key(FROM_SERVICE_ACCOUNT_LABEL))
            && self.controller_user.is_some()
            && request.user_info.username == self.controller_user;
        if let Some((operator, rules)) = &self.operator
            && !made_from_annotations
        {
            let mut namespace_rules = rules.guardrails_for(&namespace).rules_for(&namespace);
            // A policy pattern with `${account}` or `${region}` the webhook has no value
            // for (the controller learns them from AWS) is the controller's to judge: the
            // webhook judges without it. Fewer policies only allow more, so what is refused
            // here the controller refuses too.
            namespace_rules.policies.retain(|p| {
                !p.allowed_resources
                    .iter()
                    .chain(&p.role_name_override)
                    .any(|pattern| {
                        pattern.contains(ACCOUNT_PLACEHOLDER)
                            || pattern.contains(REGION_PLACEHOLDER)
                    })
            });
            if let Err(refusal) = desired_state_under(
                BindingRef::of(&namespace, &binding),
                &binding.spec,
                operator,
                &namespace_rules,
            ) {
                return Response::deny(uid, refusal.to_string());
            }
        }

        let secret = binding.spec.credentials_secret.as_ref().map(|s| &s.name);
        let old_secret = old
            .as_ref()
            .and_then(|old| old.spec.credentials_secret.as_ref().map(|s| &s.name));
        if let Some(secret) = secret
            && old_secret != Some(secret)
        {
            let user = &request.user_info;
            match self.rights.may_create_secrets(user, &namespace).await {
                Ok(true) => {}
                Ok(false) => {
                    return Response::deny(
                        uid,
                        format!(
                            "binding refused: spec.credentialsSecret.name: {} may not create \
                             Secrets in namespace {namespace}, and the operator would write \
                             Secret {secret} on the author's behalf: ask for that right, or \
                             remove spec.credentialsSecret",
                            user.username.as_deref().unwrap_or_default()
                        ),
                    );
                }
                Err(err) => {
                    return Response::deny(
                        uid,
                        format!(
                            "binding refused: spec.credentialsSecret.name: cannot tell whether \
                             {} may create Secrets in namespace {namespace} \
                             (SubjectAccessReview failed: {err}); try again",
                            user.username.as_deref().unwrap_or_default()
                        ),
                    );
                }
            }
        }
        Response::allow(uid)
    }
}
