//! `podidentity controller`: configuration, start-up checks, then the reconcile loops.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use podidentity_api::config::OperatorConfig;
use podidentity_aws::IamApi;
use podidentity_aws::budget::Budgeted;
use podidentity_aws::s3::{ObjectStore, SdkS3};
use podidentity_aws::sdk::{AwsSettings, SdkConfig, SdkIam, assumed_config, sdk_config};
use podidentity_controller::Context;
use podidentity_controller::oidc::OidcKeeper;
use podidentity_controller::oidc::fetch::Fetcher;
use podidentity_controller::process::fence::{FenceLayer, write_service};
use podidentity_controller::process::leader::{Elector, Leadership, LeaseSettings};
use podidentity_controller::process::metrics::{AccountLabel, Metered, MeteredEks, Metrics};
use podidentity_controller::process::run::{RunSettings, run as run_controller};
use podidentity_controller::process::startup::{check_crds, complete_config};

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
    /// The operator's own namespace: its Lease, and the `podidentity-oidc` status
    /// ConfigMap.
    #[arg(long, env = "POD_NAMESPACE", default_value = "podidentity-system")]
    pub lease_namespace: String,
    #[arg(long, default_value = "podidentity-controller")]
    pub lease_name: String,
    /// How long the other replicas wait, after they last saw the lease renewed, before
    /// taking it over.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// How long the leader goes on writing without a successful renewal (shorter than the
    /// lease duration: it stops before anyone may take over).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub renew_deadline: Duration,
    /// Between lease attempts; also the timeout of one lease call.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub retry_period: Duration,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub operator: ConfigArgs,
}

/// The lease timings from the flags, checked; `None` without leader election.
fn lease_settings(args: &ControllerArgs) -> Result<Option<LeaseSettings>, Vec<String>> {
    if !args.leader_election {
        return Ok(None);
    }
    let holder =
        std::env::var("POD_NAME").unwrap_or_else(|_| format!("podidentity-{}", std::process::id()));
    let mut lease = LeaseSettings::new(&args.lease_namespace, &args.lease_name, &holder);
    lease.lease_duration = args.lease_duration;
    lease.renew_deadline = args.renew_deadline;
    lease.retry_period = args.retry_period;
    let problems = lease.problems();
    if problems.is_empty() {
        Ok(Some(lease))
    } else {
        Err(problems)
    }
}

/// Two clients: the lease's own, and the fenced one every other write goes through.
async fn clients(leadership: &Leadership) -> Result<(kube::Client, kube::Client), kube::Error> {
    let config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    // kube's own retry layer would sit inside the fence and send a write again long after
    // it was let through; the reconcile loop retries instead.
    let mut fenced_config = config.clone();
    fenced_config.default_retry = false;
    let writes = write_service(&fenced_config, leadership.clone())?;
    if writes.is_none() {
        tracing::warn!(
            "the Kubernetes configuration names a proxy: writes are fenced as they enter the client, not at the socket"
        );
    }
    let fenced = kube::client::ClientBuilder::try_from(fenced_config)?
        .with_layer(&FenceLayer::new(leadership.clone(), writes))
        .build();
    Ok((kube::Client::try_from(config)?, fenced))
}

/// `oidc.manage`: the keeper of the provider and the published keys, with an S3 client
/// when a bucket is named (same credentials, region, endpoint and write fence as IAM).
fn oidc_keeper(
    client: &kube::Client,
    iam: Arc<dyn IamApi>,
    (shared, aws): (&SdkConfig, &AwsSettings),
    config: &OperatorConfig,
    namespace: &str,
) -> Result<OidcKeeper, String> {
    let bucket: Option<(Arc<dyn ObjectStore>, String)> =
        config.oidc.publish.s3_bucket.as_ref().map(|bucket| {
            let store: Arc<dyn ObjectStore> = Arc::new(SdkS3::from_config(shared, aws));
            (store, bucket.clone())
        });
    let fetcher = Fetcher::new(
        config.oidc.issuer_ca.as_deref().map(str::as_bytes),
        config.issuer_connect_to(),
    )
    .map_err(|e| format!("oidc.issuerCa: {e}"))?;
    OidcKeeper::new(
        client.clone(),
        iam,
        bucket,
        config,
        namespace.to_string(),
        fetcher,
    )
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
    let lease = match lease_settings(args) {
        Ok(lease) => lease,
        Err(problems) => {
            for problem in problems {
                eprintln!("error: {problem}");
            }
            return ExitCode::from(2);
        }
    };
    let leadership = match &lease {
        Some(lease) => Leadership::elected(lease.renew_deadline),
        None => Leadership::always(),
    };
    let (lease_client, client) = match clients(&leadership).await {
        Ok(clients) => clients,
        Err(err) => {
            eprintln!("error: cannot reach the Kubernetes API (kubeconfig or in-cluster): {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(err) = check_crds(&client).await {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    let metrics = Arc::new(Metrics::new());
    metrics
        .eks_association_quota
        .set(i64::from(config.eks_max_associations()));
    let aws = AwsSettings {
        region: config.aws.region.clone(),
        endpoint_url: config.aws.endpoint_url.clone(),
        max_attempts: 5,
        call_timeout: Some(Duration::from_secs(30)),
        static_credentials: None,
        write_gate: Some(leadership.write_gate()),
    };
    // One AWS configuration (credential chain, HTTP client) for IAM and S3.
    let shared = sdk_config(&aws).await;
    let sdk = SdkIam::from_config(&shared, &aws);
    // The own account's id, as the configuration names it or STS says at start-up.
    let own_account = AccountLabel::default();
    let iam = budgeted_iam(
        sdk,
        &metrics,
        own_account.clone(),
        config.aws.max_requests_per_second,
    );
    // `${region}` in a PodIdentityPolicy is the region the SDK found (environment, profile
    // or instance metadata) when the configuration names none.
    let mut config = config;
    if config.aws.region.is_none() {
        config.aws.region = shared.region().map(ToString::to_string);
    }
    let config = match complete_config(config, &client, iam.as_ref()).await {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    own_account.set(config.account_id_or_placeholder());
    tracing::info!(cluster = %config.cluster_name, provider = %config.provider_arn(), "pod identity controller starting");
    // Each other account: its own assumed credentials and its own request budget.
    let mut other_accounts: Vec<(String, Arc<dyn IamApi>)> = Vec::new();
    for account in &config.accounts {
        let assumed = assumed_config(&shared, &account.role_arn, &config.cluster_name).await;
        let iam = budgeted_iam(
            SdkIam::from_config(&assumed, &aws),
            &metrics,
            AccountLabel::of(&account.id),
            config.requests_per_second_in(Some(&account.id)),
        );
        tracing::info!(account = %account.id, role = %account.role_arn, "acting in another account");
        other_accounts.push((account.id.clone(), iam));
    }
    let oidc = match config.oidc.manage {
        true => match oidc_keeper(
            &client,
            iam.clone(),
            (&shared, &aws),
            &config,
            &args.lease_namespace,
        ) {
            Ok(keeper) => Some(other_accounts.iter().fold(keeper, |keeper, (id, iam)| {
                keeper.with_account(id, iam.clone(), &config)
            })),
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::FAILURE;
            }
        },
        false => None,
    };
    let associations = Arc::new(MeteredEks::new(
        podidentity_aws::eks::SdkEks::from_config(&shared, &aws),
        metrics.clone(),
        own_account,
    ));
    let mut ctx = Context::new(client, iam, config.clone())
        .with_metrics(metrics.clone())
        .with_associations(associations);
    for (id, iam) in &other_accounts {
        ctx = ctx.with_account(id, iam.clone());
    }
    let election = lease.map(|lease| Elector::new(lease_client, lease, leadership));
    match run_controller(
        ctx,
        RunSettings {
            health_listen: args.health_listen,
            election,
            oidc,
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

/// IAM in one account as the controller calls it: counted in the metrics under `account`,
/// within `per_second`, the budget's waits observed under the same label.
fn budgeted_iam(
    sdk: SdkIam,
    metrics: &Arc<Metrics>,
    account: AccountLabel,
    per_second: f64,
) -> Arc<Budgeted<Metered<SdkIam>>> {
    Arc::new(
        Budgeted::new(
            Metered::new(sdk, metrics.clone(), account.clone()),
            per_second,
        )
        .observing_waits(metrics.budget_wait_observer(account)),
    )
}
