//! The controller's one error type, sorted once: transient errors back off and retry,
//! permanent ones wait for a change (or a slow retry).

use podidentity_aws::error::AwsError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("AWS: {0}")]
    Aws(#[from] AwsError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the binding has no namespace")]
    NoNamespace,
    /// The assumable gate: STS did not (yet) exchange a token for the role; the status
    /// says why.
    #[error("the role is not assumable yet (see the RoleAssumable condition)")]
    NotAssumable,
    /// The binding's status could not be written: the binding no longer exists.
    #[error("the binding no longer exists")]
    Gone,
    /// The role lives in an account the operator no longer acts in (removed from
    /// `accounts`).
    #[error(
        "the role is in account {0}, which is not among the operator's accounts: add it back \
         to the configuration's accounts so the operator can act there"
    )]
    AccountNotConfigured(String),
}

impl Error {
    /// The condition, Event and metric reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Aws(err) => err.kind.reason(),
            Error::Kube(_) => "KubernetesApiError",
            Error::NoNamespace => "InvalidSpec",
            Error::NotAssumable => podidentity_api::conditions::reason::NOT_ASSUMABLE,
            Error::Gone => "Gone",
            Error::AccountNotConfigured(_) => "AccountNotConfigured",
        }
    }

    /// Whether only a change can make the next attempt succeed.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Aws(err) => err.kind.is_permanent(),
            Error::Kube(_) => false,
            Error::NoNamespace => true,
            Error::NotAssumable => false,
            Error::Gone => false,
            Error::AccountNotConfigured(_) => true,
        }
    }
}
