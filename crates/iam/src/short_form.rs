//! The ServiceAccount short form: `podidentity.io/managed-policy-arns` and
//! `podidentity.io/inline-policy` annotations become a binding spec, so one code path
//! serves both.

use std::collections::BTreeMap;

use podidentity_api::annotations::{
    SHORT_FORM_INLINE_POLICY, SHORT_FORM_MANAGED_POLICY_ARNS, SHORT_FORM_MECHANISM,
};
use podidentity_api::{Effect, Mechanism, PodIdentityBindingSpec, Statement};
use serde_json::Value;

use crate::error::Violation;

/// Whether the annotations ask for a role at all.
pub fn requests_role(annotations: &BTreeMap<String, String>) -> bool {
    annotations.contains_key(SHORT_FORM_MANAGED_POLICY_ARNS)
        || annotations.contains_key(SHORT_FORM_INLINE_POLICY)
}

/// The binding spec the annotations ask for; `None` when they ask for nothing.
pub fn spec_from_annotations(
    service_account: &str,
    annotations: &BTreeMap<String, String>,
) -> Option<Result<PodIdentityBindingSpec, Vec<Violation>>> {
    if !requests_role(annotations) {
        return None;
    }
    let mut spec = PodIdentityBindingSpec {
        service_account_name: service_account.to_string(),
        ..PodIdentityBindingSpec::default()
    };
    if let Some(arns) = annotations.get(SHORT_FORM_MANAGED_POLICY_ARNS) {
        spec.permissions.managed_policy_arns = arns
            .split(',')
            .map(str::trim)
            .filter(|arn| !arn.is_empty())
            .map(String::from)
            .collect();
    }
    if let Some(document) = annotations.get(SHORT_FORM_INLINE_POLICY) {
        match statements_from_document(document) {
            Ok(statements) => spec.permissions.statements = statements,
            Err(violations) => return Some(Err(violations)),
        }
    }
    if let Some(text) = annotations.get(SHORT_FORM_MECHANISM) {
        spec.identity.mechanism = Some(match text.trim() {
            "IRSA" => Mechanism::Irsa,
            "PodIdentity" => Mechanism::PodIdentity,
            other => {
                return Some(Err(vec![Violation::invalid(
                    format!("metadata.annotations[\"{SHORT_FORM_MECHANISM}\"]"),
                    format!("{other:?} is not a mechanism: write IRSA or PodIdentity"),
                )]));
            }
        });
    }
    Some(Ok(spec))
}

fn field(suffix: &str) -> String {
    format!("metadata.annotations[\"{SHORT_FORM_INLINE_POLICY}\"]{suffix}")
}

/// Reads an IAM policy document (`{"Statement": [...]}`) into binding statements.
fn statements_from_document(document: &str) -> Result<Vec<Statement>, Vec<Violation>> {
    let parsed: Value = serde_json::from_str(document).map_err(|err| {
        vec![Violation::invalid(
            field(""),
            format!("is not JSON ({err}): write an IAM policy like {{\"Statement\":[{{\"Effect\":\"Allow\",\"Action\":\"sqs:*\",\"Resource\":\"*\"}}]}}"),
        )]
    })?;
    let statements = match parsed.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        _ => {
            return Err(vec![Violation::invalid(
                field(""),
                "has no \"Statement\": write {\"Statement\":[...]} with IAM statements",
            )]);
        }
    };
    let mut violations = Vec::new();
    let mut out = Vec::new();
    for (s, statement) in statements.iter().enumerate() {
        let at = |key: &str| field(&format!(".Statement[{s}]{key}"));
        let Value::Object(fields) = statement else {
            violations.push(Violation::invalid(at(""), "must be an object"));
            continue;
        };
        for key in fields.keys() {
            if !["Sid", "Effect", "Action", "Resource", "Condition"].contains(&key.as_str()) {
                violations.push(Violation::invalid(
                    at(&format!(".{key}")),
                    format!("{key} is not supported here: use Sid, Effect, Action, Resource and Condition (the operator owns the principal)"),
                ));
            }
        }
        let effect = match fields.get("Effect").and_then(Value::as_str) {
            None | Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            Some(other) => {
                violations.push(Violation::invalid(
                    at(".Effect"),
                    format!("{other:?} must be Allow or Deny"),
                ));
                Effect::Allow
            }
        };
        let strings = |key: &str| -> Option<Vec<String>> {
            match fields.get(key)? {
                Value::String(one) => Some(vec![one.clone()]),
                Value::Array(many) => many.iter().map(|v| v.as_str().map(String::from)).collect(),
                _ => None,
            }
        };
        let actions = strings("Action").unwrap_or_else(|| {
            violations.push(Violation::invalid(
                at(".Action"),
                "needs an action or a list of actions",
            ));
            Vec::new()
        });
        let resources = strings("Resource").unwrap_or_else(|| {
            violations.push(Violation::invalid(
                at(".Resource"),
                "needs a resource or a list of resources",
            ));
            Vec::new()
        });
        let mut conditions = BTreeMap::new();
        if let Some(condition) = fields.get("Condition") {
            match serde_json::from_value::<BTreeMap<String, BTreeMap<String, Value>>>(condition.clone()) {
                Ok(operators) => {
                    for (operator, keys) in operators {
                        let mut converted = BTreeMap::new();
                        for (key, value) in keys {
                            let values = match value {
                                Value::Array(items) => items.iter().map(scalar_text).collect(),
                                other => vec![scalar_text(&other)],
                            };
                            converted.insert(key, values);
                        }
                        conditions.insert(operator, converted);
                    }
                }
                Err(_) => violations.push(Violation::invalid(
                    at(".Condition"),
                    "must map operators to keys to values, e.g. {\"StringEquals\":{\"aws:RequestedRegion\":\"eu-west-1\"}}",
                )),
            }
        }
        out.push(Statement {
            sid: fields.get("Sid").and_then(Value::as_str).map(String::from),
            effect,
            actions,
            resources,
            conditions,
        });
    }
    if violations.is_empty() {
        Ok(out)
    } else {
        Err(violations)
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_short_form_annotations_asks_for_nothing() {
        assert_eq!(
            spec_from_annotations("app", &annotations(&[("other", "x")])),
            None
        );
    }

    #[test]
    fn both_annotations_become_one_spec() {
        let spec = spec_from_annotations(
            "external-dns",
            &annotations(&[
                (
                    SHORT_FORM_MANAGED_POLICY_ARNS,
                    " arn:aws:iam::aws:policy/A , arn:aws:iam::aws:policy/B,",
                ),
                (
                    SHORT_FORM_INLINE_POLICY,
                    r#"{"Statement":{"Effect":"Allow","Action":"sqs:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":true}}}}"#,
                ),
            ]),
        );
        let Some(Ok(spec)) = spec else {
            panic!("expected a spec, got {spec:?}")
        };
        assert_eq!(spec.service_account_name, "external-dns");
        assert_eq!(
            spec.permissions.managed_policy_arns,
            ["arn:aws:iam::aws:policy/A", "arn:aws:iam::aws:policy/B"]
        );
        assert_eq!(spec.permissions.statements[0].actions, ["sqs:*"]);
        assert_eq!(
            spec.permissions.statements[0].conditions["Bool"]["aws:SecureTransport"],
            ["true"]
        );
    }

    #[test]
    fn bad_documents_name_the_annotation_and_the_fix() {
        let bad = |doc: &str| match spec_from_annotations(
            "a",
            &annotations(&[(SHORT_FORM_INLINE_POLICY, doc)]),
        ) {
            Some(Err(violations)) => violations,
            other => panic!("expected violations, got {other:?}"),
        };
        assert!(bad("{not json")[0].message.starts_with("is not JSON"));
        let principal = bad(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}]}"#,
        );
        assert_eq!(
            principal[0].field,
            "metadata.annotations[\"podidentity.io/inline-policy\"].Statement[0].Principal"
        );
    }

    #[test]
    fn the_mechanism_annotation_sets_the_mechanism_and_a_wrong_one_is_named() {
        let with = |value: &str| {
            let annotations: BTreeMap<String, String> = [
                (
                    SHORT_FORM_MANAGED_POLICY_ARNS.to_string(),
                    "arn:aws:iam::aws:policy/ReadOnlyAccess".to_string(),
                ),
                (SHORT_FORM_MECHANISM.to_string(), value.to_string()),
            ]
            .into();
            spec_from_annotations("app", &annotations)
        };
        let spec = with("PodIdentity")
            .and_then(Result::ok)
            .map(|s| s.identity.mechanism);
        assert_eq!(spec, Some(Some(Mechanism::PodIdentity)));
        let spec = with(" IRSA ")
            .and_then(Result::ok)
            .map(|s| s.identity.mechanism);
        assert_eq!(spec, Some(Some(Mechanism::Irsa)));
        let refused = with("pod-identity")
            .and_then(Result::err)
            .unwrap_or_default();
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].field.contains(SHORT_FORM_MECHANISM),
            "{refused:?}"
        );
        assert!(
            refused[0].message.contains("IRSA or PodIdentity"),
            "{refused:?}"
        );
    }
}
