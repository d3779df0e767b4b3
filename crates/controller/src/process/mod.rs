//! The process: `run` starts everything; `startup` checks the CRDs and completes the
//! configuration; `leader` holds the Lease; `fence` refuses writes without it; `health`
//! and `metrics` serve probes and figures; `lanes` share the passes in flight among the
//! accounts; `watches` are the streams the controllers run on,
//! and `wiring` what each is wired to.

pub mod check;
pub mod fence;
pub mod health;
pub mod lanes;
pub mod leader;
pub mod metrics;
pub mod run;
pub mod startup;
pub mod watches;
pub mod wiring;
