//! The controller. `binding` reconciles PodIdentityBindings (behind `finalizer`), writing
//! through `service_account` and `secret`; `short_form` turns annotated ServiceAccounts
//! into bindings; `role` keeps one IAM role equal to its binding, after
//! `managed_policies` judged what its managed policies grant; `sweep` reads every role
//! at once and `drift` wakes the bindings whose roles drifted; `status` computes
//! conditions; `startup`, `leader`, `health`, `watches`, `metrics` and `run` make the
//! process.

pub mod assumable;
pub mod binding;
pub mod context;
pub mod credentials_request;
pub mod drift;
pub mod early_pods;
pub mod error;
pub mod fence;
pub mod finalizer;
pub mod health;
pub mod leader;
pub mod managed_policies;
pub mod metrics;
pub mod oidc;
pub mod policy_status;
pub mod policy_view;
pub mod policy_watches;
pub mod role;
pub mod run;
pub mod secret;
pub mod service_account;
pub mod short_form;
pub mod startup;
pub mod status;
pub mod status_write;
pub mod sweep;
pub mod watches;

pub use context::Context;
pub use error::Error;
