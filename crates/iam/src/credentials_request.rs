//! A CredentialsRequest through the same engine as a binding: its statements become the
//! role's inline policy, its ServiceAccounts (in the Secret's namespace) the trust
//! subjects, the Secret in `secretRef` the credentials Secret in ccoctl's format. The
//! role is named as a binding of the Secret's name in the Secret's namespace would be
//! (`<prefix><namespace>.<secret>`; ccoctl's `<name>-<namespace>-<secret>` could collide),
//! judged by the guardrails of the Secret's namespace (where the ServiceAccounts are), and
//! tagged with the request, so a binding of that name can never share it.

use std::collections::BTreeMap;

use podidentity_api::binding::is_dns_name;
use podidentity_api::config::OperatorConfig;
use podidentity_api::credentials_request::{
    AwsProviderSpec, CredentialsRequestSpec, DEFAULT_CLOUD_TOKEN_PATH, OPENSHIFT_AUDIENCE,
    StatementEntry,
};
use podidentity_api::{
    CredentialsSecretSpec, Effect, Permissions, PodIdentityBindingSpec, Statement,
};
use serde_json::Value;

use crate::build::{BindingRef, DesiredState, desired_state_trusting};
use crate::error::{Error, Violation};
use crate::guardrails::RuleSet;

/// The `podidentity.io/binding` tag of a request's role.
pub fn owner_tag(namespace: &str, name: &str) -> String {
    format!("CredentialsRequest/{namespace}/{name}")
}

/// The binding a request's role is named and tagged as: the Secret's name in the
/// Secret's namespace, owned by the request (`owner` is [`owner_tag`]).
pub fn binding_ref<'a>(spec: &'a CredentialsRequestSpec, owner: &'a str) -> BindingRef<'a> {
    secret_binding_ref(&spec.secret_ref.namespace, &spec.secret_ref.name, owner)
}

/// [`binding_ref`] for a Secret named outside the spec (one made for an earlier spec).
pub fn secret_binding_ref<'a>(
    namespace: &'a str,
    secret: &'a str,
    owner: &'a str,
) -> BindingRef<'a> {
    BindingRef {
        namespace,
        name: secret,
        recorded_role_name: None,
        owner_tag: Some(owner),
    }
}

/// What the engine builds for one request; `None` for a request that is not for AWS
/// (ignored, as the Cloud Credential Operator ignores another platform's).
pub fn desired_state(
    namespace: &str,
    name: &str,
    spec: &CredentialsRequestSpec,
    config: &OperatorConfig,
    rules: &RuleSet,
) -> Option<Result<DesiredState, Error>> {
    let aws = match spec.aws()? {
        Ok(aws) => aws,
        Err(message) => {
            return Some(Err(Error::Refused(vec![Violation::invalid(
                "spec.providerSpec",
                message,
            )])));
        }
    };
    let (binding_spec, mut violations) = binding_spec(spec, &aws);
    if !violations.is_empty() {
        return Some(Err(Error::Refused(violations)));
    }
    let owner = owner_tag(namespace, name);
    let binding = binding_ref(spec, &owner);
    // The release's own requests, honoured in the platform's namespaces only: the image
    // registry makes and manages its bucket on "*" as ccoctl grants it, so the guard on the
    // signing keys' bucket (written against namespace owners) is not theirs.
    // Their roles stay in the operator's own account whatever account the Secret's
    // namespace is placed in: the requests are the platform's, and what one was
    // provisioned with records no account.
    let rules = RuleSet {
        protected_resources: Vec::new(),
        account: None,
        misplaced: None,
        ..rules.clone()
    };
    let rules = &rules;
    Some(
        desired_state_trusting(
            binding,
            &binding_spec,
            config,
            rules,
            &spec.service_account_names,
        )
        .map(|mut desired| {
            // Pods of a request read the Secret: their ServiceAccounts are not annotated.
            desired.service_account.name = spec.service_account_names.join(", ");
            desired.service_account.annotations.clear();
            desired
        })
        .map_err(|err| match err {
            Error::Refused(found) => {
                violations.extend(found.into_iter().map(in_request_terms));
                Error::Refused(violations)
            }
            other => other,
        }),
    )
}

/// The binding the request amounts to, and what in the request cannot become one.
fn binding_spec(
    spec: &CredentialsRequestSpec,
    aws: &AwsProviderSpec,
) -> (PodIdentityBindingSpec, Vec<Violation>) {
    let mut violations = Vec::new();
    let secret = &spec.secret_ref;
    if !is_dns_name(&secret.namespace, 63, false) {
        violations.push(Violation::invalid(
            "spec.secretRef.namespace",
            format!(
                "{:?} is not a namespace: name the namespace the Secret goes to",
                secret.namespace
            ),
        ));
    }
    if !is_dns_name(&secret.name, 253, true) {
        violations.push(Violation::invalid(
            "spec.secretRef.name",
            format!(
                "{:?} is not a Secret name: name the Secret to write",
                secret.name
            ),
        ));
    }
    if spec.service_account_names.is_empty() {
        violations.push(Violation::invalid(
            "spec.serviceAccountNames",
            "names no ServiceAccount: list the ServiceAccounts (in spec.secretRef.namespace) \
             that may assume the role, as ccoctl also requires",
        ));
    }
    for (index, account) in spec.service_account_names.iter().enumerate() {
        if !is_dns_name(account, 253, true) {
            violations.push(Violation::invalid(
                format!("spec.serviceAccountNames[{index}]"),
                format!("{account:?} is not a ServiceAccount name"),
            ));
        }
    }
    let statements = aws
        .statement_entries
        .iter()
        .enumerate()
        .filter_map(|(index, entry)| match statement(entry) {
            Ok(statement) => Some(statement),
            Err(message) => {
                violations.push(Violation::invalid(
                    format!("spec.providerSpec.statementEntries[{index}]"),
                    message,
                ));
                None
            }
        })
        .collect();
    let binding = PodIdentityBindingSpec {
        service_account_name: spec
            .service_account_names
            .first()
            .cloned()
            .unwrap_or_default(),
        audience: OPENSHIFT_AUDIENCE.to_string(),
        permissions: Permissions {
            statements,
            managed_policy_arns: Vec::new(),
        },
        credentials_secret: Some(CredentialsSecretSpec {
            name: secret.name.clone(),
            token_path: spec
                .cloud_token_path
                .clone()
                .filter(|path| !path.is_empty())
                .unwrap_or_else(|| DEFAULT_CLOUD_TOKEN_PATH.to_string()),
        }),
        // A ccoctl Secret is a web identity login: IRSA, whatever the default mechanism.
        identity: podidentity_api::IdentitySpec {
            mechanism: Some(podidentity_api::Mechanism::Irsa),
            ..Default::default()
        },
        ..PodIdentityBindingSpec::default()
    };
    (binding, violations)
}

fn statement(entry: &StatementEntry) -> Result<Statement, String> {
    let effect = match entry.effect.as_str() {
        "Allow" => Effect::Allow,
        "Deny" => Effect::Deny,
        other => return Err(format!("effect {other:?}: write Allow or Deny")),
    };
    let mut conditions = BTreeMap::new();
    for (operator, keys) in &entry.policy_condition {
        let mut values_by_key = BTreeMap::new();
        for (key, value) in keys {
            let values = match value {
                Value::Array(items) => items.iter().map(scalar).collect::<Option<Vec<_>>>(),
                single => scalar(single).map(|one| vec![one]),
            }
            .ok_or_else(|| {
                format!("policyCondition.{operator}.{key}: write a string, number, boolean or a list of them")
            })?;
            values_by_key.insert(key.clone(), values);
        }
        conditions.insert(operator.clone(), values_by_key);
    }
    Ok(Statement {
        sid: None,
        effect,
        actions: entry.action.clone(),
        resources: vec![entry.resource.clone()],
        conditions,
    })
}

/// IAM reads `true` and `"true"` alike in a condition.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A violation found on the binding the request became, named in the request's fields.
fn in_request_terms(violation: Violation) -> Violation {
    let field = violation
        .field
        .replace(
            "spec.permissions.statements",
            "spec.providerSpec.statementEntries",
        )
        .replace(".actions", ".action")
        .replace(".resources[0]", ".resource")
        .replace(".resources", ".resource")
        .replace(".conditions", ".policyCondition")
        .replace("spec.serviceAccountName", "spec.serviceAccountNames[0]")
        .replace("spec.credentialsSecret.tokenPath", "spec.cloudTokenPath")
        .replace("spec.credentialsSecret.name", "spec.secretRef.name");
    Violation { field, ..violation }
}

#[cfg(test)]
mod tests;
