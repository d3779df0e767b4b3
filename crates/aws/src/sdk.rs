//! The aws-sdk-iam (and STS) adapter: the only code that talks to AWS.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::BehaviorVersion;
pub use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::{EntityType, Tag};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use futures::future::BoxFuture;
use percent_encoding::percent_decode_str;

use crate::api::{
    AssumedRole, AuthorizationPage, IamApi, IamRequest, IamResponse, NewRole, OidcProvider,
    RoleDetails, RoleState,
};
use crate::error::{AwsError, ErrorKind};
use crate::fenced_http::FencedHttpClient;
use crate::wire_fence::WriteFenced;
pub use crate::write_gate::WriteGate;
use crate::write_gate::is_write_action;

/// Refuses a write attempt the gate closes, checked right before each attempt is sent
/// (retries included), not when the call began: a process stopped or cut off in the
/// middle of a call cannot send the write after it lost the right to.
#[derive(Debug)]
pub(crate) struct Fence {
    pub gate: WriteGate,
    /// Which requests are writes: IAM's by their action, S3's by their method.
    pub is_write: fn(&aws_smithy_runtime_api::http::Request) -> bool,
}

fn is_iam_write(request: &aws_smithy_runtime_api::http::Request) -> bool {
    is_write_action(request.body().bytes().unwrap_or_default())
}

impl Intercept for Fence {
    fn name(&self) -> &'static str {
        "podidentity-write-fence"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if (self.is_write)(context.request()) && !(self.gate.0)() {
            return Err(Box::new(WriteFenced));
        }
        Ok(())
    }
}

/// Where and how to reach AWS.
#[derive(Clone, Debug, Default)]
pub struct AwsSettings {
    pub region: Option<String>,
    /// An emulator, in tests.
    pub endpoint_url: Option<String>,
    /// Attempts per call, backoff with jitter between them (the SDK's standard mode).
    pub max_attempts: u32,
    pub call_timeout: Option<Duration>,
    /// Fixed credentials (an emulator); otherwise the default chain.
    pub static_credentials: Option<(String, String)>,
    /// IAM writes only while this says so (leader election).
    pub write_gate: Option<WriteGate>,
}

pub struct SdkIam {
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
}

impl SdkIam {
    /// Credentials, region and endpoint from the settings and the usual AWS chain
    /// (environment, web identity, instance metadata).
    pub async fn connect(settings: &AwsSettings) -> Self {
        Self::from_config(&sdk_config(settings).await, settings)
    }

    /// The adapter on an SDK configuration already loaded (shared with the S3 adapter).
    pub fn from_config(shared: &aws_config::SdkConfig, settings: &AwsSettings) -> Self {
        let mut iam = aws_sdk_iam::config::Builder::from(shared);
        if let Some(gate) = &settings.write_gate {
            // Two checks of one gate: the interceptor refuses a write before it is signed
            // (an error the SDK does not retry); the fenced connections are the guarantee
            // for a process stopped after that check.
            iam = iam.interceptor(Fence {
                gate: gate.clone(),
                is_write: is_iam_write,
            });
            // Only IAM's client: STS and the credential chain (IMDS, web identity) are
            // not writes and must go on for a standby.
            if let Some(reads) = shared.http_client() {
                match FencedHttpClient::new(reads, gate.clone()) {
                    Ok(fenced) => iam = iam.http_client(fenced),
                    Err(err) => tracing::warn!(
                        error = %err,
                        "the system's root certificates could not be read for IAM's write connections: IAM writes are fenced before they are sent, not at the socket"
                    ),
                }
            }
        }
        Self {
            iam: aws_sdk_iam::Client::from_conf(iam.build()),
            sts: aws_sdk_sts::Client::new(shared),
        }
    }
}

/// The SDK configuration the adapter uses (also for tests that set up IAM by hand).
pub async fn sdk_config(settings: &AwsSettings) -> aws_config::SdkConfig {
    {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();

        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1)));
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some((key, secret)) = &settings.static_credentials {
            loader = loader.credentials_provider(aws_sdk_iam::config::Credentials::new(
                key.clone(),
                secret.clone(),
                None,
                None,
                "podidentity-static",
            ));
        }
        if let Some(timeout) = settings.call_timeout {
            loader = loader.timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(timeout)
                    .build(),
            );
        }
        loader.load().await
    }
}

/// `shared` acting in another account: credentials from STS AssumeRole of `role_arn`
/// with `shared`'s own, cached by each client and renewed before they expire. The
/// session name says who acts (CloudTrail shows it): `podidentity-<cluster>`.
pub async fn assumed_config(
    shared: &aws_config::SdkConfig,
    role_arn: &str,
    cluster: &str,
) -> aws_config::SdkConfig {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
        .session_name(session_name(cluster))
        .configure(shared)
        .build()
        .await;
    shared
        .to_builder()
        .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
            provider,
        ))
        .build()
}

/// An STS session name for the cluster: the characters STS takes (`[\w+=,.@-]`), at
/// most 64.
fn session_name(cluster: &str) -> String {
    let cleaned: String = cluster
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '+' | '=' | ',' | '.' | '@' | '-' => c,
            _ => '-',
        })
        .collect();
    format!("podidentity-{cleaned}").chars().take(64).collect()
}

/// Whether the write fence (the interceptor, or a fenced connection) stopped the call.
fn fenced(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(error) = cause {
        // io::Error's source skips the error it wraps: look inside.
        let wrapped = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        if error.is::<WriteFenced>() || wrapped.is_some_and(|inner| inner.is::<WriteFenced>()) {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Sorts an SDK error into a kind, keeping AWS's code and message.
pub(crate) fn sorted<E: ProvideErrorMetadata + std::error::Error + 'static>(
    operation: &'static str,
    err: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> AwsError {
    let kind = match &err {
        _ if fenced(&err) => ErrorKind::Fenced,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ErrorKind::Unavailable
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = err.code().unwrap_or_default();
            let by_code = ErrorKind::from_code(code, err.message().unwrap_or_default());
            if by_code == ErrorKind::Other && status >= 500 {
                ErrorKind::Unavailable
            } else {
                by_code
            }
        }
        _ => ErrorKind::Other,
    };
    AwsError {
        kind,
        operation,
        code: err.code().map(String::from),
        message: err.message().map(String::from).unwrap_or_else(|| {
            aws_smithy_types::error::display::DisplayErrorContext(&err).to_string()
        }),
    }
}

fn decode(document: &str) -> String {
    percent_decode_str(document)
        .decode_utf8_lossy()
        .into_owned()
}

fn tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>, AwsError> {
    tags.iter()
        .map(|(key, value)| {
            Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|err| AwsError::new(ErrorKind::Malformed, "TagRole", err.to_string()))
        })
        .collect()
}

fn role_state(role: &aws_sdk_iam::types::Role) -> RoleState {
    RoleState {
        name: role.role_name().to_string(),
        arn: role.arn().to_string(),
        id: role.role_id().to_string(),
        path: role.path().to_string(),
        trust_policy: role
            .assume_role_policy_document()
            .map(decode)
            .unwrap_or_default(),
        description: role.description().unwrap_or_default().to_string(),
        max_session_duration_seconds: role.max_session_duration().map(i64::from).unwrap_or(3600),
        permissions_boundary_arn: role
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
            .map(String::from),
        tags: role
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
    }
}

fn i32_seconds(seconds: i64) -> i32 {
    i32::try_from(seconds).unwrap_or(i32::MAX)
}

/// Follows IAM's `Marker`/`IsTruncated` paging and collects the items of every page.
macro_rules! all_pages {
    ($op:expr, |$marker:ident| $request:expr, |$out:ident| $items:expr) => {{
        let mut collected = Vec::new();
        let mut $marker: Option<String> = None;
        loop {
            let $out = $request.send().await.map_err(|e| sorted($op, e))?;
            collected.extend($items);
            $marker = $out.marker().map(String::from);
            if !$out.is_truncated() || $marker.is_none() {
                break;
            }
        }
        collected
    }};
}

/// Sends one SDK request and sorts its error as `op`'s.
macro_rules! sent {
    ($op:expr, $request:expr) => {
        $request.send().await.map_err(|e| sorted($op, e))?
    };
}

/// A role as GetAccountAuthorizationDetails describes it.
fn role_details(detail: &aws_sdk_iam::types::RoleDetail) -> RoleDetails {
    RoleDetails {
        role: RoleState {
            name: detail.role_name().unwrap_or_default().to_string(),
            arn: detail.arn().unwrap_or_default().to_string(),
            id: detail.role_id().unwrap_or_default().to_string(),
            path: detail.path().unwrap_or_default().to_string(),
            trust_policy: detail
                .assume_role_policy_document()
                .map(decode)
                .unwrap_or_default(),
            // Not in this API: compared from GetRole when it matters.
            description: String::new(),
            max_session_duration_seconds: 0,
            permissions_boundary_arn: detail
                .permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn())
                .map(String::from),
            tags: detail
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
        },
        inline_policies: detail
            .role_policy_list()
            .iter()
            .map(|p| {
                (
                    p.policy_name().unwrap_or_default().to_string(),
                    p.policy_document().map(decode).unwrap_or_default(),
                )
            })
            .collect(),
        attached_policy_arns: detail
            .attached_managed_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(String::from))
            .collect(),
    }
}

impl SdkIam {
    /// One call: the role itself here; policies, instance profiles, the account's roles
    /// and the caller's account in their own functions.
    async fn dispatch(&self, request: IamRequest) -> Result<IamResponse, AwsError> {
        let op = request.operation();
        let iam = &self.iam;
        Ok(match request {
            IamRequest::CreateRole(role) => IamResponse::Role(self.create_role(op, role).await?),
            IamRequest::GetRole { name } => {
                let out = sent!(op, iam.get_role().role_name(name));
                IamResponse::Role(out.role().map(role_state).unwrap_or_default())
            }
            IamRequest::UpdateAssumeRolePolicy { name, document } => {
                sent!(
                    op,
                    iam.update_assume_role_policy()
                        .role_name(name)
                        .policy_document(document)
                );
                IamResponse::Done
            }
            IamRequest::UpdateRole {
                name,
                description,
                max_session_duration_seconds,
            } => {
                sent!(
                    op,
                    iam.update_role()
                        .role_name(name)
                        .description(description)
                        .max_session_duration(i32_seconds(max_session_duration_seconds))
                );
                IamResponse::Done
            }
            IamRequest::PutRolePermissionsBoundary { name, arn } => {
                sent!(
                    op,
                    iam.put_role_permissions_boundary()
                        .role_name(name)
                        .permissions_boundary(arn)
                );
                IamResponse::Done
            }
            IamRequest::DeleteRolePermissionsBoundary { name } => {
                sent!(op, iam.delete_role_permissions_boundary().role_name(name));
                IamResponse::Done
            }
            IamRequest::TagRole { name, tags: wanted } => {
                sent!(
                    op,
                    iam.tag_role()
                        .role_name(name)
                        .set_tags(Some(tags(&wanted)?))
                );
                IamResponse::Done
            }
            IamRequest::UntagRole { name, keys } => {
                sent!(
                    op,
                    iam.untag_role().role_name(name).set_tag_keys(Some(keys))
                );
                IamResponse::Done
            }
            IamRequest::DeleteRole { name } => {
                sent!(op, iam.delete_role().role_name(name));
                IamResponse::Done
            }
            IamRequest::ListInstanceProfilesForRole { name } => IamResponse::Names(all_pages!(
                op,
                |marker| iam
                    .list_instance_profiles_for_role()
                    .role_name(&name)
                    .set_marker(marker.take()),
                |out| out
                    .instance_profiles()
                    .iter()
                    .map(|p| p.instance_profile_name().to_string())
            )),
            IamRequest::RemoveRoleFromInstanceProfile {
                name,
                instance_profile,
            } => {
                sent!(
                    op,
                    iam.remove_role_from_instance_profile()
                        .role_name(name)
                        .instance_profile_name(instance_profile)
                );
                IamResponse::Done
            }
            IamRequest::GetAccountAuthorizationDetails { marker, max_items } => {
                IamResponse::Page(self.authorization_page(op, marker, max_items).await?)
            }
            identity @ (IamRequest::GetCallerIdentity
            | IamRequest::AssumeRoleWithWebIdentity { .. }) => {
                self.identity_call(op, identity).await?
            }
            provider @ (IamRequest::GetOpenIdConnectProvider { .. }
            | IamRequest::CreateOpenIdConnectProvider(_)
            | IamRequest::UpdateOpenIdConnectProviderThumbprint { .. }
            | IamRequest::AddClientIdToOpenIdConnectProvider { .. }
            | IamRequest::TagOpenIdConnectProvider { .. }) => {
                self.provider_call(op, provider).await?
            }
            policy @ (IamRequest::PutRolePolicy { .. }
            | IamRequest::DeleteRolePolicy { .. }
            | IamRequest::ListRolePolicies { .. }
            | IamRequest::GetRolePolicy { .. }
            | IamRequest::AttachRolePolicy { .. }
            | IamRequest::DetachRolePolicy { .. }
            | IamRequest::ListAttachedRolePolicies { .. }
            | IamRequest::GetPolicy { .. }
            | IamRequest::GetPolicyVersion { .. }) => self.policy_call(op, policy).await?,
        })
    }

    async fn create_role(&self, op: &'static str, role: NewRole) -> Result<RoleState, AwsError> {
        let NewRole {
            name,
            path,
            trust_policy,
            description,
            max_session_duration_seconds,
            permissions_boundary_arn,
            tags: role_tags,
        } = role;
        let out = sent!(
            op,
            self.iam
                .create_role()
                .role_name(name)
                .path(path)
                .assume_role_policy_document(trust_policy)
                .description(description)
                .max_session_duration(i32_seconds(max_session_duration_seconds))
                .set_permissions_boundary(permissions_boundary_arn)
                .set_tags(Some(tags(&role_tags)?))
        );
        Ok(out.role().map(role_state).unwrap_or_default())
    }

    /// The inline and managed policy calls, and the managed policies' own reads (default
    /// version, document); `dispatch` sends every other request itself.
    async fn policy_call(
        &self,
        op: &'static str,
        request: IamRequest,
    ) -> Result<IamResponse, AwsError> {
        let iam = &self.iam;
        Ok(match request {
            IamRequest::PutRolePolicy {
                name,
                policy_name,
                document,
            } => {
                sent!(
                    op,
                    iam.put_role_policy()
                        .role_name(name)
                        .policy_name(policy_name)
                        .policy_document(document)
                );
                IamResponse::Done
            }
            IamRequest::DeleteRolePolicy { name, policy_name } => {
                sent!(
                    op,
                    iam.delete_role_policy()
                        .role_name(name)
                        .policy_name(policy_name)
                );
                IamResponse::Done
            }
            IamRequest::ListRolePolicies { name } => IamResponse::Names(all_pages!(
                op,
                |marker| iam
                    .list_role_policies()
                    .role_name(&name)
                    .set_marker(marker.take()),
                |out| out.policy_names().iter().cloned()
            )),
            IamRequest::GetRolePolicy { name, policy_name } => {
                let out = sent!(
                    op,
                    iam.get_role_policy()
                        .role_name(name)
                        .policy_name(policy_name)
                );
                IamResponse::Document(decode(out.policy_document()))
            }
            IamRequest::AttachRolePolicy { name, arn } => {
                sent!(op, iam.attach_role_policy().role_name(name).policy_arn(arn));
                IamResponse::Done
            }
            IamRequest::DetachRolePolicy { name, arn } => {
                sent!(op, iam.detach_role_policy().role_name(name).policy_arn(arn));
                IamResponse::Done
            }
            IamRequest::ListAttachedRolePolicies { name } => IamResponse::Names(all_pages!(
                op,
                |marker| iam
                    .list_attached_role_policies()
                    .role_name(&name)
                    .set_marker(marker.take()),
                |out| out
                    .attached_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(String::from))
            )),
            IamRequest::GetPolicy { arn } => {
                let out = sent!(op, iam.get_policy().policy_arn(arn));
                IamResponse::DefaultVersion(
                    out.policy()
                        .and_then(|p| p.default_version_id())
                        .unwrap_or_default()
                        .to_string(),
                )
            }
            IamRequest::GetPolicyVersion { arn, version_id } => {
                let out = sent!(
                    op,
                    iam.get_policy_version()
                        .policy_arn(arn)
                        .version_id(version_id)
                );
                IamResponse::Document(decode(
                    out.policy_version()
                        .and_then(|v| v.document())
                        .unwrap_or_default(),
                ))
            }
            other => {
                return Err(AwsError::new(
                    ErrorKind::Other,
                    op,
                    format!("{} is not a policy call", other.operation()),
                ));
            }
        })
    }

    /// Who the operator is, and whether a token gets a role: the calls about identities
    /// rather than roles.
    async fn identity_call(
        &self,
        op: &'static str,
        request: IamRequest,
    ) -> Result<IamResponse, AwsError> {
        Ok(match request {
            IamRequest::GetCallerIdentity => {
                let out = sent!(op, self.sts.get_caller_identity());
                IamResponse::Account(out.account().unwrap_or_default().to_string())
            }
            IamRequest::AssumeRoleWithWebIdentity {
                role_arn,
                session_name,
                token,
            } => {
                let out = sent!(
                    op,
                    self.sts
                        .assume_role_with_web_identity()
                        .role_arn(role_arn)
                        .role_session_name(session_name)
                        .web_identity_token(token.0)
                        // The shortest session STS grants: the credentials are dropped here.
                        .duration_seconds(900)
                );
                IamResponse::Assumed(AssumedRole {
                    assumed_role_arn: out
                        .assumed_role_user()
                        .map(|u| u.arn().to_string())
                        .unwrap_or_default(),
                    subject: out
                        .subject_from_web_identity_token()
                        .unwrap_or_default()
                        .to_string(),
                })
            }
            other => {
                return Err(AwsError::new(
                    ErrorKind::Other,
                    op,
                    format!("{} is not an identity call", other.operation()),
                ));
            }
        })
    }

    /// The cluster's IAM OIDC identity provider: read, made, and kept in line.
    async fn provider_call(
        &self,
        op: &'static str,
        request: IamRequest,
    ) -> Result<IamResponse, AwsError> {
        let iam = &self.iam;
        Ok(match request {
            IamRequest::GetOpenIdConnectProvider { arn } => {
                let out = sent!(
                    op,
                    iam.get_open_id_connect_provider()
                        .open_id_connect_provider_arn(arn)
                );
                IamResponse::Provider(OidcProvider {
                    url: out.url().unwrap_or_default().to_string(),
                    client_ids: out.client_id_list().to_vec(),
                    thumbprints: out.thumbprint_list().to_vec(),
                    tags: out
                        .tags()
                        .iter()
                        .map(|t| (t.key().to_string(), t.value().to_string()))
                        .collect(),
                })
            }
            IamRequest::CreateOpenIdConnectProvider(provider) => {
                let out = sent!(
                    op,
                    iam.create_open_id_connect_provider()
                        .url(provider.url)
                        .set_client_id_list(Some(provider.client_ids))
                        .set_thumbprint_list(Some(provider.thumbprints))
                        .set_tags(Some(tags(&provider.tags)?))
                );
                IamResponse::Created(
                    out.open_id_connect_provider_arn()
                        .unwrap_or_default()
                        .to_string(),
                )
            }
            IamRequest::UpdateOpenIdConnectProviderThumbprint { arn, thumbprints } => {
                sent!(
                    op,
                    iam.update_open_id_connect_provider_thumbprint()
                        .open_id_connect_provider_arn(arn)
                        .set_thumbprint_list(Some(thumbprints))
                );
                IamResponse::Done
            }
            IamRequest::AddClientIdToOpenIdConnectProvider { arn, client_id } => {
                sent!(
                    op,
                    iam.add_client_id_to_open_id_connect_provider()
                        .open_id_connect_provider_arn(arn)
                        .client_id(client_id)
                );
                IamResponse::Done
            }
            IamRequest::TagOpenIdConnectProvider { arn, tags: wanted } => {
                sent!(
                    op,
                    iam.tag_open_id_connect_provider()
                        .open_id_connect_provider_arn(arn)
                        .set_tags(Some(tags(&wanted)?))
                );
                IamResponse::Done
            }
            other => {
                return Err(AwsError::new(
                    ErrorKind::Other,
                    op,
                    format!("{} is not an OIDC provider call", other.operation()),
                ));
            }
        })
    }

    /// One page of the account's roles with their policies (the drift sweep's read).
    async fn authorization_page(
        &self,
        op: &'static str,
        marker: Option<String>,
        max_items: i32,
    ) -> Result<AuthorizationPage, AwsError> {
        let out = sent!(
            op,
            self.iam
                .get_account_authorization_details()
                .filter(EntityType::Role)
                .max_items(max_items)
                .set_marker(marker)
        );
        let next_marker = if out.is_truncated() {
            out.marker().map(String::from)
        } else {
            None
        };
        Ok(AuthorizationPage {
            roles: out.role_detail_list().iter().map(role_details).collect(),
            next_marker,
        })
    }
}

impl IamApi for SdkIam {
    fn call(&self, request: IamRequest) -> BoxFuture<'_, Result<IamResponse, AwsError>> {
        Box::pin(self.dispatch(request))
    }
}
