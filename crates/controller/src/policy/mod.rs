//! PodIdentityPolicies: `view` answers which rules govern a namespace (from the watch
//! caches); `watches` wakes the bindings a policy or namespace-label change concerns;
//! `report` writes each policy's status (the bindings it governs, what it refuses).

pub mod report;
pub mod view;
pub mod watches;
