//! IAM policy documents as types. Serialization yields exactly what IAM stores (keys in
//! IAM's usual order), and the minified form is what the size limits count.

use podidentity_api::Effect;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const POLICY_VERSION: &str = "2012-10-17";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    pub version: String,
    pub statement: Vec<PolicyStatement>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyStatement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub effect: Effect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    pub action: OneOrMany,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<OneOrMany>,
    /// operator → condition key → value or values, in insertion order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Map<String, Value>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Principal {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl Principal {
    pub fn federated(arn: impl Into<String>) -> Self {
        Self {
            federated: Some(arn.into()),
            service: None,
        }
    }

    pub fn service(name: impl Into<String>) -> Self {
        Self {
            federated: None,
            service: Some(name.into()),
        }
    }
}

/// IAM accepts a single string or a list wherever it accepts several values.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn values(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(value) => vec![value.as_str()],
            OneOrMany::Many(values) => values.iter().map(String::as_str).collect(),
        }
    }
}

impl PolicyDocument {
    pub fn new(statement: Vec<PolicyStatement>) -> Self {
        Self {
            version: POLICY_VERSION.to_string(),
            statement,
        }
    }

    /// The document as IAM receives it: no whitespace between tokens.
    pub fn minified(&self) -> String {
        // Serializing plain strings, lists and maps cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Bytes of the minified document: what the trust policy quota counts.
    pub fn minified_bytes(&self) -> usize {
        self.minified().len()
    }

    /// Characters other than whitespace: what the inline policy limit counts.
    pub fn non_whitespace_chars(&self) -> usize {
        self.minified()
            .chars()
            .filter(|c| !c.is_whitespace())
            .count()
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A document's statements, read loosely (IAM accepts one statement or a list); `None`
/// without any.
pub fn statements(document: &serde_json::Value) -> Option<Vec<&serde_json::Value>> {
    match document.get("Statement")? {
        serde_json::Value::Array(many) => Some(many.iter().collect()),
        one @ serde_json::Value::Object(_) => Some(vec![one]),
        _ => None,
    }
}

/// A string or a list of strings (an `Action`, a `Resource`, a `Federated` principal).
pub fn strings(value: Option<&serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        Some(serde_json::Value::Array(many)) => many
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_values_and_lists_both_parse() {
        let doc: PolicyDocument = serde_json::from_str(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":["a","b"]}]}"#,
        )
        .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(doc.statement[0].action.values(), ["s3:GetObject"]);
        assert_eq!(
            doc.statement[0].resource.as_ref().map(OneOrMany::values),
            Some(vec!["a", "b"])
        );
    }

    #[test]
    fn whitespace_inside_values_is_not_counted() {
        let doc = PolicyDocument::new(vec![PolicyStatement {
            sid: None,
            effect: Effect::Allow,
            principal: None,
            action: OneOrMany::One("s3:GetObject".into()),
            resource: Some(OneOrMany::One("arn:aws:s3:::a b".into())),
            condition: None,
        }]);
        assert_eq!(
            doc.non_whitespace_chars() + 1,
            doc.minified().chars().count()
        );
    }
}
