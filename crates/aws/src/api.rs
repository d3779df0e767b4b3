//! The IAM and STS calls the operator makes, as one request enum and one method. Every
//! wrapper (request budget, call counting, fault injection) wraps that one method, and a
//! typed facade (`Iam`) keeps callers readable.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use crate::error::{AwsError, ErrorKind};

/// What CreateRole needs.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRole {
    pub name: String,
    pub path: String,
    pub trust_policy: String,
    pub description: String,
    pub max_session_duration_seconds: i64,
    pub permissions_boundary_arn: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// A role as GetRole returns it, documents URL-decoded.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RoleState {
    pub name: String,
    pub arn: String,
    pub id: String,
    pub path: String,
    pub trust_policy: String,
    pub description: String,
    pub max_session_duration_seconds: i64,
    pub permissions_boundary_arn: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// A role with its permissions, as GetAccountAuthorizationDetails returns it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RoleDetails {
    pub role: RoleState,
    /// Inline policy name → document (URL-decoded).
    pub inline_policies: BTreeMap<String, String>,
    pub attached_policy_arns: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct AuthorizationPage {
    pub roles: Vec<RoleDetails>,
    /// Where the next page starts; `None` on the last page.
    pub next_marker: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum IamRequest {
    CreateRole(NewRole),
    GetRole {
        name: String,
    },
    UpdateAssumeRolePolicy {
        name: String,
        document: String,
    },
    UpdateRole {
        name: String,
        description: String,
        max_session_duration_seconds: i64,
    },
    PutRolePermissionsBoundary {
        name: String,
        arn: String,
    },
    DeleteRolePermissionsBoundary {
        name: String,
    },
    TagRole {
        name: String,
        tags: BTreeMap<String, String>,
    },
    UntagRole {
        name: String,
        keys: Vec<String>,
    },
    PutRolePolicy {
        name: String,
        policy_name: String,
        document: String,
    },
    DeleteRolePolicy {
        name: String,
        policy_name: String,
    },
    ListRolePolicies {
        name: String,
    },
    GetRolePolicy {
        name: String,
        policy_name: String,
    },
    AttachRolePolicy {
        name: String,
        arn: String,
    },
    DetachRolePolicy {
        name: String,
        arn: String,
    },
    ListAttachedRolePolicies {
        name: String,
    },
    /// A managed policy's default version id (what it grants is judged by that version).
    GetPolicy {
        arn: String,
    },
    /// One version of a managed policy: its document.
    GetPolicyVersion {
        arn: String,
        version_id: String,
    },
    ListInstanceProfilesForRole {
        name: String,
    },
    RemoveRoleFromInstanceProfile {
        name: String,
        instance_profile: String,
    },
    DeleteRole {
        name: String,
    },
    /// One page of roles (up to `max_items`), with inline policies, attachments, tags.
    GetAccountAuthorizationDetails {
        marker: Option<String>,
        max_items: i32,
    },
    GetCallerIdentity,
    /// STS: exchanges a ServiceAccount token for the role's credentials, as a pod's SDK
    /// does. Only whether it worked is kept; the credentials are dropped in the adapter.
    AssumeRoleWithWebIdentity {
        role_arn: String,
        session_name: String,
        token: WebIdentityToken,
    },
    /// An IAM OIDC identity provider: its URL, client ids and thumbprints.
    GetOpenIdConnectProvider {
        arn: String,
    },
    /// Answers with the new provider's ARN.
    CreateOpenIdConnectProvider(NewOidcProvider),
    /// Replaces the whole thumbprint list.
    UpdateOpenIdConnectProviderThumbprint {
        arn: String,
        thumbprints: Vec<String>,
    },
    AddClientIdToOpenIdConnectProvider {
        arn: String,
        client_id: String,
    },
    TagOpenIdConnectProvider {
        arn: String,
        tags: BTreeMap<String, String>,
    },
}

/// What CreateOpenIDConnectProvider needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOidcProvider {
    /// The issuer, `https://` included.
    pub url: String,
    pub client_ids: Vec<String>,
    pub thumbprints: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

/// A ServiceAccount token on its way to STS. It grants the role to whoever holds it, so
/// it never shows in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct WebIdentityToken(pub String);

impl std::fmt::Debug for WebIdentityToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebIdentityToken(<{} bytes>)", self.0.len())
    }
}

/// What AssumeRoleWithWebIdentity answered, the credentials left out.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AssumedRole {
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    pub assumed_role_arn: String,
    /// The token's `sub` as STS read it.
    pub subject: String,
}

/// An IAM OIDC identity provider as GetOpenIDConnectProvider returns it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OidcProvider {
    /// Host and path, without `https://` (as IAM stores it).
    pub url: String,
    pub client_ids: Vec<String>,
    pub thumbprints: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

impl IamRequest {
    /// The AWS operation name: the metric label and what faults are scripted against.
    pub fn operation(&self) -> &'static str {
        match self {
            IamRequest::CreateRole(_) => "CreateRole",
            IamRequest::GetRole { .. } => "GetRole",
            IamRequest::UpdateAssumeRolePolicy { .. } => "UpdateAssumeRolePolicy",
            IamRequest::UpdateRole { .. } => "UpdateRole",
            IamRequest::PutRolePermissionsBoundary { .. } => "PutRolePermissionsBoundary",
            IamRequest::DeleteRolePermissionsBoundary { .. } => "DeleteRolePermissionsBoundary",
            IamRequest::TagRole { .. } => "TagRole",
            IamRequest::UntagRole { .. } => "UntagRole",
            IamRequest::PutRolePolicy { .. } => "PutRolePolicy",
            IamRequest::DeleteRolePolicy { .. } => "DeleteRolePolicy",
            IamRequest::ListRolePolicies { .. } => "ListRolePolicies",
            IamRequest::GetRolePolicy { .. } => "GetRolePolicy",
            IamRequest::AttachRolePolicy { .. } => "AttachRolePolicy",
            IamRequest::DetachRolePolicy { .. } => "DetachRolePolicy",
            IamRequest::ListAttachedRolePolicies { .. } => "ListAttachedRolePolicies",
            IamRequest::GetPolicy { .. } => "GetPolicy",
            IamRequest::GetPolicyVersion { .. } => "GetPolicyVersion",
            IamRequest::ListInstanceProfilesForRole { .. } => "ListInstanceProfilesForRole",
            IamRequest::RemoveRoleFromInstanceProfile { .. } => "RemoveRoleFromInstanceProfile",
            IamRequest::DeleteRole { .. } => "DeleteRole",
            IamRequest::GetAccountAuthorizationDetails { .. } => "GetAccountAuthorizationDetails",
            IamRequest::GetCallerIdentity => "GetCallerIdentity",
            IamRequest::AssumeRoleWithWebIdentity { .. } => "AssumeRoleWithWebIdentity",
            IamRequest::GetOpenIdConnectProvider { .. } => "GetOpenIDConnectProvider",
            IamRequest::CreateOpenIdConnectProvider(_) => "CreateOpenIDConnectProvider",
            IamRequest::UpdateOpenIdConnectProviderThumbprint { .. } => {
                "UpdateOpenIDConnectProviderThumbprint"
            }
            IamRequest::AddClientIdToOpenIdConnectProvider { .. } => {
                "AddClientIDToOpenIDConnectProvider"
            }
            IamRequest::TagOpenIdConnectProvider { .. } => "TagOpenIDConnectProvider",
        }
    }

    /// Calls that change IAM (the idle operator must make none).
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            IamRequest::GetRole { .. }
                | IamRequest::ListRolePolicies { .. }
                | IamRequest::GetRolePolicy { .. }
                | IamRequest::ListAttachedRolePolicies { .. }
                | IamRequest::GetPolicy { .. }
                | IamRequest::GetPolicyVersion { .. }
                | IamRequest::ListInstanceProfilesForRole { .. }
                | IamRequest::GetAccountAuthorizationDetails { .. }
                | IamRequest::GetCallerIdentity
                | IamRequest::AssumeRoleWithWebIdentity { .. }
                | IamRequest::GetOpenIdConnectProvider { .. }
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum IamResponse {
    Role(RoleState),
    Done,
    Names(Vec<String>),
    Document(String),
    Page(AuthorizationPage),
    Account(String),
    /// A managed policy's default version id.
    DefaultVersion(String),
    Assumed(AssumedRole),
    Provider(OidcProvider),
    /// The ARN of what was made.
    Created(String),
}

/// Anything that answers IAM requests: the SDK adapter, or a wrapper around one.
pub trait IamApi: Send + Sync {
    fn call(&self, request: IamRequest) -> BoxFuture<'_, Result<IamResponse, AwsError>>;
}

impl<T: IamApi + ?Sized> IamApi for std::sync::Arc<T> {
    fn call(&self, request: IamRequest) -> BoxFuture<'_, Result<IamResponse, AwsError>> {
        (**self).call(request)
    }
}

/// Typed calls over any [`IamApi`].
pub struct Iam<'a> {
    api: &'a dyn IamApi,
}

fn unexpected(operation: &'static str, response: &IamResponse) -> AwsError {
    AwsError::new(
        ErrorKind::Other,
        operation,
        format!("unexpected response {response:?}"),
    )
}

macro_rules! expect {
    ($self:ident, $request:expr, $pattern:pat => $value:expr) => {{
        let request = $request;
        let operation = request.operation();
        match $self.api.call(request).await? {
            $pattern => Ok($value),
            other => Err(unexpected(operation, &other)),
        }
    }};
}

impl<'a> Iam<'a> {
    pub fn new(api: &'a dyn IamApi) -> Self {
        Self { api }
    }

    pub async fn create_role(&self, role: NewRole) -> Result<RoleState, AwsError> {
        expect!(self, IamRequest::CreateRole(role), IamResponse::Role(role) => role)
    }
    pub async fn get_role(&self, name: &str) -> Result<RoleState, AwsError> {
        expect!(self, IamRequest::GetRole { name: name.into() }, IamResponse::Role(role) => role)
    }
    pub async fn list_role_policies(&self, name: &str) -> Result<Vec<String>, AwsError> {
        expect!(self, IamRequest::ListRolePolicies { name: name.into() }, IamResponse::Names(names) => names)
    }
    pub async fn get_role_policy(&self, name: &str, policy_name: &str) -> Result<String, AwsError> {
        let request = IamRequest::GetRolePolicy {
            name: name.into(),
            policy_name: policy_name.into(),
        };
        expect!(self, request, IamResponse::Document(document) => document)
    }
    pub async fn list_attached_role_policies(&self, name: &str) -> Result<Vec<String>, AwsError> {
        expect!(self, IamRequest::ListAttachedRolePolicies { name: name.into() }, IamResponse::Names(arns) => arns)
    }
    pub async fn policy_default_version(&self, arn: &str) -> Result<String, AwsError> {
        expect!(self, IamRequest::GetPolicy { arn: arn.into() }, IamResponse::DefaultVersion(id) => id)
    }
    pub async fn policy_version_document(
        &self,
        arn: &str,
        version_id: &str,
    ) -> Result<String, AwsError> {
        let request = IamRequest::GetPolicyVersion {
            arn: arn.into(),
            version_id: version_id.into(),
        };
        expect!(self, request, IamResponse::Document(document) => document)
    }
    pub async fn list_instance_profiles_for_role(
        &self,
        name: &str,
    ) -> Result<Vec<String>, AwsError> {
        expect!(self, IamRequest::ListInstanceProfilesForRole { name: name.into() }, IamResponse::Names(names) => names)
    }
    pub async fn authorization_page(
        &self,
        marker: Option<String>,
        max_items: i32,
    ) -> Result<AuthorizationPage, AwsError> {
        let request = IamRequest::GetAccountAuthorizationDetails { marker, max_items };
        expect!(self, request, IamResponse::Page(page) => page)
    }
    pub async fn caller_account(&self) -> Result<String, AwsError> {
        expect!(self, IamRequest::GetCallerIdentity, IamResponse::Account(account) => account)
    }
    /// AssumeRoleWithWebIdentity: who STS says the caller became (the credentials are
    /// never returned).
    pub async fn assume_role_with_web_identity(
        &self,
        role_arn: &str,
        session_name: &str,
        token: WebIdentityToken,
    ) -> Result<AssumedRole, AwsError> {
        let request = IamRequest::AssumeRoleWithWebIdentity {
            role_arn: role_arn.into(),
            session_name: session_name.into(),
            token,
        };
        expect!(self, request, IamResponse::Assumed(assumed) => assumed)
    }
    pub async fn oidc_provider(&self, arn: &str) -> Result<OidcProvider, AwsError> {
        expect!(self, IamRequest::GetOpenIdConnectProvider { arn: arn.into() }, IamResponse::Provider(provider) => provider)
    }
    /// Makes the provider; its ARN.
    pub async fn create_oidc_provider(
        &self,
        provider: NewOidcProvider,
    ) -> Result<String, AwsError> {
        expect!(self, IamRequest::CreateOpenIdConnectProvider(provider), IamResponse::Created(arn) => arn)
    }
    /// A call answered with nothing but success.
    pub async fn run(&self, request: IamRequest) -> Result<(), AwsError> {
        expect!(self, request, IamResponse::Done => ())
    }
}
