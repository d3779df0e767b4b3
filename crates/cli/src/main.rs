//! `podidentity`: the one binary. Parses arguments and configuration, runs a subcommand,
//! and turns the outcome into an exit code. The work lives in the library crates.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod config_load;
mod controller_cmd;
mod crd_yaml;
mod doctor;
mod logging;
mod plan;
mod status;
mod webhook_cmd;

#[derive(Parser, Debug)]
#[command(
    name = "podidentity",
    version,
    about = "IAM roles for Kubernetes ServiceAccounts, kept in line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the IAM roles, ServiceAccount annotations and Secrets that manifests would
    /// produce, offline (no cluster, no AWS). Exit 0: all valid; 1: some refused; 2: bad
    /// input or flags.
    Plan(Box<plan::PlanArgs>),
    /// Print the CustomResourceDefinitions (PodIdentityBinding, PodIdentityPolicy) as YAML.
    Crd(CrdArgs),
    /// Reconcile PodIdentityBindings and annotated ServiceAccounts into IAM roles.
    Controller(Box<controller_cmd::ControllerArgs>),
    /// Serve the mutating pod webhook (a drop-in for amazon-eks-pod-identity-webhook).
    Webhook(Box<webhook_cmd::WebhookArgs>),
    /// Why a pod gets no AWS credentials: walks the chain (ServiceAccount, binding, role,
    /// trust policy, token, OIDC provider, issuer, pod) live and read-only, one line per
    /// link. Exit 0: the chain holds; 1: a link is broken; 2: bad input.
    Doctor(Box<doctor::DoctorArgs>),
    /// The PodIdentityBindings, one line each: ServiceAccount, role, Ready and why.
    Status(status::StatusArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
}

#[derive(clap::Args, Debug)]
struct CompletionsArgs {
    shell: clap_complete::Shell,
}

/// Called as `kubectl-podidentity` (on the PATH, kubectl runs it for `kubectl
/// podidentity`): the same binary as a kubectl plugin, its help naming it so and the
/// commands that run the operator itself hidden.
const PLUGIN_NAME: &str = "kubectl-podidentity";

fn invoked_as_plugin() -> bool {
    std::env::args_os()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_stem()
                .map(|stem| stem.to_string_lossy().starts_with(PLUGIN_NAME))
        })
        .unwrap_or(false)
}

/// The command line as this binary answers to its name.
fn command(as_plugin: bool) -> clap::Command {
    let command = Cli::command();
    if !as_plugin {
        return command;
    }
    ["controller", "webhook", "crd"].into_iter().fold(
        command.name(PLUGIN_NAME).bin_name("kubectl podidentity"),
        |command, server| command.mut_subcommand(server, |c| c.hide(true)),
    )
}

#[derive(clap::Args, Debug)]
struct CrdArgs {
    /// Write one file per CRD (`<name>.yaml`) into this directory instead of printing
    /// them all.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    // One TLS provider for kube, AWS and the webhook. Chosen here, not left to rustls's
    // feature detection: a workspace build that unifies dev-dependency features (kube-cel
    // brings aws-lc-rs) enables two providers, and rustls then refuses to pick one.
    #[allow(deprecated)] // ring: see Cargo.toml on rustls
    let _ = rustls::crypto::ring::default_provider().install_default();
    let as_plugin = invoked_as_plugin();
    let cli = match Cli::from_arg_matches(&command(as_plugin).get_matches()) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    match cli.command {
        Command::Webhook(args) => block_on(
            tokio::runtime::Builder::new_multi_thread(),
            webhook_cmd::run(&args),
        ),
        // The controller waits on the API server and IAM, not on its cores: one thread
        // does its work, and with one thread allocating, the C library keeps one heap
        // instead of one per thread (at 10,000 bindings the extra heaps held a sixth of
        // its memory).
        Command::Controller(args) => block_on(
            tokio::runtime::Builder::new_current_thread(),
            controller_cmd::run(&args),
        ),
        Command::Plan(args) => plan::run(&args),
        Command::Doctor(args) => block_on(
            tokio::runtime::Builder::new_current_thread(),
            doctor::run(&args),
        ),
        Command::Status(args) => block_on(
            tokio::runtime::Builder::new_current_thread(),
            status::run(&args),
        ),
        Command::Completions(args) => {
            let mut command = command(as_plugin);
            let name = if as_plugin {
                PLUGIN_NAME
            } else {
                "podidentity"
            };
            clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Crd(args) => {
            let written = match &args.out_dir {
                Some(dir) => crd_yaml::write_each(dir),
                None => crd_yaml::render_all()
                    .map(|yaml| print!("{yaml}"))
                    .map_err(|err| err.to_string()),
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("error: {err}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs the command on a runtime of this kind.
fn block_on(
    mut builder: tokio::runtime::Builder,
    future: impl std::future::Future<Output = ExitCode>,
) -> ExitCode {
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(future),
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        }
    }
}
