//! The controller. `binding` reconciles PodIdentityBindings (behind the finalizer);
//! `short_form` turns annotated ServiceAccounts into bindings; `role` keeps one IAM role
//! equal to its binding; `sweep` finds and puts back drift for all roles at once; `status`
//! computes conditions; `startup`, `leader`, `metrics` and `run` make the process.

pub mod binding;
pub mod context;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod role;
pub mod run;
pub mod short_form;
pub mod startup;
pub mod status;
pub mod sweep;

pub use context::Context;
pub use error::Error;
