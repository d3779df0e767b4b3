//! The `PodIdentityPolicy` custom resource: what the bindings of the namespaces it selects
//! may ask for. Cluster-scoped, written by platform admins. Several policies selecting one
//! namespace all apply and the most restrictive wins; the operator configuration's
//! guardrails apply everywhere besides. `${namespace}`, `${cluster}`, `${account}`,
//! `${partition}` and `${region}` in resource and name patterns are replaced per namespace,
//! so one policy serves every team.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;

/// The template variables a policy's patterns may hold.
pub const TEMPLATE_VARIABLES: [&str; 5] =
    ["namespace", "cluster", "account", "partition", "region"];

/// The CEL rule a templated pattern list must pass: every `${` opens a template variable
/// (runs of `$` before it allowed, as the operator's own reading allows them).
const TEMPLATE_RULE: &str = "self.all(p, p.matches('^([^$]|[$]+[^{$]|[$]+[{](namespace|cluster|account|partition|region)[}])*[$]*$'))";

/// The CEL rule that every `${namespace}` of a templated pattern is closed: not followed
/// by a character a namespace name (or a wildcard, or another variable) could continue it
/// with, and no `*` before it in its ARN field. The operator's own reading is
/// `podidentity_iam::namespace_policy::open_namespace`.
const NAMESPACE_BOUNDARY_RULE: &str = "self.all(p, !p.matches('[$][{]namespace[}][A-Za-z0-9*?$-]') && !p.matches('[*][^:]*[$][{]namespace[}]'))";

/// An AWS account id: twelve digits.
pub const ACCOUNT_ID_PATTERN: &str = "^[0-9]{12}$";

/// Patterns per list: enough for any team layout, and a bound CEL's cost estimate needs.
const MAX_PATTERNS: u32 = 100;

/// What the bindings of some namespaces may ask for.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "podidentity.io",
    version = "v1alpha1",
    kind = "PodIdentityPolicy",
    plural = "podidentitypolicies",
    shortname = "pip",
    status = "PodIdentityPolicyStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "Confines the PodIdentityBindings of the namespaces it selects: the actions, resources, managed policies, boundary, role names and number of bindings they may have.",
    printcolumn = r#"{"name":"Namespaces","type":"integer","jsonPath":".status.selectedNamespaces"}"#,
    printcolumn = r#"{"name":"Governed","type":"integer","jsonPath":".status.bindingsGoverned"}"#,
    printcolumn = r#"{"name":"Refused","type":"integer","jsonPath":".status.bindingsRefused"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodIdentityPolicySpec {
    /// The namespaces this policy governs, by their labels. Left out, it selects none;
    /// write `{}` to select every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "selector_schema")]
    pub namespace_selector: Option<LabelSelector>,
    /// Action patterns (`s3:*`, `sqs:SendMessage`): every action of an Allow statement
    /// must lie within one of them. Empty: no such limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "patterns_schema")]
    pub allowed_actions: Vec<String>,
    /// Action patterns no Allow statement may reach (added to the configuration's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "patterns_schema")]
    pub denied_actions: Vec<String>,
    /// ARN patterns with templates (`arn:aws:s3:::${namespace}.*`): every resource of an
    /// Allow statement must lie within one of them (`"*"` only if one of them is `*`).
    /// Empty: no such limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "templated_patterns_schema")]
    pub allowed_resources: Vec<String>,
    /// Managed policy ARN patterns a binding may attach (each must match one of them, and
    /// the configuration's allow-list too). Empty: no such limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "patterns_schema")]
    pub allowed_managed_policy_arns: Vec<String>,
    /// Managed policy ARN patterns a binding may never attach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "patterns_schema")]
    pub denied_managed_policy_arns: Vec<String>,
    /// The permissions boundary every role of these namespaces gets (instead of the
    /// configuration's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary_arn: Option<String>,
    /// Patterns with templates (`${namespace}.*`) an explicit `spec.role.name` must match;
    /// setting them lets these namespaces name their roles. Empty: the configuration
    /// decides (`roles.allowNameOverride`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "templated_patterns_schema")]
    pub role_name_override: Vec<String>,
    /// At most this many bindings per namespace: the oldest keep their roles, the newest
    /// over the limit are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bindings_per_namespace: Option<u32>,
    /// The identity mechanisms these namespaces' bindings may use (`IRSA`,
    /// `PodIdentity`): one to require it, the other to forbid it. Empty: either.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    pub mechanisms: Vec<crate::binding::Mechanism>,
    /// ARN patterns with templates (`arn:aws:iam::444455556666:role/${namespace}.*`) a Pod
    /// Identity `identity.targetRoleArn` must match (and the configuration's
    /// `guardrails.allowedTargetRoleArns` too). Empty: the configuration decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "templated_patterns_schema")]
    pub allowed_target_role_arns: Vec<String>,
    /// The AWS account these namespaces' roles live in: one of the operator's
    /// `accounts`, which it acts in by assuming that account's role. Left out: the
    /// operator's own account (unless another policy selecting the namespace names one).
    /// Namespace owners cannot choose it; two policies placing one namespace in two
    /// accounts refuse its bindings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ACCOUNT_ID_PATTERN))]
    pub account: Option<String>,
    /// What happens to the role of a binding this policy comes to refuse (after the
    /// policy, or the namespace's labels, changed): `Keep` (the default) leaves the role
    /// as it was and only reports; `Revoke` also detaches its managed policies and deletes
    /// its inline policy, so the pods keep their role but lose its permissions.
    #[serde(default, skip_serializing_if = "OnViolation::is_keep")]
    pub on_violation: OnViolation,
}

/// What a refusal does to a role that exists already.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OnViolation {
    /// Leave the role as it was; the binding's status says why it is refused.
    #[default]
    Keep,
    /// Take the role's permissions away (its trust policy stays).
    Revoke,
}

impl OnViolation {
    fn is_keep(&self) -> bool {
        *self == OnViolation::Keep
    }
}

fn patterns_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": MAX_PATTERNS,
        "items": {"type": "string", "minLength": 1, "maxLength": 2048}
    })
}

fn templated_patterns_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": MAX_PATTERNS,
        "items": {"type": "string", "minLength": 1, "maxLength": 2048},
        "x-kubernetes-validations": [{
            "rule": TEMPLATE_RULE,
            "message": "a pattern uses ${...} that is not a template variable: use ${namespace}, ${cluster}, ${account}, ${partition} or ${region}"
        }, {
            "rule": NAMESPACE_BOUNDARY_RULE,
            "message": "${namespace} must end where no other namespace's name can go on (else namespace team reaches team-a's): follow it with '.', '_', '/' or ':' (arn:aws:s3:::${namespace}.*) or end the pattern, and put no * before it in its field"
        }]
    })
}

/// A label selector as Kubernetes reads one, with the operator rules the API server's own
/// types check but a CRD does not (so a policy that selects nothing by mistake is refused
/// at `kubectl apply`).
fn selector_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "properties": {
            "matchLabels": {
                "description": "Labels a namespace must carry, all of them.",
                "type": "object",
                "maxProperties": 64,
                "additionalProperties": {"type": "string", "maxLength": 63}
            },
            "matchExpressions": {
                "description": "Requirements a namespace's labels must meet, all of them.",
                "type": "array",
                "maxItems": 32,
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"description": "The label key.", "type": "string", "minLength": 1, "maxLength": 317},
                        "operator": {
                            "description": "In, NotIn, Exists or DoesNotExist.",
                            "type": "string",
                            "enum": ["In", "NotIn", "Exists", "DoesNotExist"]
                        },
                        "values": {
                            "description": "For In and NotIn: the values (at least one). For Exists and DoesNotExist: none.",
                            "type": "array",
                            "maxItems": 64,
                            "items": {"type": "string", "maxLength": 63}
                        }
                    },
                    "x-kubernetes-validations": [{
                        "rule": "(self.operator == 'In' || self.operator == 'NotIn') ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
                        "message": "In and NotIn need values; Exists and DoesNotExist take none"
                    }]
                }
            }
        }
    })
}

/// What the policy governs now.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentityPolicyStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many namespaces the selector selects.
    #[serde(default)]
    pub selected_namespaces: i64,
    /// Bindings in those namespaces.
    #[serde(default)]
    pub bindings_governed: i64,
    /// Of those, how many this policy refuses.
    #[serde(default)]
    pub bindings_refused: i64,
    /// `Ready`: the policy is valid and applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
