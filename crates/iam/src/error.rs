//! The crate's one error type, and the violations a refused binding carries.

use serde::Serialize;

/// Why a binding is refused; each maps to a stable condition reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ViolationKind {
    /// The spec breaks a schema rule or an IAM limit.
    InvalidSpec,
    /// The spec is well-formed but the operator's guardrails refuse it.
    GuardrailViolation,
    /// The trust policy would exceed the account's size quota.
    TrustPolicyTooLarge,
}

impl ViolationKind {
    pub fn reason(self) -> &'static str {
        use podidentity_api::conditions::reason;
        match self {
            ViolationKind::InvalidSpec => reason::INVALID_SPEC,
            ViolationKind::GuardrailViolation => reason::GUARDRAIL_VIOLATION,
            ViolationKind::TrustPolicyTooLarge => reason::TRUST_POLICY_TOO_LARGE,
        }
    }
}

/// One thing wrong with a binding: the field (a path like
/// `spec.permissions.statements[0].actions[1]`), and what is wrong and what to change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub field: String,
    pub kind: ViolationKind,
    pub message: String,
}

impl Violation {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: ViolationKind::InvalidSpec,
            message: message.into(),
        }
    }

    pub fn guardrail(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: ViolationKind::GuardrailViolation,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("binding refused: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused(Vec<Violation>),
    #[error("policy document is not JSON: {0}")]
    PolicyNotJson(String),
    #[error("policy document is not valid UTF-8 after URL-decoding")]
    PolicyNotUtf8,
}

impl Error {
    /// The condition, Event and metric reason. A refusal takes the reason of its most
    /// specific violation: an invalid spec first, since fixing it may change the rest.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Refused(violations) => [
                ViolationKind::InvalidSpec,
                ViolationKind::TrustPolicyTooLarge,
                ViolationKind::GuardrailViolation,
            ]
            .into_iter()
            .find(|kind| violations.iter().any(|v| v.kind == *kind))
            .unwrap_or(ViolationKind::InvalidSpec)
            .reason(),
            Error::PolicyNotJson(_) | Error::PolicyNotUtf8 => ViolationKind::InvalidSpec.reason(),
        }
    }
}
