//! Condition types and reasons: stable words that Argo CD, Flux, `kubectl wait` and alerts
//! depend on. Reasons double as Event reasons and metric labels.

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const POLICY_ACCEPTED: &str = "PolicyAccepted";
pub const ROLE_SYNCED: &str = "RoleSynced";
pub const SERVICE_ACCOUNT_BOUND: &str = "ServiceAccountBound";
/// With `verifyAssumable`: a token of the ServiceAccount was exchanged for the role.
pub const ROLE_ASSUMABLE: &str = "RoleAssumable";
/// While the binding's mechanism changes: True until no running pod uses the old one.
pub const MIGRATING: &str = "Migrating";

/// Every condition type the operator writes, in display order.
pub const ALL_TYPES: [&str; 8] = [
    READY,
    RECONCILING,
    STALLED,
    POLICY_ACCEPTED,
    ROLE_SYNCED,
    SERVICE_ACCOUNT_BOUND,
    ROLE_ASSUMABLE,
    MIGRATING,
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
    /// STS exchanged a token of the binding's ServiceAccount for the role.
    pub const ASSUMED: &str = "Assumed";
    /// STS refused the exchange (or IAM has not caught up yet): retried with backoff.
    pub const NOT_ASSUMABLE: &str = "NotAssumable";
    /// The API server would not issue a token for the ServiceAccount.
    pub const TOKEN_REQUEST_FAILED: &str = "TokenRequestFailed";
    /// Event: pods of the ServiceAccount started without the role.
    pub const PODS_NEED_RESTART: &str = "PodsNeedRestart";
    /// An EKS Pod Identity association for the ServiceAccount names another role (or an
    /// AWS service owns it): the operator leaves it alone.
    pub const ASSOCIATION_CONFLICT: &str = "AssociationConflict";
    /// The cluster has as many EKS Pod Identity associations as it may
    /// (`eks.maxAssociations`): a binding needing a new one is refused before any call.
    pub const ASSOCIATION_QUOTA_EXCEEDED: &str = "AssociationQuotaExceeded";
    /// Migrating: the role trusts both mechanisms and new pods get the new one; running
    /// pods still use the old one.
    pub const WAITING_FOR_PODS: &str = "WaitingForPods";
    /// Event: a migration rolled the workloads of pods still on the old mechanism.
    pub const PODS_RESTARTED: &str = "PodsRestarted";
    /// Event: a change of mechanism began (the role trusts both).
    pub const MIGRATION_STARTED: &str = "MigrationStarted";
    /// Event: no running pod uses the old mechanism; the role trusts the new one only.
    pub const MIGRATION_COMPLETE: &str = "MigrationComplete";
    /// Migrating: the namespace moved to another account; the role there is in place
    /// and new pods get it, running pods still use the role in the account it left.
    pub const MOVING_ACCOUNT: &str = "MovingAccount";
    /// Event: a role in an account the namespace left was deleted (or retained), no
    /// running pod using it any more.
    pub const ROLE_RETIRED: &str = "RoleRetired";
}

/// Every reason the operator writes.
pub const ALL_REASONS: [&str; 21] = [
    reason::SYNCED,
    reason::INVALID_SPEC,
    reason::GUARDRAIL_VIOLATION,
    reason::TRUST_POLICY_TOO_LARGE,
    reason::ROLE_CONFLICT,
    reason::SERVICE_ACCOUNT_NOT_FOUND,
    reason::SERVICE_ACCOUNT_CONFLICT,
    reason::MANAGED_POLICY_NOT_FOUND,
    reason::CREDENTIALS_SECRET_CONFLICT,
    reason::INVALID_OBJECT,
    reason::AWS_THROTTLED,
    reason::AWS_ACCESS_DENIED,
    reason::AWS_UNAVAILABLE,
    reason::DELETING,
    reason::ASSUMED,
    reason::NOT_ASSUMABLE,
    reason::TOKEN_REQUEST_FAILED,
    reason::ASSOCIATION_CONFLICT,
    reason::WAITING_FOR_PODS,
    reason::ASSOCIATION_QUOTA_EXCEEDED,
    reason::MOVING_ACCOUNT,
];

/// A condition's type, status or reason: one of the operator's own words, held as a
/// `&'static str`, or any other (a newer operator's, a hand edit) held as written. Ten
/// thousand cached bindings with six conditions each hold no copies of "Ready" or "True".
pub type Word = std::borrow::Cow<'static, str>;

/// `text` as a [`Word`]: borrowed when it is one of the operator's own.
/// At most this many characters in a condition's message (metav1.Condition's limit).
pub const MAX_CONDITION_MESSAGE: usize = 32_768;

/// At most this many characters in an Event's note: the API server refuses a longer one,
/// and the Event is lost.
pub const MAX_EVENT_NOTE: usize = 1_024;

/// `text` cut to `max` characters, ending in `…` when cut: a refusal that quotes every
/// long pattern of a binding must still be written, not refused by the API server.
pub fn shortened(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

pub fn word(text: &str) -> Word {
    ALL_TYPES
        .iter()
        .chain(["True", "False", "Unknown"].iter())
        .chain(ALL_REASONS.iter())
        .find(|known| **known == text)
        .map_or_else(
            || Word::Owned(text.to_string()),
            |known| Word::Borrowed(known),
        )
}

/// A status condition: the fields, JSON and schema of Kubernetes' `metav1.Condition`,
/// with its words held as [`Word`]s.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    pub last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, deserialize_with = "deserialize_word")]
    pub reason: Word,
    #[serde(default, deserialize_with = "deserialize_word")]
    pub status: Word,
    #[serde(rename = "type", default, deserialize_with = "deserialize_word")]
    pub type_: Word,
}

fn deserialize_word<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Word, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Word;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Word, E> {
            Ok(word(text))
        }
    }
    deserializer.deserialize_str(Visitor)
}

/// The schema is Kubernetes' own, so the CRD is the same as with `metav1.Condition`.
impl schemars::JsonSchema for Condition {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        <k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition as schemars::JsonSchema>::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        <k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition as schemars::JsonSchema>::schema_id()
    }
    fn inline_schema() -> bool {
        <k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition as schemars::JsonSchema>::inline_schema()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition as schemars::JsonSchema>::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_to_their_limit_in_characters() {
        assert_eq!(shortened("short".into(), 10), "short");
        let cut = shortened("一".repeat(2000), MAX_EVENT_NOTE);
        assert_eq!(cut.chars().count(), MAX_EVENT_NOTE);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn a_condition_reads_and_writes_as_kubernetes_does_and_holds_no_copy_of_its_own_words() {
        let json = serde_json::json!({
            "lastTransitionTime": "2026-11-23T09:19:30Z",
            "message": "",
            "observedGeneration": 1,
            "reason": "Synced",
            "status": "True",
            "type": "Ready",
        });
        let ours: Condition =
            serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{e}"));
        let theirs: k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition =
            serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            serde_json::to_value(&ours).ok(),
            serde_json::to_value(&theirs).ok()
        );
        assert_eq!(serde_json::to_value(&ours).ok(), Some(json));
        assert!(matches!(
            (&ours.type_, &ours.status, &ours.reason),
            (Word::Borrowed(_), Word::Borrowed(_), Word::Borrowed(_))
        ));

        let foreign: Condition = serde_json::from_value(serde_json::json!({
            "lastTransitionTime": "2026-11-23T09:19:30Z",
            "reason": "SomeoneElses",
            "status": "True",
            "type": "Degraded",
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(foreign.type_, "Degraded");
        assert!(matches!(foreign.reason, Word::Owned(_)));
        assert_eq!(foreign.message, "");
    }
}
