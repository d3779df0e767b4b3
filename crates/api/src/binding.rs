//! The `PodIdentityBinding` custom resource: one IAM role for one ServiceAccount.
//!
//! Every field carries a description (for `kubectl explain`) and the schema bounds the API
//! server enforces on `kubectl apply`. The same rules run again in Rust
//! (`podidentity_iam::validate`), because schemas can be bypassed by older CRD versions and
//! `plan` has no API server.

use std::collections::BTreeMap;

use crate::conditions::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::annotations::DEFAULT_AUDIENCE;

pub const MIN_SESSION_SECONDS: i64 = 3_600;
pub const MAX_SESSION_SECONDS: i64 = 43_200;
pub const MIN_TOKEN_EXPIRATION_SECONDS: i64 = 600;
pub const MAX_TOKEN_EXPIRATION_SECONDS: i64 = 86_400;
pub const DEFAULT_TOKEN_PATH: &str = "/var/run/secrets/openshift/serviceaccount/token";

/// Kubernetes object names (DNS-1123 subdomain).
pub const DNS_SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$";

/// Whether `name` is a Kubernetes name of at most `max` characters: lower-case letters,
/// digits and `-` (and `.` where `dots`), beginning and ending with a letter or digit. A
/// namespace is `is_dns_name(name, 63, false)`, an object `is_dns_name(name, 253, true)`.
pub fn is_dns_name(name: &str, max: usize, dots: bool) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.'))
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.'])
}
/// `*`, or `service:Action` where either part may hold `*` and `?` wildcards.
pub const ACTION_PATTERN: &str = r"^(\*|[a-zA-Z0-9*?-]+:[a-zA-Z0-9*?]+)$";
/// `*` or any ARN (IAM checks the rest when the policy is put).
pub const RESOURCE_PATTERN: &str = r"^(\*|arn:.+)$";
/// An IAM managed policy ARN, AWS-managed or customer-managed.
pub const MANAGED_POLICY_ARN_PATTERN: &str = r"^arn:aws(-cn|-us-gov|-iso|-iso-b)?:iam::(aws|[0-9]{12}):policy/([A-Za-z0-9_+=,.@-]+/)*[A-Za-z0-9_+=,.@-]+$";
/// IAM role name characters; empty means "derive the name".
pub const ROLE_NAME_PATTERN: &str = r"^[A-Za-z0-9_+=,.@-]*$";
/// IAM tag keys and values: letters, spaces, digits and `_.:/=+-@`.
pub const TAG_PATTERN: &str = r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$";
/// At most 50 tags per role, of which the operator's ownership tags take 3.
pub const MAX_USER_TAGS: usize = 47;
/// IAM statement ids are alphanumeric.
pub const SID_PATTERN: &str = r"^[a-zA-Z0-9]*$";

/// A request for one IAM role that exactly one ServiceAccount in this namespace may assume.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "podidentity.io",
    version = "v1alpha1",
    kind = "PodIdentityBinding",
    plural = "podidentitybindings",
    shortname = "pib",
    namespaced,
    status = "PodIdentityBindingStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "Binds one ServiceAccount of this namespace to one IAM role the operator keeps in line.",
    printcolumn = r#"{"name":"Service Account","type":"string","jsonPath":".spec.serviceAccountName"}"#,
    printcolumn = r#"{"name":"Role ARN","type":"string","jsonPath":".status.roleArn"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodIdentityBindingSpec {
    /// Name of the ServiceAccount that may assume the role. Always in the binding's own
    /// namespace: a binding can never grant another namespace's ServiceAccount.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub service_account_name: String,

    /// Create the ServiceAccount (owned by this binding) when it does not exist.
    #[serde(default)]
    pub create_service_account: bool,

    /// Audience of the projected token; also the `:aud` condition of the trust policy.
    #[serde(default = "default_audience")]
    #[schemars(length(min = 1, max = 256))]
    pub audience: String,

    /// What the role may do: one inline policy and a list of managed policies.
    #[serde(default)]
    pub permissions: Permissions,

    /// Optional settings of the IAM role itself.
    #[serde(default)]
    pub role: RoleSpec,

    /// How the pod webhook injects credentials; written as ServiceAccount annotations.
    #[serde(default)]
    pub injection: InjectionSpec,

    /// Write a credentials Secret (OpenShift ccoctl format) for clusters without the pod
    /// webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<CredentialsSecretSpec>,

    /// What happens to the IAM role when the binding is deleted. Unset: the operator's
    /// configured default (`Delete` unless changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// How pods get the role: IAM Roles for Service Accounts or EKS Pod Identity.
    #[serde(default, skip_serializing_if = "IdentitySpec::is_unset")]
    pub identity: IdentitySpec,
}

fn default_audience() -> String {
    DEFAULT_AUDIENCE.to_string()
}

/// The same defaults as deserialization fills in, so code building specs gets what a
/// manifest that leaves the fields out gets.
impl Default for PodIdentityBindingSpec {
    fn default() -> Self {
        Self {
            service_account_name: String::new(),
            create_service_account: false,
            audience: default_audience(),
            permissions: Permissions::default(),
            role: RoleSpec::default(),
            injection: InjectionSpec::default(),
            credentials_secret: None,
            deletion_policy: None,
            identity: IdentitySpec::default(),
        }
    }
}

/// The role's permissions. `statements` become ONE inline policy; managed policies are
/// attached. Both are kept exactly as written: anything else found on the role is removed.
///
/// Unique sids are the operator's check (`InvalidSpec`, and `plan`), not a CEL rule: the
/// rule needs a comprehension inside a comprehension, which kube-apiserver 1.24's CEL
/// sometimes fails under concurrent writes ("index out of range"), refusing unrelated
/// writes to the object (the operator's own finalizer and status patches among them).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Permissions {
    /// Statements of the role's inline policy (omit for no inline policy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub statements: Vec<Statement>,

    /// ARNs of managed policies to attach. Must pass the operator's allow-list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 20),
        inner(length(max = 2048), regex(pattern = MANAGED_POLICY_ARN_PATTERN))
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub managed_policy_arns: Vec<String>,
}

/// One IAM policy statement.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Statement {
    /// Optional statement id (letters and digits only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128), regex(pattern = SID_PATTERN))]
    pub sid: Option<String>,

    /// `Allow` (default) or `Deny`.
    #[serde(default)]
    pub effect: Effect,

    /// Actions, e.g. `s3:GetObject`; `*` and `?` wildcards allowed.
    #[schemars(length(min = 1, max = 100), inner(length(max = 128), regex(pattern = ACTION_PATTERN)))]
    pub actions: Vec<String>,

    /// Resource ARNs, or `*`.
    #[schemars(length(min = 1, max = 100), inner(length(max = 2048), regex(pattern = RESOURCE_PATTERN)))]
    pub resources: Vec<String>,

    /// IAM condition block: operator (e.g. `StringEquals`) to condition key to values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// Whether a statement allows or denies its actions.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Effect {
    #[default]
    Allow,
    Deny,
}

/// Settings of the IAM role itself.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleSpec {
    /// Explicit role name instead of `<prefix><namespace>.<binding>`. Refused unless the
    /// operator is configured with `roles.allowNameOverride`, and when it has the shape of
    /// another namespace's derived names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), regex(pattern = ROLE_NAME_PATTERN))]
    pub name: Option<String>,

    /// Description of the role in IAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub description: Option<String>,

    /// Maximum session duration in seconds (3600 to 43200).
    #[serde(default = "default_max_session")]
    #[schemars(range(min = MIN_SESSION_SECONDS, max = MAX_SESSION_SECONDS))]
    pub max_session_duration_seconds: i64,

    /// User tags on the role: at most 47 (IAM allows 50; the operator adds 3 ownership
    /// tags). Keys starting with `podidentity.io/` or `aws:` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "tags_schema")]
    pub tags: BTreeMap<String, String>,
}

/// Bounds at every level instead of CEL: the API server's CEL cost estimator assumes map
/// keys of unbounded length, so string functions over them can push a rule over budget.
fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 20,
        "additionalProperties": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 50,
            "additionalProperties": {
                "type": "array",
                "minItems": 1,
                "maxItems": 100,
                "items": {"type": "string", "maxLength": 1024}
            }
        }
    })
}

/// Values are bounded by schema; keys by cheap CEL (size and fixed prefixes only, see
/// [`conditions_schema`]). The key charset is checked by the operator's own validation.
fn tags_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": MAX_USER_TAGS,
        "additionalProperties": {"type": "string", "maxLength": 256},
        "x-kubernetes-validations": [
            {"rule": "self.all(k, size(k) >= 1 && size(k) <= 128)",
             "message": "tag keys must be 1 to 128 characters"},
            {"rule": "self.all(k, !k.matches('^(?i)(podidentity\\\\.io/|aws:)'))",
             "message": "tag keys starting with podidentity.io/ or aws: (in any case: IAM tag keys are case-insensitive) are reserved: rename the tag"}
        ]
    })
}

fn default_max_session() -> i64 {
    MIN_SESSION_SECONDS
}

impl Default for RoleSpec {
    fn default() -> Self {
        Self {
            name: None,
            description: None,
            max_session_duration_seconds: default_max_session(),
            tags: BTreeMap::new(),
        }
    }
}

/// How the pod webhook injects credentials (written as ServiceAccount annotations).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectionSpec {
    /// Lifetime of the projected token in seconds (600 to 86400).
    #[serde(default = "default_token_expiration")]
    #[schemars(range(min = MIN_TOKEN_EXPIRATION_SECONDS, max = MAX_TOKEN_EXPIRATION_SECONDS))]
    pub token_expiration_seconds: i64,

    /// Use the regional STS endpoint (`AWS_STS_REGIONAL_ENDPOINTS=regional`).
    #[serde(default = "default_true")]
    pub sts_regional_endpoints: bool,

    /// Restart the Deployments, StatefulSets and DaemonSets whose pods started without
    /// the role (before the ServiceAccount was annotated), the way `kubectl rollout
    /// restart` does: once per role, never deleting a bare pod. Needs the operator's
    /// `allowPodRestarts`; without it such pods are only counted and named in an Event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_pods: bool,
}

fn default_token_expiration() -> i64 {
    MAX_TOKEN_EXPIRATION_SECONDS
}

fn default_true() -> bool {
    true
}

impl Default for InjectionSpec {
    fn default() -> Self {
        Self {
            token_expiration_seconds: default_token_expiration(),
            sts_regional_endpoints: default_true(),
            restart_pods: false,
        }
    }
}

/// An absolute file path of printable characters (a line break would write another line
/// into the credentials file), not ending in `/`.
pub const TOKEN_PATH_PATTERN: &str = r"^/[^\x00-\x1f\x7f]*[^/\x00-\x1f\x7f]$";

/// A Secret in the OpenShift ccoctl format, for pods on clusters without the webhook.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsSecretSpec {
    /// Name of the Secret (in the binding's namespace, owned by the binding).
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,

    /// Where pods mount the ServiceAccount token (`web_identity_token_file`).
    #[serde(default = "default_token_path")]
    #[schemars(length(min = 2, max = 4096), regex(pattern = TOKEN_PATH_PATTERN))]
    pub token_path: String,
}

fn default_token_path() -> String {
    DEFAULT_TOKEN_PATH.to_string()
}

/// How pods of the ServiceAccount get the role's credentials.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Mechanism {
    /// IAM Roles for Service Accounts: the role trusts the cluster's OIDC provider for the
    /// ServiceAccount's token; the ServiceAccount is annotated with the role's ARN.
    #[default]
    #[serde(rename = "IRSA")]
    Irsa,
    /// EKS Pod Identity: the role trusts `pods.eks.amazonaws.com` for this cluster,
    /// namespace and ServiceAccount; an EKS association names the ServiceAccount.
    PodIdentity,
}

impl Mechanism {
    /// The mechanism a binding moves away from when it moves to this one.
    pub fn other(self) -> Mechanism {
        match self {
            Mechanism::Irsa => Mechanism::PodIdentity,
            Mechanism::PodIdentity => Mechanism::Irsa,
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mechanism::Irsa => "IRSA",
            Mechanism::PodIdentity => "PodIdentity",
        })
    }
}

/// An IAM role ARN (role chaining's target; IAM checks the rest).
pub const ROLE_ARN_PATTERN: &str = r"^arn:aws(-cn|-us-gov|-iso|-iso-b)?:iam::[0-9]{12}:role/([A-Za-z0-9_+=,.@-]+/)*[A-Za-z0-9_+=,.@-]+$";

/// The identity mechanism and, for Pod Identity, the association's options.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.policy) || (has(self.disableSessionTags) && self.disableSessionTags)",
     "message": "identity.policy needs identity.disableSessionTags: true (EKS refuses a session policy while session tags are on): set it, or drop the policy"},
    {"rule": "!has(self.mechanism) || self.mechanism != 'IRSA' || (!has(self.targetRoleArn) && !has(self.policy) && !(has(self.disableSessionTags) && self.disableSessionTags))",
     "message": "identity.targetRoleArn, identity.disableSessionTags and identity.policy are Pod Identity options: set identity.mechanism: PodIdentity, or drop them"}
]))]
pub struct IdentitySpec {
    /// `IRSA` or `PodIdentity`. Unset: the operator's `identity.defaultMechanism` (`IRSA`
    /// unless configured). Changing it switches the role's trust and the ServiceAccount's
    /// annotation or association at once: restart the pods (a stepwise migration is being
    /// built; see docs/pod-identity.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<Mechanism>,

    /// Pod Identity only: a role (in any account the operator's rules allow) that pods'
    /// credentials are for, assumed from this binding's role (role chaining).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = ROLE_ARN_PATTERN))]
    pub target_role_arn: Option<String>,

    /// Pod Identity only: EKS adds no session tags (kubernetes-namespace, ...). The role's
    /// trust can then pin only the account, not the namespace and ServiceAccount.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_session_tags: bool,

    /// Pod Identity only: a session policy narrowing what pods' sessions may do (needs
    /// `disableSessionTags: true`; at most 2,048 characters). It can only take away from
    /// what the role allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<SessionPolicy>,
}

impl IdentitySpec {
    pub fn is_unset(&self) -> bool {
        self == &Self::default()
    }

    /// The mechanism in force, given the operator's default.
    pub fn effective_mechanism(&self, operator_default: Mechanism) -> Mechanism {
        self.mechanism.unwrap_or(operator_default)
    }
}

/// A session policy: statements as in `permissions.statements`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionPolicy {
    /// The policy's statements (Allow narrows nothing beyond the role; what no statement
    /// allows, the session cannot do).
    #[schemars(length(min = 1, max = 100))]
    pub statements: Vec<Statement>,
}

/// What happens to the IAM role when its binding is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Detach and delete everything, then delete the role.
    #[default]
    Delete,
    /// Keep the role; drop only the ownership tags.
    Retain,
}

/// What the operator last did for this binding.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentityBindingStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Name of the IAM role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_name: Option<String>,
    /// ARN of the IAM role (what the ServiceAccount annotation carries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// IAM's unique id of the role (`AROA...`); it never changes while the role lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_id: Option<String>,
    /// Size of the minified trust policy against the account's quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_policy: Option<TrustPolicySize>,
    /// The ServiceAccount this binding last annotated; when `spec.serviceAccountName`
    /// changes, the operator takes its annotations back from this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Pods of the ServiceAccount running without this role (started before the
    /// ServiceAccount was annotated, or with another role's ARN): they get it when
    /// restarted. Counted while the binding is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods_needing_restart: Option<i64>,
    /// The mechanism the operator last put in place for the binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<Mechanism>,
    /// The EKS Pod Identity association (Pod Identity only, and while a migration away
    /// from Pod Identity waits for its pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association: Option<AssociationStatus>,
    /// A change of mechanism under way: the role trusts both until no running pod uses
    /// the old one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationStatus>,
    /// The namespace moved to another AWS account: the roles it had there, kept until no
    /// running pod uses them, then deleted (or retained, by the deletion policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_move: Option<AccountMoveStatus>,
    /// Ready, Reconciling, Stalled, PolicyAccepted, RoleSynced, ServiceAccountBound, and
    /// RoleAssumable with the operator's `verifyAssumable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// An EKS Pod Identity association the operator keeps.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssociationStatus {
    /// EKS's id (`a-...`).
    pub id: String,
    pub arn: String,
    /// The association gives sessions no tags (the trust pins no tag then; a migration
    /// away keeps trusting what the running pods' sessions carry).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_session_tags: bool,
    /// The role EKS chains into (`targetRoleArn`); a migration away keeps the role able to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_role_arn: Option<String>,
}

/// A change of mechanism under way (see the `Migrating` condition).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    /// The mechanism pods are moving away from; the role still trusts it.
    pub from: Mechanism,
    /// The mechanism new pods get.
    pub to: Mechanism,
    /// Running pods of the ServiceAccount that still use `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods_remaining: Option<i64>,
    /// The ServiceAccount whose pods use `from` (the one bound when the migration began).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// A move to another account under way (see the `Migrating` condition).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountMoveStatus {
    /// ARNs of the roles in the accounts the namespace left, each kept while running pods
    /// use it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_role_arns: Vec<String>,
    /// Running pods of the ServiceAccount that still use one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods_remaining: Option<i64>,
}

/// Size of the minified trust policy in bytes, and the quota it must fit in.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct TrustPolicySize {
    /// Bytes of the minified trust policy.
    pub bytes: i64,
    /// The quota it must fit in (`trustPolicy.maxBytes`).
    pub limit: i64,
}

impl PodIdentityBindingSpec {
    /// The deletion policy in force, given the operator's default.
    pub fn effective_deletion_policy(&self, operator_default: DeletionPolicy) -> DeletionPolicy {
        self.deletion_policy.unwrap_or(operator_default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_defaults_equal_the_defaults_of_a_sparse_manifest() {
        let sparse: PodIdentityBindingSpec = serde_json::from_str(r#"{"serviceAccountName":""}"#)
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(sparse, PodIdentityBindingSpec::default());
        assert_eq!(sparse.audience, "sts.amazonaws.com");
        assert_eq!(sparse.role.max_session_duration_seconds, 3600);
        assert_eq!(sparse.injection.token_expiration_seconds, 86_400);
        assert!(sparse.injection.sts_regional_endpoints);
    }
}
