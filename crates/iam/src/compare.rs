//! Semantic comparison of policy documents, for drift detection: two documents are equal
//! when IAM would treat them the same, whatever the statement order, value order, a string
//! versus a one-element list, letter case of action names and condition keys, or the
//! URL-encoding IAM applies to the documents it returns.

use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use crate::Error;

/// Parses a document as IAM returns it: URL-encoded JSON (or plain JSON).
pub fn parse_document(text: &str) -> Result<Value, Error> {
    let trimmed = text.trim_start();
    let decoded = if trimmed.starts_with('{') {
        trimmed.to_string()
    } else {
        percent_decode_str(trimmed)
            .decode_utf8()
            .map_err(|_| Error::PolicyNotUtf8)?
            .into_owned()
    };
    serde_json::from_str(&decoded).map_err(|err| Error::PolicyNotJson(err.to_string()))
}

/// Whether two documents mean the same to IAM.
pub fn equivalent(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

/// Whether a document text (as IAM returns it) means the same as `wanted`.
pub fn text_equivalent(actual: &str, wanted: &Value) -> Result<bool, Error> {
    Ok(equivalent(&parse_document(actual)?, wanted))
}

/// The canonical form: statements as a sorted list, every multi-valued field a sorted,
/// de-duplicated list, case-insensitive names lowercased.
pub fn normalize(document: &Value) -> Value {
    let Value::Object(doc) = document else {
        return document.clone();
    };
    let mut out = Map::new();
    for (key, value) in doc {
        if key == "Statement" {
            let mut statements: Vec<Value> =
                as_list(value).iter().map(normalize_statement).collect();
            statements.sort_by_key(Value::to_string);
            statements.dedup();
            out.insert(key.clone(), Value::Array(statements));
        } else {
            out.insert(key.clone(), value.clone());
        }
    }
    sorted(out)
}

fn normalize_statement(statement: &Value) -> Value {
    let Value::Object(fields) = statement else {
        return statement.clone();
    };
    let mut out = Map::new();
    for (key, value) in fields {
        let normalized = match key.as_str() {
            "Action" | "NotAction" => string_set(value, true),
            "Resource" | "NotResource" => string_set(value, false),
            "Principal" | "NotPrincipal" => match value {
                Value::Object(principals) => sorted(
                    principals
                        .iter()
                        .map(|(kind, ids)| (kind.clone(), string_set(ids, false)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "Condition" => normalize_condition(value),
            // An empty Sid is no Sid.
            "Sid" if value.as_str() == Some("") => continue,
            _ => value.clone(),
        };
        out.insert(key.clone(), normalized);
    }
    sorted(out)
}

fn normalize_condition(value: &Value) -> Value {
    let Value::Object(operators) = value else {
        return value.clone();
    };
    sorted(
        operators
            .iter()
            .map(|(operator, keys)| {
                let keys = match keys {
                    Value::Object(keys) => sorted(
                        keys.iter()
                            .map(|(key, values)| (key.to_lowercase(), string_set(values, false)))
                            .collect(),
                    ),
                    other => other.clone(),
                };
                (operator.clone(), keys)
            })
            .collect(),
    )
}

fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    }
}

/// A string or list of scalars as a sorted, de-duplicated list of strings. Booleans and
/// numbers become their text, as IAM compares condition values as strings.
fn string_set(value: &Value, lowercase: bool) -> Value {
    let mut items: Vec<String> = as_list(value)
        .iter()
        .map(|item| match item {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .map(|s| if lowercase { s.to_lowercase() } else { s })
        .collect();
    items.sort();
    items.dedup();
    Value::Array(items.into_iter().map(Value::String).collect())
}

fn sorted(map: Map<String, Value>) -> Value {
    let mut entries: Vec<(String, Value)> = map.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Object(entries.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn doc(value: Value) -> Value {
        value
    }

    #[test]
    fn order_single_values_and_case_do_not_matter() {
        let ours = doc(json!({"Version":"2012-10-17","Statement":[
            {"Sid":"A","Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]},
            {"Effect":"Deny","Action":["s3:DeleteObject"],"Resource":["*"],
             "Condition":{"StringEquals":{"aws:RequestedRegion":["eu-west-1"]}}}
        ]}));
        let theirs = doc(json!({"Statement":[
            {"Effect":"Deny","Action":"S3:DeleteObject","Resource":"*",
             "Condition":{"StringEquals":{"AWS:RequestedRegion":"eu-west-1"}}},
            {"Resource":["arn:aws:s3:::b/*","arn:aws:s3:::b"],"Action":["s3:listbucket","s3:GetObject"],"Effect":"Allow","Sid":"A"}
        ],"Version":"2012-10-17"}));
        assert!(equivalent(&ours, &theirs));
    }

    #[test]
    fn real_differences_are_seen() {
        let base = json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]});
        for changed in [
            json!({"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}),
            json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*"}]}),
            json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::B/*"}]}),
            json!({"Version":"2008-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}),
            json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"},
                                                       {"Effect":"Allow","Action":"sqs:*","Resource":"*"}]}),
        ] {
            assert!(!equivalent(&base, &changed), "{changed}");
        }
    }

    #[test]
    fn url_encoded_documents_as_iam_returns_them() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22sts%3AAssumeRoleWithWebIdentity%22%7D%5D%7D";
        let wanted = json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sts:AssumeRoleWithWebIdentity"]}]});
        assert_eq!(text_equivalent(encoded, &wanted), Ok(true));
        assert!(matches!(
            parse_document("%7Bnot json"),
            Err(Error::PolicyNotJson(_))
        ));
    }

    fn statement() -> impl Strategy<Value = Value> {
        (
            prop::sample::select(vec!["Allow", "Deny"]),
            prop::collection::vec("[a-z]{2,4}:[A-Z][a-z]{1,5}", 1..4),
            prop::collection::vec("arn:aws:s3:::[a-z]{1,4}", 1..4),
        )
            .prop_map(|(effect, actions, resources)| json!({"Effect":effect,"Action":actions,"Resource":resources}))
    }

    proptest! {
        /// Shuffling statements and values, and writing one-element lists as strings,
        /// never changes the meaning.
        #[test]
        fn reordering_is_equivalent(statements in prop::collection::vec(statement(), 1..5), seed in any::<u64>()) {
            let original = json!({"Version":"2012-10-17","Statement":statements});
            let mut shuffled = statements.clone();
            let rotate = (seed as usize) % shuffled.len();
            shuffled.rotate_left(rotate);
            for statement in &mut shuffled {
                for key in ["Action", "Resource"] {
                    if let Some(Value::Array(values)) = statement.get_mut(key) {
                        values.reverse();
                        if values.len() == 1 {
                            let only = values[0].clone();
                            statement[key] = only;
                        }
                    }
                }
            }
            let rewritten = json!({"Statement":shuffled,"Version":"2012-10-17"});
            prop_assert!(equivalent(&original, &rewritten));
        }
    }
}
