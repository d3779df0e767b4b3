//! The controller's reconcilers. `role` keeps one IAM role equal to its binding: create,
//! adopt, converge in place, delete or retain; `sweep` finds and puts back drift for all
//! roles at once.

pub mod role;
pub mod sweep;
