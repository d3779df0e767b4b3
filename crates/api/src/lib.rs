//! The `podidentity.io/v1alpha1` API: the `PodIdentityBinding` custom resource, its
//! condition types and reasons, the annotation keys the operator reads and writes, and the
//! operator configuration. Types and constants only: no IO, no AWS.

pub mod annotations;
pub mod binding;
pub mod conditions;
pub mod config;
pub mod crd;

pub use binding::{
    CredentialsSecretSpec, DeletionPolicy, Effect, InjectionSpec, Permissions, PodIdentityBinding,
    PodIdentityBindingSpec, PodIdentityBindingStatus, RoleSpec, Statement, TrustPolicySize,
};

/// API group of every resource this operator serves.
pub const GROUP: &str = "podidentity.io";
/// The one served version.
pub const VERSION: &str = "v1alpha1";
/// Finalizer that keeps a binding until its IAM role is cleaned up.
pub const FINALIZER: &str = "podidentity.io/iam-role";
/// Field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "podidentity-operator";
/// Prefix of every annotation, label and IAM tag key the operator owns.
pub const KEY_PREFIX: &str = "podidentity.io/";
