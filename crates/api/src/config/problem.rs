//! A bad setting, as every check of the configuration reports it.

/// One bad setting: the setting's path and what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    pub setting: &'static str,
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

/// Problems found so far.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<ConfigProblem>);

impl Problems {
    pub(super) fn bad(&mut self, setting: &'static str, message: String) {
        self.0.push(ConfigProblem { setting, message });
    }
}
