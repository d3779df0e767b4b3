//! The controller. `binding` reconciles PodIdentityBindings (behind the finalizer);
//! `role` keeps one IAM role equal to its binding; `sweep` finds and puts back drift for
//! all roles at once; `status` computes conditions.

pub mod binding;
pub mod context;
pub mod error;
pub mod role;
pub mod short_form;
pub mod status;
pub mod sweep;

pub use context::Context;
pub use error::Error;
