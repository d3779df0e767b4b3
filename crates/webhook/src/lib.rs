//! The pod identity webhook: a drop-in for amazon-eks-pod-identity-webhook. The mutation
//! is pure (`mutation`, over the fields of `pod`); `identity` decides which annotations count (including roles
//! predicted from PodIdentityBindings); `lookup` reads them from watch caches; `admission`
//! speaks AdmissionReview; `validation` admits PodIdentityBindings; `server` serves both
//! over HTTPS.

pub mod admission;
pub mod binding_cache;
pub mod identity;
pub mod lookup;
pub mod metrics;
pub mod mutation;
pub mod pod;
pub mod server;
pub mod validation;

pub use mutation::{MutationConfig, TokenAccess};
