//! The controller, in wings: `process` makes the process (run, startup, leadership, the
//! write fence, health, metrics, the watches); `binding` reconciles PodIdentityBindings
//! (judge → apply → report) and turns annotated ServiceAccounts into bindings;
//! `policy` keeps the PodIdentityPolicies' view and status; `credentials_request`
//! reconciles OpenShift CredentialsRequests; `drift` sweeps every role and wakes the
//! bindings whose roles drifted; `oidc` keeps the OIDC provider and the published keys.
//! `context` holds the handles they share.

pub mod binding;
pub mod caches;
pub mod context;
pub mod credentials_request;
pub mod drift;
pub mod error;
pub mod oidc;
pub mod policy;
pub mod process;
pub mod status_patch;

pub use context::Context;
pub use error::Error;
