//! `podidentity status` (`kubectl podidentity status`): the PodIdentityBindings, one line
//! each, with their ServiceAccount, role and conditions, read live from the cluster.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use kube::api::{Api, ListParams};
use kube::core::error_boundary::DeserializeGuard;
use kube::{Client, ResourceExt};
use podidentity_api::PodIdentityBinding;
use podidentity_api::conditions::READY;
use serde::Serialize;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// `wide` adds the Ready condition's message and every other condition.
    #[arg(short = 'o', long, value_enum, default_value_t = StatusOutput::Table)]
    pub output: StatusOutput,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusOutput {
    Table,
    Wide,
    Json,
}

/// One binding as the status lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub namespace: String,
    pub name: String,
    pub service_account: String,
    /// The role's ARN, once the operator made it.
    pub role_arn: Option<String>,
    /// `True`, `False` or `Unknown`; none before the operator's first pass.
    pub ready: Option<String>,
    pub reason: String,
    pub message: String,
    /// The other conditions, `Type=Status`.
    pub conditions: Vec<String>,
}

impl Row {
    /// A binding's line; one the operator cannot read names why in its reason.
    pub fn of(watched: &DeserializeGuard<PodIdentityBinding>) -> Self {
        let binding = match &watched.0 {
            Ok(binding) => binding,
            Err(invalid) => {
                return Self {
                    namespace: invalid.metadata.namespace.clone().unwrap_or_default(),
                    name: invalid.metadata.name.clone().unwrap_or_default(),
                    service_account: String::new(),
                    role_arn: None,
                    ready: None,
                    reason: podidentity_api::conditions::reason::INVALID_OBJECT.into(),
                    message: invalid.error.clone(),
                    conditions: Vec::new(),
                };
            }
        };
        let status = binding.status.as_ref();
        let conditions = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
        let ready = conditions.iter().find(|c| c.type_ == READY);
        Self {
            namespace: binding.namespace().unwrap_or_default(),
            name: binding.name_any(),
            service_account: binding.spec.service_account_name.clone(),
            role_arn: status.and_then(|s| s.role_arn.clone()),
            ready: ready.map(|c| c.status.to_string()),
            reason: ready.map(|c| c.reason.to_string()).unwrap_or_default(),
            message: ready.map(|c| c.message.clone()).unwrap_or_default(),
            conditions: conditions
                .iter()
                .filter(|c| c.type_ != READY)
                .map(|c| format!("{}={}", c.type_, c.status))
                .collect(),
        }
    }
}

/// The rows as a table, kubectl's way: upper-case headers, columns padded to their widest
/// cell, `<none>` for what is not there yet.
pub fn table(rows: &[Row], all_namespaces: bool, wide: bool) -> String {
    let mut headers = vec!["NAME", "SERVICE ACCOUNT", "ROLE", "READY", "REASON"];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    if wide {
        headers.extend(["CONDITIONS", "MESSAGE"]);
    }
    let or_none = |s: &str| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s.to_string()
        }
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let mut cells = vec![
                row.name.clone(),
                or_none(&row.service_account),
                or_none(row.role_arn.as_deref().unwrap_or_default()),
                or_none(row.ready.as_deref().unwrap_or_default()),
                or_none(&row.reason),
            ];
            if all_namespaces {
                cells.insert(0, row.namespace.clone());
            }
            if wide {
                cells.push(or_none(&row.conditions.join(",")));
                // One line per binding: a multi-line message is joined.
                cells.push(row.message.split_whitespace().collect::<Vec<_>>().join(" "));
            }
            cells
        })
        .collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([headers[i].len()])
                .max()
                .unwrap_or_default()
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.clone());
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

pub async fn run(args: &StatusArgs) -> ExitCode {
    let client = match Client::try_default().await {
        Ok(client) => client,
        Err(err) => return crate::doctor::unreachable_api(err),
    };
    let api: Api<DeserializeGuard<PodIdentityBinding>> = if args.all_namespaces {
        Api::all(client)
    } else {
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        Api::namespaced(client, &namespace)
    };
    let listed = match api.list(&ListParams::default()).await {
        Ok(listed) => listed,
        Err(err) => {
            eprintln!("error: cannot list PodIdentityBindings: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut rows: Vec<Row> = listed.items.iter().map(Row::of).collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    match args.output {
        StatusOutput::Json => match serde_json::to_string_pretty(&rows) {
            Ok(json) => println!("{json}"),
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::FAILURE;
            }
        },
        StatusOutput::Table | StatusOutput::Wide if rows.is_empty() => {
            eprintln!("No PodIdentityBindings found.");
        }
        output => print!(
            "{}",
            table(&rows, args.all_namespaces, output == StatusOutput::Wide)
        ),
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use podidentity_api::conditions::Condition;
    use podidentity_api::{PodIdentityBindingSpec, PodIdentityBindingStatus};

    fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: type_.to_string().into(),
            status: status.to_string().into(),
            reason: reason.to_string().into(),
            message: message.into(),
            last_transition_time: Time(Default::default()),
            observed_generation: Some(1),
        }
    }

    fn binding(namespace: &str, name: &str, status: Option<PodIdentityBindingStatus>) -> Row {
        let mut binding = PodIdentityBinding::new(
            name,
            PodIdentityBindingSpec {
                service_account_name: "app".into(),
                ..Default::default()
            },
        );
        binding.metadata.namespace = Some(namespace.into());
        binding.status = status;
        Row::of(&DeserializeGuard(Ok(binding)))
    }

    fn rows() -> Vec<Row> {
        vec![
            binding(
                "shop",
                "orders",
                Some(PodIdentityBindingStatus {
                    role_arn: Some("arn:aws:iam::111122223333:role/shop-orders".into()),
                    conditions: vec![
                        condition("Ready", "True", "Synced", ""),
                        condition("RoleSynced", "True", "Synced", ""),
                    ],
                    ..Default::default()
                }),
            ),
            binding(
                "bank",
                "ledger",
                Some(PodIdentityBindingStatus {
                    conditions: vec![condition(
                        "Ready",
                        "False",
                        "GuardrailViolation",
                        "iam:* is not allowed\nby PodIdentityPolicy teams",
                    )],
                    ..Default::default()
                }),
            ),
            binding("new", "fresh", None),
        ]
    }

    #[test]
    fn each_binding_is_one_line_with_its_role_and_ready_condition() {
        let table = table(&rows(), true, false);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("NAMESPACE   NAME"), "{table}");
        let words = |line: &str| {
            line.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            words(lines[1]),
            [
                "shop",
                "orders",
                "app",
                "arn:aws:iam::111122223333:role/shop-orders",
                "True",
                "Synced"
            ]
        );
        assert_eq!(
            words(lines[2]),
            [
                "bank",
                "ledger",
                "app",
                "<none>",
                "False",
                "GuardrailViolation"
            ]
        );
        // Not yet seen by the operator: nothing invented.
        assert_eq!(
            words(lines[3]),
            ["new", "fresh", "app", "<none>", "<none>", "<none>"]
        );
        // Columns line up: every row's READY starts where the header's does.
        let column = lines[0].find("READY").unwrap_or_default();
        assert_eq!(lines[1][column..].split_whitespace().next(), Some("True"));
        assert_eq!(lines[2][column..].split_whitespace().next(), Some("False"));
    }

    #[test]
    fn wide_adds_the_other_conditions_and_the_message_on_the_same_line() {
        let table = table(&rows(), false, true);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(!lines[0].contains("NAMESPACE"), "{table}");
        assert!(lines[1].contains("RoleSynced=True"), "{table}");
        assert!(
            lines[2].ends_with("iam:* is not allowed by PodIdentityPolicy teams"),
            "{table}"
        );
    }
}
