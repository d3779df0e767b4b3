//! AWS errors sorted once into the kinds the operator acts on.

use podidentity_api::conditions::reason;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The entity does not exist (`NoSuchEntity`).
    NotFound,
    /// The entity exists already (`EntityAlreadyExists`).
    AlreadyExists,
    /// A quota or limit refused the call (`LimitExceeded`).
    LimitExceeded,
    /// The entity is in use or being changed (`DeleteConflict`, `ConcurrentModification`).
    Conflict,
    /// AWS asked us to slow down.
    Throttled,
    /// The operator's own IAM permissions do not allow the call.
    AccessDenied,
    /// AWS refused a document or value as malformed.
    Malformed,
    /// 5xx, timeouts, dropped connections: try again later.
    Unavailable,
    /// This replica may not write now (not the leader, or past its renew deadline): the
    /// write was never sent. Neither an outage nor worth retrying; the replica exits.
    Fenced,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Worth retrying with backoff, without a change to the spec.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Conflict
        )
    }

    /// Needs a change (of the spec, the configuration or the operator's own permissions)
    /// before the same call can succeed: retried slowly, not with backoff.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            ErrorKind::AccessDenied | ErrorKind::Malformed | ErrorKind::LimitExceeded
        )
    }

    /// The condition and Event reason.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::Throttled => reason::AWS_THROTTLED,
            ErrorKind::AccessDenied => reason::AWS_ACCESS_DENIED,
            ErrorKind::Unavailable | ErrorKind::Conflict => reason::AWS_UNAVAILABLE,
            ErrorKind::Malformed | ErrorKind::LimitExceeded => reason::INVALID_SPEC,
            ErrorKind::Fenced => "WriteFenced",
            ErrorKind::NotFound | ErrorKind::AlreadyExists | ErrorKind::Other => "AwsError",
        }
    }

    /// Kind for an AWS error code (the `Code` of IAM's and STS's error responses).
    pub fn from_code(code: &str, message: &str) -> Self {
        match code {
            "NoSuchEntity"
            | "NoSuchEntityException"
            | "NoSuchKey"
            | "NoSuchBucket"
            | "ResourceNotFoundException"
            | "NotFoundException" => ErrorKind::NotFound,
            // EKS: an association for that ServiceAccount exists already.
            "EntityAlreadyExists" | "EntityAlreadyExistsException" | "ResourceInUseException" => {
                ErrorKind::AlreadyExists
            }
            "LimitExceeded" | "LimitExceededException" | "ResourceLimitExceededException" => {
                ErrorKind::LimitExceeded
            }
            "DeleteConflict"
            | "DeleteConflictException"
            | "ConcurrentModification"
            | "ConcurrentModificationException" => ErrorKind::Conflict,
            "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException" => ErrorKind::Throttled,
            "AccessDenied"
            | "AccessDeniedException"
            | "UnauthorizedOperation"
            | "InvalidClientTokenId"
            | "ExpiredToken"
            | "SignatureDoesNotMatch" => ErrorKind::AccessDenied,
            // IAM is eventually consistent: right after an OIDC provider is created, a trust
            // policy naming it is refused as an invalid principal for a while.
            "MalformedPolicyDocument" if message.contains("Invalid principal") => {
                ErrorKind::Unavailable
            }
            "MalformedPolicyDocument"
            | "MalformedPolicyDocumentException"
            | "InvalidInput"
            | "InvalidInputException"
            | "ValidationError"
            | "InvalidParameterException"
            | "InvalidRequestException"
            | "BadRequestException" => ErrorKind::Malformed,
            "ServiceFailure"
            | "ServerException"
            | "ServiceFailureException"
            | "InternalFailure"
            | "ServiceUnavailable" => ErrorKind::Unavailable,
            _ => ErrorKind::Other,
        }
    }
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("{operation}: {kind:?}{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
pub struct AwsError {
    pub kind: ErrorKind,
    pub operation: &'static str,
    /// AWS's error code, when AWS answered.
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    pub fn new(kind: ErrorKind, operation: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            operation,
            code: None,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds_and_reasons() {
        assert_eq!(
            ErrorKind::from_code("NoSuchEntity", ""),
            ErrorKind::NotFound
        );
        assert_eq!(
            ErrorKind::from_code("Throttling", "Rate exceeded"),
            ErrorKind::Throttled
        );
        assert_eq!(
            ErrorKind::from_code("AccessDenied", "").reason(),
            "AwsAccessDenied"
        );
        assert_eq!(
            ErrorKind::from_code("MalformedPolicyDocument", "Invalid principal in policy"),
            ErrorKind::Unavailable
        );
        assert_eq!(
            ErrorKind::from_code("MalformedPolicyDocument", "Syntax errors in policy."),
            ErrorKind::Malformed
        );
        assert!(ErrorKind::from_code("ServiceFailure", "").is_transient());
        assert!(!ErrorKind::from_code("AccessDenied", "").is_transient());
        assert!(ErrorKind::from_code("AccessDenied", "").is_permanent());
        assert!(ErrorKind::from_code("InvalidInput", "").is_permanent());
        assert!(ErrorKind::from_code("LimitExceeded", "").is_permanent());
        assert!(!ErrorKind::from_code("Throttling", "").is_permanent());
        assert!(!ErrorKind::from_code("SomethingNew", "").is_permanent());
    }
}
