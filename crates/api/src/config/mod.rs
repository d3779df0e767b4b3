//! Operator configuration: the settings table of the API contract, with its defaults and
//! the values derived from it (role names, provider ARNs, where the short form applies).
//! Loaded by the binary from a YAML file, environment and flags; checked in `validate` so
//! every consumer (controller, webhook, plan) refuses the same bad values with the same
//! words.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::binding::{DeletionPolicy, Mechanism};

mod accounts;
mod oidc_management;
mod problem;
mod validate;
pub use oidc_management::ConnectTo;
pub use problem::ConfigProblem;

pub const DEFAULT_TRUST_POLICY_MAX_BYTES: usize = 2048;
/// IAM's hard ceiling for the trust policy quota.
pub const TRUST_POLICY_MAX_BYTES_CEILING: usize = 4096;
pub const DEFAULT_MAX_MANAGED_POLICIES: usize = 10;
/// IAM's hard ceiling for managed policies per role (after a quota increase).
pub const MAX_MANAGED_POLICIES_CEILING: usize = 20;
pub const DEFAULT_DRIFT_INTERVAL: &str = "10m";
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: f64 = 10.0;

/// Account id shown in ARNs when none is configured (plan without AWS).
pub const ACCOUNT_PLACEHOLDER: &str = "<account-id>";
/// What `${region}` stands for when no region is known (neither configured nor found).
pub const REGION_PLACEHOLDER: &str = "<region>";
/// OIDC issuer shown when none is configured (plan without a cluster).
pub const ISSUER_PLACEHOLDER: &str = "<oidc-issuer>";

/// Every operator setting. Unset optional values are derived by the accessor methods.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorConfig {
    /// Names this cluster in ownership tags and the default role name prefix. Required.
    #[serde(default)]
    pub cluster_name: String,
    #[serde(default)]
    pub oidc: OidcConfig,
    #[serde(default)]
    pub roles: RolesConfig,
    #[serde(default)]
    pub guardrails: GuardrailsConfig,
    #[serde(default)]
    pub trust_policy: TrustPolicyConfig,
    /// Deletion policy of bindings that do not set one.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// How often IAM is re-read to put back changes made outside (e.g. `10m`, `1h`).
    #[serde(default = "default_drift_interval")]
    pub drift_interval: String,
    #[serde(default)]
    pub aws: AwsConfig,
    #[serde(default)]
    pub short_form: ShortFormConfig,
    /// Before a binding is Ready, exchange a fresh token of its ServiceAccount for the
    /// role with STS (AssumeRoleWithWebIdentity), retrying through IAM's eventual
    /// consistency. Off by default: it needs the right to request tokens for
    /// ServiceAccounts, which the chart grants only then.
    #[serde(default)]
    pub verify_assumable: bool,
    /// Let bindings with `spec.injection.restartPods` restart the workloads whose pods
    /// started without their role. Off by default: it needs the right to patch
    /// Deployments, StatefulSets and DaemonSets, which the chart grants only then.
    #[serde(default)]
    pub allow_pod_restarts: bool,
    #[serde(default)]
    pub credentials_requests: CredentialsRequestsConfig,
    #[serde(default, skip_serializing_if = "IdentityConfig::is_unset")]
    pub identity: IdentityConfig,
    #[serde(default, skip_serializing_if = "EksConfig::is_unset")]
    pub eks: EksConfig,
    /// Other AWS accounts the operator makes roles in, each by assuming a role there. A
    /// PodIdentityPolicy places namespaces in one of them (`spec.account`); every other
    /// namespace stays in the operator's own account (`aws.accountId`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountConfig>,
    /// Not a setting: the uid of this cluster's kube-system namespace, which the controller
    /// reads at start and tags roles with. Unknown to `plan` and the webhook.
    #[serde(skip)]
    pub cluster_uid: Option<String>,
}

/// The ServiceAccount short form: annotations that ask for a role without a binding.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShortFormConfig {
    /// Off by default: whoever may edit a ServiceAccount (Kubernetes' built-in `edit`
    /// role) could otherwise make IAM roles, where PodIdentityBindings need their own
    /// grant.
    #[serde(default)]
    pub enabled: bool,
    /// Where it is on; empty: every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcConfig {
    /// Issuer URL of the cluster's ServiceAccount tokens (`https://...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_url: Option<String>,
    /// ARN of the IAM OIDC provider for that issuer; derived when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_arn: Option<String>,
    /// More providers (other clusters) whose ServiceAccounts get the same trust.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_provider_arns: Vec<String>,
    /// Keep the IAM OIDC provider for the issuer in line: made when missing, its client
    /// ids and thumbprint put right in place, tagged as this cluster's. A provider without
    /// this cluster's tag is never changed.
    #[serde(default)]
    pub manage: bool,
    /// Client ids (audiences) the provider must list; default `[sts.amazonaws.com]`.
    /// Others found on the provider are left: a binding may use them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_ids: Vec<String>,
    /// Thumbprints to use instead of the one read from the issuer host's TLS chain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thumbprints: Vec<String>,
    /// Where the controller reaches the issuer's host for its TLS chain when DNS says
    /// otherwise (split horizon, a private endpoint): `HOST:PORT:TARGET_HOST:TARGET_PORT`,
    /// as curl's `--connect-to`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_to: Vec<String>,
    /// PEM certificates trusted for the issuer's host beside the system's roots (an
    /// issuer behind a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ca: Option<String>,
    /// How often the provider and the published documents are checked; default `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_interval: Option<String>,
    #[serde(default, skip_serializing_if = "PublishConfig::is_unset")]
    pub publish: PublishConfig,
}

/// Which identity mechanism bindings use when they do not say.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityConfig {
    /// `IRSA` (the default) or `PodIdentity`.
    #[serde(default)]
    pub default_mechanism: Mechanism,
    /// The mechanisms bindings may use anywhere (empty: both); PodIdentityPolicies narrow
    /// it per namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_mechanisms: Vec<Mechanism>,
}

impl IdentityConfig {
    /// Whether bindings may use `mechanism` under this configuration.
    pub fn allows(&self, mechanism: Mechanism) -> bool {
        self.allowed_mechanisms.is_empty() || self.allowed_mechanisms.contains(&mechanism)
    }

    fn is_unset(&self) -> bool {
        self == &Self::default()
    }
}

/// The EKS cluster, for Pod Identity associations.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EksConfig {
    /// The cluster's name in EKS; default `clusterName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// Pod Identity associations the cluster may have (EKS's quota: 5,000, not raisable);
    /// a binding whose association would be past it is refused before any call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_associations: Option<u32>,
}

/// EKS's quota of Pod Identity associations per cluster (not raisable).
pub const EKS_ASSOCIATIONS_QUOTA: u32 = 5_000;

impl EksConfig {
    fn is_unset(&self) -> bool {
        self == &Self::default()
    }
}

/// OpenShift's CredentialsRequests, reconciled like bindings (one role and one ccoctl
/// Secret each) where their CRD is installed.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsRequestsConfig {
    /// Off by default: on OpenShift the Cloud Credential Operator may own them.
    #[serde(default)]
    pub enabled: bool,
    /// The namespaces whose requests are honoured: a request names a Secret and
    /// ServiceAccounts in any namespace, so only the platform's own namespace may make
    /// them. Default: `openshift-cloud-credential-operator`.
    #[serde(default = "default_credentials_request_namespaces")]
    pub namespaces: Vec<String>,
}

fn default_credentials_request_namespaces() -> Vec<String> {
    vec!["openshift-cloud-credential-operator".to_string()]
}

impl Default for CredentialsRequestsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            namespaces: default_credentials_request_namespaces(),
        }
    }
}

/// Where the issuer's discovery document and keys are published for STS to fetch.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishConfig {
    /// The bucket the issuer URL points at (directly or through a CDN). The documents are
    /// written under the issuer's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_bucket: Option<String>,
    /// How long a key the API server no longer serves stays published: the longest
    /// lifetime of a token it signed. Default `24h`, the webhook's longest token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_retention: Option<String>,
}

impl PublishConfig {
    fn is_unset(&self) -> bool {
        self == &Self::default()
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolesConfig {
    /// Role name prefix; default `<clusterName>-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    /// IAM path of every role; default `/podidentity/<clusterName>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Permissions boundary put on every role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary_arn: Option<String>,
    /// Allow bindings to set `spec.role.name`.
    #[serde(default)]
    pub allow_name_override: bool,
    /// Managed policies per role: 10 by default, up to 20 with a raised IAM quota.
    #[serde(default = "default_max_managed_policies")]
    pub max_managed_policies: usize,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuardrailsConfig {
    /// Action patterns no Allow statement may reach (glob intersection).
    #[serde(default = "default_denied_actions")]
    pub denied_actions: Vec<String>,
    /// Action patterns an Allow statement may grant only on named resources, never on
    /// `"*"` (reading every secret of the account is not a namespace's business).
    #[serde(default = "default_actions_needing_named_resources")]
    pub actions_needing_named_resources: Vec<String>,
    /// Glob patterns of managed policy ARNs bindings may attach.
    #[serde(default = "default_allowed_managed_policy_arns")]
    pub allowed_managed_policy_arns: Vec<String>,
    /// Glob patterns refused even when allowed above.
    #[serde(default = "default_denied_managed_policy_arns")]
    pub denied_managed_policy_arns: Vec<String>,
    /// Refuse to run without `roles.permissionsBoundaryArn`: the boundary caps every role,
    /// whatever a guardrail misses.
    #[serde(default)]
    pub require_boundary: bool,
    /// Refuse bindings in namespaces no PodIdentityPolicy selects.
    #[serde(default)]
    pub require_policy: bool,
    /// Tag key patterns a binding may not put on its role (without letter case, as IAM
    /// compares tag keys): where an account grants access by principal tags (ABAC), a
    /// role tagged `team=payments` is payments' role.
    #[serde(default)]
    pub denied_tag_keys: Vec<String>,
    /// Glob patterns of the role ARNs a Pod Identity binding may name as
    /// `identity.targetRoleArn` (role chaining leaves the binding's role for that one,
    /// possibly in another account). Empty, the default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_target_role_arns: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustPolicyConfig {
    /// The account's trust policy size quota in bytes (2048, up to 4096 when raised).
    #[serde(default = "default_trust_policy_max_bytes")]
    pub max_bytes: usize,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint override, e.g. an IAM emulator in tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// One request budget shared by every reconcile.
    #[serde(default = "default_max_requests_per_second")]
    pub max_requests_per_second: f64,
    /// Account that owns the roles; from STS GetCallerIdentity when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// ARN partition (`aws`, `aws-cn`, `aws-us-gov`); derived from the region when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
}

fn default_drift_interval() -> String {
    DEFAULT_DRIFT_INTERVAL.to_string()
}
fn default_max_managed_policies() -> usize {
    DEFAULT_MAX_MANAGED_POLICIES
}
fn default_trust_policy_max_bytes() -> usize {
    DEFAULT_TRUST_POLICY_MAX_BYTES
}
fn default_max_requests_per_second() -> f64 {
    DEFAULT_MAX_REQUESTS_PER_SECOND
}
/// What a namespace may never grant its pods, by default: each is a way out of the
/// namespace, to the account or to the cluster.
pub const DEFAULT_DENIED_ACTIONS: &[&str] = &[
    // The account itself: identities, the organization, the account's settings.
    "iam:*",
    "organizations:*",
    "account:*",
    // Pivots into any role that trusts the account, or federated sessions.
    "sts:AssumeRole",
    "sts:AssumeRoleWithSAML",
    "sts:AssumeRoleWithWebIdentity",
    "sts:GetFederationToken",
    // Cluster admin through EKS access entries and pod identity associations.
    "eks:CreateAccessEntry",
    "eks:UpdateAccessEntry",
    "eks:AssociateAccessPolicy",
    "eks:CreatePodIdentityAssociation",
    "eks:UpdatePodIdentityAssociation",
    // Cluster identities of one's own choosing.
    "eks:AssociateIdentityProviderConfig",
    "eks:UpdateClusterConfig",
    // Commands and shells on the nodes, or in other workloads.
    "ssm:SendCommand",
    "ssm:StartSession",
    "ssm:ResumeSession",
    "ssm:CreateAssociation",
    "ssm:StartAutomationExecution",
    "ec2-instance-connect:Send*",
    "ec2:ModifyInstanceAttribute",
    "ec2:CreateLaunchTemplateVersion",
    "ec2:ModifyLaunchTemplate",
    "ecs:ExecuteCommand",
    // Code that runs as another role.
    "lambda:UpdateFunctionCode",
    "lambda:UpdateFunctionConfiguration",
    "cloudformation:UpdateStack",
    "cloudformation:ExecuteChangeSet",
    "codebuild:StartBuild",
    // Resource policies that let oneself (or anyone) read secrets, keys and disks.
    "secretsmanager:PutResourcePolicy",
    "kms:PutKeyPolicy",
    "ec2:ModifySnapshotAttribute",
    "ec2:ModifyImageAttribute",
];

/// Secret reads (and writes over others' secrets, and grants of a key) that an Allow
/// statement may grant on named resources only, by default.
pub const DEFAULT_ACTIONS_NEEDING_NAMED_RESOURCES: &[&str] = &[
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "ssm:GetParameter*",
    "ssm:PutParameter",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:CreateGrant",
];

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}
fn default_denied_actions() -> Vec<String> {
    owned(DEFAULT_DENIED_ACTIONS)
}
fn default_actions_needing_named_resources() -> Vec<String> {
    owned(DEFAULT_ACTIONS_NEEDING_NAMED_RESOURCES)
}
fn default_allowed_managed_policy_arns() -> Vec<String> {
    vec!["arn:aws:iam::aws:policy/*".to_string()]
}
fn default_denied_managed_policy_arns() -> Vec<String> {
    // In every partition (aws-us-gov, aws-cn name them alike).
    ["AdministratorAccess", "PowerUserAccess", "IAMFullAccess"]
        .map(|name| format!("arn:*:iam::aws:policy/{name}"))
        .to_vec()
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            cluster_name: String::new(),
            oidc: OidcConfig::default(),
            roles: RolesConfig::default(),
            guardrails: GuardrailsConfig::default(),
            trust_policy: TrustPolicyConfig::default(),
            deletion_policy: DeletionPolicy::default(),
            drift_interval: default_drift_interval(),
            aws: AwsConfig::default(),
            short_form: ShortFormConfig::default(),
            verify_assumable: false,
            allow_pod_restarts: false,
            credentials_requests: CredentialsRequestsConfig::default(),
            identity: IdentityConfig::default(),
            eks: EksConfig::default(),
            accounts: Vec::new(),
            cluster_uid: None,
        }
    }
}

impl Default for RolesConfig {
    fn default() -> Self {
        Self {
            name_prefix: None,
            path: None,
            permissions_boundary_arn: None,
            allow_name_override: false,
            max_managed_policies: default_max_managed_policies(),
        }
    }
}

impl Default for GuardrailsConfig {
    fn default() -> Self {
        Self {
            denied_actions: default_denied_actions(),
            actions_needing_named_resources: default_actions_needing_named_resources(),
            allowed_managed_policy_arns: default_allowed_managed_policy_arns(),
            denied_managed_policy_arns: default_denied_managed_policy_arns(),
            require_boundary: false,
            require_policy: false,
            denied_tag_keys: Vec::new(),
            allowed_target_role_arns: Vec::new(),
        }
    }
}

impl Default for TrustPolicyConfig {
    fn default() -> Self {
        Self {
            max_bytes: default_trust_policy_max_bytes(),
        }
    }
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            max_requests_per_second: default_max_requests_per_second(),
            account_id: None,
            partition: None,
        }
    }
}

/// What the settings come to: values derived where they are unset, and what they allow.
impl OperatorConfig {
    pub fn role_name_prefix(&self) -> String {
        self.roles
            .name_prefix
            .clone()
            .unwrap_or_else(|| format!("{}-", self.cluster_name))
    }

    pub fn role_path(&self) -> String {
        self.roles
            .path
            .clone()
            .unwrap_or_else(|| format!("/podidentity/{}/", self.cluster_name))
    }

    pub fn partition(&self) -> String {
        if let Some(partition) = &self.aws.partition {
            return partition.clone();
        }
        match self.aws.region.as_deref() {
            Some(region) if region.starts_with("cn-") => "aws-cn".into(),
            Some(region) if region.starts_with("us-gov-") => "aws-us-gov".into(),
            _ => "aws".into(),
        }
    }

    /// The configured account, or a visible placeholder for offline use.
    pub fn account_id_or_placeholder(&self) -> &str {
        self.aws
            .account_id
            .as_deref()
            .unwrap_or(ACCOUNT_PLACEHOLDER)
    }

    /// The cluster's name in EKS (for Pod Identity associations).
    pub fn eks_cluster_name(&self) -> &str {
        self.eks
            .cluster_name
            .as_deref()
            .unwrap_or(&self.cluster_name)
    }

    /// How many Pod Identity associations the cluster may have (`eks.maxAssociations`).
    pub fn eks_max_associations(&self) -> u32 {
        self.eks.max_associations.unwrap_or(EKS_ASSOCIATIONS_QUOTA)
    }

    /// The EKS cluster's ARN, as EKS puts it in the `eks-cluster-arn` session tag.
    pub fn eks_cluster_arn(&self) -> String {
        format!(
            "arn:{}:eks:{}:{}:cluster/{}",
            self.partition(),
            self.aws.region.as_deref().unwrap_or(REGION_PLACEHOLDER),
            self.account_id_or_placeholder(),
            self.eks_cluster_name()
        )
    }

    /// Host and path of the issuer, the way IAM names providers and condition keys.
    pub fn issuer_host_path(&self) -> String {
        match &self.oidc.issuer_url {
            Some(url) => url
                .trim_start_matches("https://")
                .trim_end_matches('/')
                .to_string(),
            None => match &self.oidc.provider_arn {
                Some(arn) => arn
                    .split_once(":oidc-provider/")
                    .map(|(_, host_path)| host_path.to_string())
                    .unwrap_or_else(|| ISSUER_PLACEHOLDER.to_string()),
                None => ISSUER_PLACEHOLDER.to_string(),
            },
        }
    }

    /// The primary provider ARN: configured, else derived from account and issuer.
    pub fn provider_arn(&self) -> String {
        self.oidc.provider_arn.clone().unwrap_or_else(|| {
            self.provider_arn_for(self.account_id_or_placeholder(), &self.issuer_host_path())
        })
    }

    /// The ARN IAM gives the OIDC provider for `issuer` (a URL, or its host and path) in
    /// `account`, in this configuration's partition.
    pub fn provider_arn_for(&self, account: &str, issuer: &str) -> String {
        let host_path = issuer.trim_start_matches("https://").trim_end_matches('/');
        format!(
            "arn:{}:iam::{account}:oidc-provider/{host_path}",
            self.partition()
        )
    }

    /// Every provider the trust policy names: the primary first, then the additional ones.
    pub fn all_provider_arns(&self) -> Vec<String> {
        let mut arns = vec![self.provider_arn()];
        for arn in &self.oidc.additional_provider_arns {
            if !arns.contains(arn) {
                arns.push(arn.clone());
            }
        }
        arns
    }

    pub fn drift_interval(&self) -> Result<Duration, ConfigProblem> {
        humantime::parse_duration(&self.drift_interval).map_err(|err| ConfigProblem {
            setting: "driftInterval",
            message: format!(
                "{:?} is not a duration ({err}); write it like 10m, 90s or 1h",
                self.drift_interval
            ),
        })
    }

    /// Whether ServiceAccount annotations may ask for a role in `namespace`.
    pub fn short_form_allowed(&self, namespace: &str) -> bool {
        self.short_form.enabled
            && (self.short_form.namespaces.is_empty()
                || self.short_form.namespaces.iter().any(|n| n == namespace))
    }

    /// Why ServiceAccount annotations asking for a role in `namespace` make nothing, naming
    /// the setting that says so; `None` where the short form is on.
    pub fn short_form_refusal(&self, namespace: &str) -> Option<String> {
        if self.short_form_allowed(namespace) {
            return None;
        }
        Some(format!(
            "podidentity.io/ annotations ask for a role, but the short form is off {} in the \
             operator's configuration: write a PodIdentityBinding, or turn the short form on \
             here",
            if self.short_form.enabled {
                "in this namespace (shortForm.namespaces)"
            } else {
                "(shortForm.enabled)"
            }
        ))
    }

    /// Why the operator makes nothing for a CredentialsRequest in `namespace`, naming the
    /// setting; `None` where it reconciles them.
    pub fn credentials_request_refusal(&self, namespace: &str) -> Option<String> {
        if self.honours_credentials_requests(namespace) {
            return None;
        }
        if !self.credentials_requests.enabled {
            return Some(
                "credentialsRequests.enabled is false, so the operator ignores \
                 CredentialsRequests: turn it on to reconcile them"
                    .into(),
            );
        }
        Some(format!(
            "requests are honoured only in credentialsRequests.namespaces ({}): a request \
             names Secrets and ServiceAccounts in any namespace, so make it there",
            self.credentials_requests.namespaces.join(", ")
        ))
    }

    /// Whether the operator reconciles CredentialsRequests in `namespace`.
    pub fn honours_credentials_requests(&self, namespace: &str) -> bool {
        self.credentials_requests.enabled
            && self
                .credentials_requests
                .namespaces
                .iter()
                .any(|n| n == namespace)
    }
}

/// One account the operator makes roles in, by assuming `roleArn` there with its own
/// credentials.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountConfig {
    /// The account's id (12 digits); PodIdentityPolicies name it in `spec.account`.
    pub id: String,
    /// The role in that account the operator assumes (STS AssumeRole) to act there.
    pub role_arn: String,
    /// This account's own request budget (IAM's rate limits are per account); unset:
    /// `aws.maxRequestsPerSecond`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_second: Option<f64>,
}

/// The account named in an IAM ARN (`arn:<partition>:iam::<account>:...`), when it is an
/// account id (not `aws`, AWS's own managed policies).
pub fn account_of_arn(arn: &str) -> Option<&str> {
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

/// The smallest configuration that passes its checks, for the tests of each module.
#[cfg(test)]
pub(crate) fn valid_for_tests() -> OperatorConfig {
    OperatorConfig {
        cluster_name: "prod".into(),
        ..OperatorConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> OperatorConfig {
        valid_for_tests()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let config = valid();
        assert_eq!(config.problems(), vec![]);
        assert_eq!(config.role_name_prefix(), "prod-");
        assert_eq!(config.role_path(), "/podidentity/prod/");
        assert_eq!(config.trust_policy.max_bytes, 2048);
        for escape in [
            "iam:*",
            "organizations:*",
            "sts:AssumeRole",
            "ssm:SendCommand",
        ] {
            assert!(config.guardrails.denied_actions.iter().any(|a| a == escape));
        }
        assert!(
            config
                .guardrails
                .actions_needing_named_resources
                .iter()
                .any(|a| a == "secretsmanager:GetSecretValue")
        );
        assert_eq!(config.drift_interval(), Ok(Duration::from_secs(600)));
        assert_eq!(config.deletion_policy, DeletionPolicy::Delete);
    }

    #[test]
    fn provider_arn_is_derived_from_account_and_issuer() {
        let mut config = valid();
        config.aws.account_id = Some("111122223333".into());
        config.oidc.issuer_url = Some("https://oidc.example.com/id/ABC/".into());
        assert_eq!(
            config.provider_arn(),
            "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/ABC"
        );
        config.aws.region = Some("cn-north-1".into());
        assert!(config.provider_arn().starts_with("arn:aws-cn:iam::"));
    }

    #[test]
    fn missing_account_and_issuer_show_placeholders() {
        assert_eq!(
            valid().provider_arn(),
            "arn:aws:iam::<account-id>:oidc-provider/<oidc-issuer>"
        );
    }

    #[test]
    fn rust_defaults_equal_the_defaults_of_an_empty_file() {
        let from_empty_file: OperatorConfig = match serde_json::from_str("{}") {
            Ok(config) => config,
            Err(err) => panic!("{err}"),
        };
        assert_eq!(from_empty_file, OperatorConfig::default());
    }

    #[test]
    fn unknown_settings_are_refused() {
        let err =
            serde_json::from_str::<OperatorConfig>(r#"{"clusterName":"a","clustername":"b"}"#)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
        assert!(err.contains("unknown field `clustername`"), "{err}");
    }
}
