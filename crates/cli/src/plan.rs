//! `podidentity plan`: the controller's validate-and-build, run on files. For every
//! binding it shows what the operator would make, or every reason it would refuse.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use podidentity_api::Mechanism;
use podidentity_plan::manifests::{InputProblem, read_inputs};
use podidentity_plan::{build_plan, render};

use crate::config_load::ConfigArgs;

#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// Manifest files or directories (`-` for stdin); repeat for more.
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE|DIR"
    )]
    pub filenames: Vec<PathBuf>,
    /// Read directories recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Namespace of objects that do not name one (as kubectl's).
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// A namespace's labels as the cluster has them, for the PodIdentityPolicies that
    /// select by label: `NAMESPACE=KEY=VALUE[,KEY=VALUE...]`; repeat for more. Namespace
    /// documents among the inputs count too.
    #[arg(long = "namespace-labels", value_name = "NS=K=V,...", value_parser = parse_namespace_labels)]
    pub namespace_labels: Vec<(String, BTreeMap<String, String>)>,
    /// `table` for people, `json` (stable) for CI.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Show, instead of the plan, which bindings would move if each were set to this
    /// mechanism (`IRSA` or `PodIdentity`), and what each step of the migration changes.
    #[arg(long = "migrate-to", value_name = "MECHANISM", value_parser = parse_mechanism)]
    pub migrate_to: Option<Mechanism>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

fn parse_mechanism(text: &str) -> Result<Mechanism, String> {
    match text {
        "IRSA" => Ok(Mechanism::Irsa),
        "PodIdentity" => Ok(Mechanism::PodIdentity),
        other => Err(format!("{other:?}: write IRSA or PodIdentity")),
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
}

fn parse_namespace_labels(text: &str) -> Result<(String, BTreeMap<String, String>), String> {
    let (namespace, labels) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: write NAMESPACE=KEY=VALUE[,KEY=VALUE...]"))?;
    let labels = labels
        .split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("{pair:?} in {text:?}: write KEY=VALUE"))
        })
        .collect::<Result<_, _>>()?;
    Ok((namespace.to_string(), labels))
}

pub fn run(args: &PlanArgs) -> ExitCode {
    let config = match args.config.load() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let inputs = read_inputs(&args.filenames, args.recursive);
    if !inputs.problems.is_empty() {
        report_input_problems(&inputs.problems);
        return ExitCode::from(2);
    }
    if let Some(to) = args.migrate_to {
        let plan = podidentity_plan::migration::build_migration_plan(
            inputs.documents,
            inputs.ignored_documents,
            &args.namespace,
            &config,
            args.namespace_labels.iter().cloned().collect(),
            to,
        );
        let rendered = match args.output {
            OutputFormat::Table => podidentity_plan::migration::table(&plan),
            OutputFormat::Json => podidentity_plan::migration::json(&plan),
        };
        print!("{rendered}");
        return if plan.moves.iter().any(|m| !m.valid) {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        };
    }
    let plan = build_plan(
        inputs.documents,
        inputs.ignored_documents,
        &args.namespace,
        &config,
        args.namespace_labels.iter().cloned().collect(),
    );
    let rendered = match args.output {
        OutputFormat::Table => render::table(&plan),
        OutputFormat::Json => render::json(&plan),
    };
    print!("{rendered}");
    if plan.summary.refused > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn report_input_problems(problems: &[InputProblem]) {
    for problem in problems {
        eprintln!("error: {problem}");
    }
    eprintln!(
        "{} input(s) could not be read; nothing was planned",
        problems.len()
    );
}
