//! Annotation, label and tag keys. The `eks.amazonaws.com/*` keys are the contract of
//! amazon-eks-pod-identity-webhook, kept byte-for-byte so existing manifests work.

/// ServiceAccount: the IAM role the pod webhook injects.
pub const ROLE_ARN: &str = "eks.amazonaws.com/role-arn";
/// ServiceAccount: the audience of the projected token.
pub const AUDIENCE: &str = "eks.amazonaws.com/audience";
/// ServiceAccount: `"true"` sets `AWS_STS_REGIONAL_ENDPOINTS=regional`.
pub const STS_REGIONAL_ENDPOINTS: &str = "eks.amazonaws.com/sts-regional-endpoints";
/// ServiceAccount or pod: lifetime of the projected token in seconds.
pub const TOKEN_EXPIRATION: &str = "eks.amazonaws.com/token-expiration";

/// The pod webhook's defaults: annotations equal to these are not written.
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";
pub const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 86_400;
pub const DEFAULT_STS_REGIONAL_ENDPOINTS: bool = false;

/// ServiceAccount short form: comma-separated managed policy ARNs.
pub const SHORT_FORM_MANAGED_POLICY_ARNS: &str = "podidentity.io/managed-policy-arns";
/// ServiceAccount short form: an IAM policy document (JSON) with the inline statements.
pub const SHORT_FORM_INLINE_POLICY: &str = "podidentity.io/inline-policy";
/// ServiceAccount short form: `IRSA` or `PodIdentity` (`spec.identity.mechanism`).
pub const SHORT_FORM_MECHANISM: &str = "podidentity.io/mechanism";
/// Label on bindings generated from a ServiceAccount's short-form annotations.
pub const FROM_SERVICE_ACCOUNT_LABEL: &str = "podidentity.io/from-service-account";

/// IAM ownership tags: a role is a binding's only if all three match.
pub const TAG_CLUSTER: &str = "podidentity.io/cluster";
pub const TAG_NAMESPACE: &str = "podidentity.io/namespace";
pub const TAG_BINDING: &str = "podidentity.io/binding";
/// The cluster's identity (its kube-system namespace's uid): two clusters given one
/// `clusterName` in one account still never adopt each other's roles. A role without it
/// (made before it existed) is adopted and gets it.
pub const TAG_CLUSTER_UID: &str = "podidentity.io/cluster-uid";

/// CRD annotation carrying [`crate::crd::SCHEMA_REVISION`], so a controller can refuse an
/// older CRD (Helm never upgrades `crds/`) instead of silently dropping fields.
pub const CRD_SCHEMA_REVISION: &str = "podidentity.io/schema-revision";
