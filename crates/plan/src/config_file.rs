//! The operator's configuration file as text: YAML read into `OperatorConfig`, every
//! mistake named by its setting. The command line (`podidentity --config`) and the
//! controller's ConfigMap are both this text.

use podidentity_api::config::OperatorConfig;

use crate::manifests::{field_path, plain_serde_message};

/// Why a configuration file's text is not a configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigTextError {
    #[error("is not valid YAML: {0}")]
    Yaml(String),
    #[error("{field}: {message}")]
    Field { field: String, message: String },
}

/// Reads a configuration file's text (an empty file is an empty configuration). What the
/// settings' values must be is checked after (`OperatorConfig::problems`), once flags and
/// environment are merged in.
pub fn parse(text: &str) -> Result<OperatorConfig, ConfigTextError> {
    let value: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|err| ConfigTextError::Yaml(err.to_string()))?;
    let value = if value.is_null() {
        serde_json::json!({})
    } else {
        value
    };
    serde_path_to_error::deserialize(value).map_err(|err| ConfigTextError::Field {
        field: field_path(err.path()),
        message: plain_serde_message(&err.inner().to_string()),
    })
}
