//! `podidentity controller`: configuration, start-up checks, then the reconcile loops.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use podidentity_aws::budget::Budgeted;
use podidentity_aws::sdk::{AwsSettings, SdkIam};
use podidentity_controller::Context;
use podidentity_controller::leader::LeaseSettings;
use podidentity_controller::metrics::{Metered, Metrics};
use podidentity_controller::run::{RunSettings, run as run_controller};
use podidentity_controller::startup::{check_crd, complete_config};

use crate::config_load::ConfigArgs;
use crate::logging::{self, LogFormat};

#[derive(Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Plain-HTTP address for /metrics, /livez and /readyz.
    #[arg(
        long,
        env = "PODIDENTITY_HEALTH_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub health_listen: SocketAddr,
    /// Run only while holding a Lease (for more than one replica).
    #[arg(long, env = "PODIDENTITY_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Namespace of the Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "podidentity-system")]
    pub lease_namespace: String,
    #[arg(long, default_value = "podidentity-controller")]
    pub lease_name: String,
    /// How long a lease lasts without renewal.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub operator: ConfigArgs,
}

pub async fn run(args: &ControllerArgs) -> ExitCode {
    logging::init(args.log_format);
    let config = match args.operator.load() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(err) => {
            eprintln!("error: cannot reach the Kubernetes API (kubeconfig or in-cluster): {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(err) = check_crd(&client).await {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    let metrics = Arc::new(Metrics::new());
    let sdk = SdkIam::connect(&AwsSettings {
        region: config.aws.region.clone(),
        endpoint_url: config.aws.endpoint_url.clone(),
        max_attempts: 5,
        call_timeout: Some(Duration::from_secs(30)),
        static_credentials: None,
    })
    .await;
    let iam = Arc::new(Budgeted::new(
        Metered::new(sdk, metrics.clone()),
        config.aws.max_requests_per_second,
    ));
    let config = match complete_config(config, &client, iam.as_ref()).await {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(cluster = %config.cluster_name, provider = %config.provider_arn(), "pod identity controller starting");
    let lease = args.leader_election.then(|| LeaseSettings {
        namespace: args.lease_namespace.clone(),
        name: args.lease_name.clone(),
        holder: std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("podidentity-{}", std::process::id())),
        duration: args.lease_duration,
    });
    let ctx = Context::new(client, iam, config);
    match run_controller(
        ctx,
        metrics,
        RunSettings {
            health_listen: args.health_listen,
            lease,
        },
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
