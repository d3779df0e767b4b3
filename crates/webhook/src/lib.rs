//! The pod identity webhook: a drop-in for amazon-eks-pod-identity-webhook. The mutation
//! is pure (`mutation`, over the fields of `pod`); `identity` decides which annotations count (including roles
//! predicted from PodIdentityBindings); `lookup` reads them from watch caches; `admission`
//! speaks AdmissionReview; `validation` admits PodIdentityBindings; `policies` holds the
//! PodIdentityPolicies both judge by; `server` serves both over HTTPS; `watch` is the
//! watcher both processes use (it lists again when a watch answer cannot be read).

pub mod admission;
pub mod binding_cache;
pub mod identity;
pub mod lookup;
pub mod metrics;
pub mod mutation;
pub mod pod;
pub mod pod_credentials;
pub mod policies;
pub mod server;
pub mod validation;
pub mod watch;

pub use mutation::{MutationConfig, TokenAccess};

/// The operator configuration the unit tests predict with: cluster `prod`, account
/// 111122223333.
#[cfg(test)]
pub(crate) fn test_operator() -> podidentity_api::config::OperatorConfig {
    podidentity_api::config::OperatorConfig {
        cluster_name: "prod".into(),
        aws: podidentity_api::config::AwsConfig {
            account_id: Some("111122223333".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}
