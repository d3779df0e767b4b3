//! Condition types and reasons: stable words that Argo CD, Flux, `kubectl wait` and alerts
//! depend on. Reasons double as Event reasons and metric labels.

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const POLICY_ACCEPTED: &str = "PolicyAccepted";
pub const ROLE_SYNCED: &str = "RoleSynced";
pub const SERVICE_ACCOUNT_BOUND: &str = "ServiceAccountBound";

/// Every condition type the operator writes, in display order.
pub const ALL_TYPES: [&str; 6] = [
    READY,
    RECONCILING,
    STALLED,
    POLICY_ACCEPTED,
    ROLE_SYNCED,
    SERVICE_ACCOUNT_BOUND,
];

pub mod reason {
    pub const SYNCED: &str = "Synced";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const GUARDRAIL_VIOLATION: &str = "GuardrailViolation";
    pub const TRUST_POLICY_TOO_LARGE: &str = "TrustPolicyTooLarge";
    pub const ROLE_CONFLICT: &str = "RoleConflict";
    pub const SERVICE_ACCOUNT_NOT_FOUND: &str = "ServiceAccountNotFound";
    /// Another binding owns the ServiceAccount (the oldest naming it); this one waits.
    pub const SERVICE_ACCOUNT_CONFLICT: &str = "ServiceAccountConflict";
    /// A managed policy ARN names no policy in IAM: the spec must change.
    pub const MANAGED_POLICY_NOT_FOUND: &str = "ManagedPolicyNotFound";
    /// A Secret of the wanted credentials Secret's name exists and is not the binding's.
    pub const CREDENTIALS_SECRET_CONFLICT: &str = "CredentialsSecretConflict";
    /// The object cannot be read by this operator (a newer CRD, a hand-edited field).
    pub const INVALID_OBJECT: &str = "InvalidObject";
    pub const AWS_THROTTLED: &str = "AwsThrottled";
    pub const AWS_ACCESS_DENIED: &str = "AwsAccessDenied";
    pub const AWS_UNAVAILABLE: &str = "AwsUnavailable";
    pub const DELETING: &str = "Deleting";
}
