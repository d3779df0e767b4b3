//! The `podidentity.io/v1alpha1` API: the `PodIdentityBinding` custom resource (and the
//! `PodIdentityPolicy` that confines bindings by namespace), its
//! condition types and reasons, the annotation keys the operator reads and writes, and the
//! operator configuration. Types and constants only: no IO, no AWS.

pub mod annotations;
pub mod binding;
pub mod conditions;
pub mod config;
pub mod crd;
pub mod credentials_request;
pub mod policy;

pub use binding::{
    AccountMoveStatus, AssociationStatus, CredentialsSecretSpec, DeletionPolicy, Effect,
    IdentitySpec, InjectionSpec, Mechanism, MigrationStatus, Permissions, PodIdentityBinding,
    PodIdentityBindingSpec, PodIdentityBindingStatus, RoleSpec, SessionPolicy, Statement,
    TrustPolicySize,
};
pub use policy::{OnViolation, PodIdentityPolicy, PodIdentityPolicySpec, PodIdentityPolicyStatus};

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

/// kubectl's copy of the whole object as last applied client-side.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what a cached object need not keep: managedFields (often a third of it) and
/// kubectl's `last-applied-configuration` (a second copy of the object, on everything a
/// GitOps tool applies client-side). Neither the controller nor the webhook reads them.
pub fn slim_metadata(metadata: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    metadata.managed_fields = None;
    if let Some(annotations) = metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            metadata.annotations = None;
        }
    }
}
