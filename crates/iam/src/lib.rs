//! The IAM policy engine, pure: trust and permission documents as types, deterministic
//! role naming, IAM's limits, guardrails, semantic comparison for drift, and the
//! `desired_state` that the controller and `plan` share. No IO here.

pub mod assume;
pub mod build;
pub mod compare;
pub mod credentials_request;
pub mod document;
pub mod effort;
pub mod error;
pub mod glob;
pub mod guardrails;
pub mod managed;
pub mod namespace_policy;
pub mod naming;
pub mod ownership;
pub mod placement;
pub mod short_form;
pub mod trust;
pub mod validate;

pub use build::{BindingRef, DesiredState, desired_state, desired_state_under};
pub use error::{Error, Violation, ViolationKind};
pub use guardrails::{Guardrails, RuleSet};
pub use ownership::service_account_owner;
