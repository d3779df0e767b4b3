//! The harness's own failures.

/// A failure of the harness itself (not of the operator under test).
#[derive(Debug)]
pub struct HarnessError(pub String);

impl HarnessError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl std::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HarnessError {}

impl From<kube::Error> for HarnessError {
    fn from(err: kube::Error) -> Self {
        Self(format!("Kubernetes API: {err}"))
    }
}
