//! OpenShift's `CredentialsRequest` (`cloudcredential.openshift.io/v1`), as far as the
//! operator reads and writes it: the AWS provider spec, the Secret and ServiceAccounts it
//! names, and the status the Cloud Credential Operator writes. The CRD is OpenShift's
//! (installed by the cluster, or by hand elsewhere); the operator never generates or
//! installs it. Unknown fields are kept, not refused: the CRD is not ours to narrow.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const GROUP: &str = "cloudcredential.openshift.io";
pub const CRD_NAME: &str = "credentialsrequests.cloudcredential.openshift.io";
pub const AWS_PROVIDER_SPEC: &str = "AWSProviderSpec";
/// The audience of the tokens OpenShift's operators project for themselves.
pub const OPENSHIFT_AUDIENCE: &str = "openshift";
/// Where OpenShift's operators mount that token, and ccoctl's `web_identity_token_file`.
pub const DEFAULT_CLOUD_TOKEN_PATH: &str = "/var/run/secrets/openshift/serviceaccount/token";
/// The Cloud Credential Operator's label and annotation on the Secrets it writes.
pub const SECRET_LABEL: &str = "cloudcredential.openshift.io/credentials-request";
pub const SECRET_ANNOTATION: &str = "cloudcredential.openshift.io/credentials-request";

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "cloudcredential.openshift.io",
    version = "v1",
    kind = "CredentialsRequest",
    plural = "credentialsrequests",
    namespaced,
    status = "CredentialsRequestStatus",
    derive = "Default",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRequestSpec {
    #[serde(default)]
    pub secret_ref: SecretReference,
    /// `kind: AWSProviderSpec` with `statementEntries`; other clouds' kinds are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_spec: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_account_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_token_path: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SecretReference {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
}

/// `providerSpec` of kind `AWSProviderSpec`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AwsProviderSpec {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub statement_entries: Vec<StatementEntry>,
    /// A role made elsewhere (ccoctl), for the Cloud Credential Operator to use.
    #[serde(
        default,
        rename = "stsIAMRoleARN",
        skip_serializing_if = "Option::is_none"
    )]
    pub sts_iam_role_arn: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatementEntry {
    #[serde(default)]
    pub effect: String,
    #[serde(default)]
    pub action: Vec<String>,
    /// One resource pattern (OpenShift's type is a string, not a list).
    #[serde(default)]
    pub resource: String,
    /// IAM's condition block: operator → key → value(s); values may be booleans.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub policy_condition: BTreeMap<String, BTreeMap<String, Value>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRequestStatus {
    #[serde(default)]
    pub provisioned: bool,
    #[serde(default)]
    pub last_sync_generation: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_timestamp: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<CredentialsRequestCondition>,
    /// CCO's free-form provider status; the operator records here what it provisioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<Value>,
}

/// What a request was last provisioned with (in `status.providerStatus`), so a change of
/// `secretRef` or the request's deletion cleans up what was made, not what is asked now.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Provisioned {
    pub role_name: String,
    pub role_arn: String,
    pub secret_namespace: String,
    pub secret_name: String,
}

impl Provisioned {
    /// Whether both name the same role and Secret (the ARN aside).
    pub fn same_objects(&self, other: &Provisioned) -> bool {
        self.role_name == other.role_name
            && self.secret_namespace == other.secret_namespace
            && self.secret_name == other.secret_name
    }
}

impl CredentialsRequestStatus {
    pub fn provisioned_objects(&self) -> Option<Provisioned> {
        self.provider_status
            .as_ref()
            .and_then(|status| serde_json::from_value(status.clone()).ok())
            .filter(|recorded: &Provisioned| !recorded.role_name.is_empty())
    }
}

/// The Cloud Credential Operator's condition shape (not `metav1.Condition`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRequestCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

impl CredentialsRequestSpec {
    /// Whether the provider spec is AWS's (well-formed or not).
    pub fn is_for_aws(&self) -> bool {
        self.provider_spec
            .as_ref()
            .and_then(|spec| spec.get("kind"))
            .and_then(Value::as_str)
            == Some(AWS_PROVIDER_SPEC)
    }

    /// The AWS provider spec; `None` when the request is for another cloud (or says
    /// nothing), which the operator ignores as the Cloud Credential Operator does.
    pub fn aws(&self) -> Option<Result<AwsProviderSpec, String>> {
        if !self.is_for_aws() {
            return None;
        }
        let spec = self.provider_spec.as_ref()?;
        Some(
            serde_json::from_value(spec.clone())
                .map_err(|e| format!("spec.providerSpec: not an AWSProviderSpec: {e}")),
        )
    }
}
