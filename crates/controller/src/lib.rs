//! The controller's reconcilers. `role` keeps one IAM role equal to its binding: create,
//! adopt, converge in place, delete or retain.

pub mod role;
