//! The assumable gate (`verifyAssumable`): before a binding is Ready, the controller asks
//! the API server for a short-lived token of its ServiceAccount and exchanges it with STS
//! for the role, exactly as a pod's SDK would. IAM is eventually consistent, so a refusal
//! right after a change is retried with backoff. The credentials STS returns are dropped
//! in the AWS adapter; the token lives only for this call.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use podidentity_api::PodIdentityBindingStatus;
use podidentity_api::conditions;
use podidentity_aws::{Iam, WebIdentityToken};

pub use super::conditions::Assumability;
use crate::context::Context;

/// The shortest lifetime the API server grants a requested token.
const TOKEN_SECONDS: i64 = 600;
/// What CloudTrail shows for the gate's sessions.
pub const SESSION_NAME: &str = "podidentity-verify";

/// Whether the status already proves this generation's role assumable (so a pass that
/// changed nothing in IAM asks STS nothing).
pub fn proven(
    status: Option<&PodIdentityBindingStatus>,
    generation: Option<i64>,
    role_arn: &str,
) -> bool {
    status.is_some_and(|s| {
        s.role_arn.as_deref() == Some(role_arn)
            && s.conditions.iter().any(|c| {
                c.type_ == conditions::ROLE_ASSUMABLE
                    && c.status == "True"
                    && c.observed_generation == generation
            })
    })
}

/// A token of `namespace/service_account` for `audience`, living the shortest time the API
/// server grants, as the kubelet would project it (`None`: answered without one).
pub async fn service_account_token(
    client: &kube::Client,
    namespace: &str,
    service_account: &str,
    audience: &str,
) -> Result<Option<String>, kube::Error> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.to_string()],
            expiration_seconds: Some(TOKEN_SECONDS),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    let issued = accounts
        .create_token_request(service_account, &PostParams::default(), &request)
        .await?;
    Ok(issued.status.map(|s| s.token))
}

/// Requests a token of `namespace/service_account` for `audience` and exchanges it for
/// `role_arn`.
pub async fn verify(
    ctx: &Context,
    namespace: &str,
    service_account: &str,
    audience: &str,
    role_arn: &str,
) -> Assumability {
    let token = match service_account_token(&ctx.client, namespace, service_account, audience).await
    {
        Ok(Some(token)) => token,
        Ok(None) => {
            return Assumability::NoToken {
                message: "the API server answered the TokenRequest without a token".into(),
            };
        }
        Err(err) => {
            return Assumability::NoToken {
                message: format!(
                    "cannot request a token for ServiceAccount {namespace}/{service_account} \
                     ({err}): the operator needs `create` on serviceaccounts/token, which the \
                     chart grants with verifyAssumable: true"
                ),
            };
        }
    };
    match Iam::new(ctx.iam.as_ref())
        .assume_role_with_web_identity(role_arn, SESSION_NAME, WebIdentityToken(token))
        .await
    {
        Ok(_) => Assumability::Assumed,
        Err(err) => Assumability::NotAssumable {
            message: format!(
                "STS would not exchange a token of ServiceAccount {namespace}/{service_account} \
                 (audience {audience}) for {role_arn}: {err}; retrying with backoff (IAM takes \
                 seconds to apply a change). If it persists, run `podidentity doctor \
                 {namespace}/{service_account}`"
            ),
        },
    }
}
