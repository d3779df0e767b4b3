//! Plan output: a table for people, JSON for CI (its shape is a stable interface).

use std::fmt::Write;

use crate::{BindingPlan, Plan};

pub fn json(plan: &Plan) -> String {
    // Plain data: serialization cannot fail.
    let mut text = serde_json::to_string_pretty(plan).unwrap_or_default();
    text.push('\n');
    text
}

pub fn table(plan: &Plan) -> String {
    let mut out = String::new();
    for binding in &plan.bindings {
        write_binding(&mut out, binding);
        out.push('\n');
    }
    for warning in &plan.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    let s = &plan.summary;
    let _ = writeln!(
        out,
        "{} binding(s): {} valid, {} refused; {} other document(s) ignored",
        s.bindings, s.valid, s.refused, s.ignored_documents
    );
    out
}

fn write_binding(out: &mut String, binding: &BindingPlan) {
    let verdict = if binding.valid { "VALID" } else { "REFUSED" };
    let kind = match binding.kind.as_str() {
        "PodIdentityBinding" => String::new(),
        "ServiceAccount" => " [ServiceAccount short form]".to_string(),
        other => format!(" [{other}]"),
    };
    let name = if binding.name.is_empty() {
        "(no name)"
    } else {
        &binding.name
    };
    // Cluster-scoped objects (a PodIdentityPolicy) have no namespace.
    let qualified = if binding.namespace.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", binding.namespace)
    };
    let _ = writeln!(out, "{qualified}{kind}  {verdict}  {}", binding.source);
    for problem in &binding.problems {
        let _ = writeln!(
            out,
            "  {:<20} {}: {}",
            problem.reason, problem.field, problem.message
        );
    }
    let Some(desired) = &binding.desired else {
        return;
    };
    let role = &desired.role;
    let row = |out: &mut String, label: &str, value: &str| {
        let _ = writeln!(out, "  {label:<20} {value}");
    };
    row(out, "mechanism", &desired.mechanism.to_string());
    row(out, "role", &role.name);
    row(out, "arn", &role.arn);
    row(out, "description", &role.description);
    row(
        out,
        "max session",
        &format!("{}s", role.max_session_duration_seconds),
    );
    row(
        out,
        "trust policy",
        &format!(
            "{} of {} bytes",
            desired.trust_policy_size.bytes, desired.trust_policy_size.limit
        ),
    );
    indented(out, &pretty(&role.trust_policy.to_value()));
    match &role.inline_policy {
        Some(policy) => {
            row(
                out,
                "inline policy",
                &format!(
                    "{} ({} of 10240 characters)",
                    podidentity_iam::build::INLINE_POLICY_NAME,
                    policy.non_whitespace_chars()
                ),
            );
            indented(out, &pretty(&policy.to_value()));
        }
        None => row(out, "inline policy", "(none)"),
    }
    if role.managed_policy_arns.is_empty() {
        row(out, "managed policies", "(none)");
    }
    for (i, arn) in role.managed_policy_arns.iter().enumerate() {
        row(out, if i == 0 { "managed policies" } else { "" }, arn);
    }
    row(
        out,
        "boundary",
        role.permissions_boundary_arn.as_deref().unwrap_or("(none)"),
    );
    for (i, (key, value)) in role.tags.iter().enumerate() {
        row(
            out,
            if i == 0 { "tags" } else { "" },
            &format!("{key}={value}"),
        );
    }
    let sa = &desired.service_account;
    let created = if sa.create {
        " (created if missing)"
    } else {
        ""
    };
    row(out, "service account", &format!("{}{created}", sa.name));
    for (key, value) in &sa.annotations {
        row(out, "", &format!("{key}: {value}"));
    }
    if let Some(association) = &desired.association {
        row(
            out,
            "association",
            &format!(
                "EKS Pod Identity: cluster {}, {}/{} -> {}",
                association.cluster, association.namespace, association.service_account, role.arn
            ),
        );
        if let Some(target) = &association.target_role_arn {
            row(out, "", &format!("target role: {target}"));
        }
        row(
            out,
            "",
            &format!(
                "session tags: {}",
                if association.disable_session_tags {
                    "off"
                } else {
                    "on"
                }
            ),
        );
        if let Some(policy) = &association.policy {
            row(out, "", "session policy:");
            indented(out, &pretty(&policy.to_value()));
        }
    }
    match &desired.credentials_secret {
        Some(secret) => {
            row(out, "credentials secret", &secret.name);
            indented(out, &secret.credentials);
        }
        None => row(out, "credentials secret", "(none)"),
    }
    row(
        out,
        "deletion policy",
        &format!("{:?}", desired.deletion_policy),
    );
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn indented(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "    {line}");
    }
}
