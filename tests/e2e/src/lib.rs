//! The end-to-end harness. `Cluster` is a real API server (started from the envtest
//! binaries, or an existing cluster), `Scenario` one test's world on it: its namespaces,
//! a counting proxy in front of moto, and the operator's processes started exactly as the
//! chart starts them, under the chart's own RBAC.

pub mod audit;
pub mod bench;
pub mod capture;
pub mod chart;
pub mod cluster;
pub mod control_plane;
pub mod error;
pub mod https_server;
pub mod iam_proxy;
pub mod image;
pub mod issuer_host;
pub mod load;
pub mod operator;
pub mod partition;
pub mod pki;
pub mod process;
pub mod scenario;
pub mod sts;
pub mod wait;

pub use cluster::Cluster;
pub use error::HarnessError;
pub use scenario::Scenario;
