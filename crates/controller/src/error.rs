//! The controller's one error type, sorted once: transient errors back off and retry,
//! permanent ones wait for a change.

use podidentity_aws::error::AwsError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("AWS: {0}")]
    Aws(#[from] AwsError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("the binding has no namespace")]
    NoNamespace,
}

impl Error {
    /// The condition, Event and metric reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Aws(err) => err.kind.reason(),
            Error::Kube(_) => "KubernetesApiError",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(err)
                | kube::runtime::finalizer::Error::CleanupFailed(err) => err.reason(),
                _ => "FinalizerError",
            },
            Error::NoNamespace => "InvalidSpec",
        }
    }
}
