//! Every scenario, in the order they run.

use crate::{Needs, ScenarioFn};

mod lifecycle;

macro_rules! scenario {
    ($module:ident :: $name:ident, $needs:expr) => {
        (
            concat!(stringify!($module), "::", stringify!($name)),
            $needs,
            (|s| Box::pin($module::$name(s))) as ScenarioFn,
        )
    };
}

pub fn all() -> Vec<(&'static str, Needs, ScenarioFn)> {
    vec![scenario!(
        lifecycle::create_wait_update_delete,
        Needs::Cluster
    )]
}
