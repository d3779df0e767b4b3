//! `podidentity webhook`: flags as amazon-eks-pod-identity-webhook names them where it has
//! them, the operator configuration for predicting roles from PodIdentityBindings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use podidentity_webhook::identity::Predictor;
use podidentity_webhook::metrics::Metrics;
use podidentity_webhook::policies::NamespaceRules;
use podidentity_webhook::server::{AppState, ServerSettings};
use podidentity_webhook::validation::{BindingAdmission, SubjectAccessReviews};
use podidentity_webhook::{MutationConfig, TokenAccess};

use crate::config_load::ConfigArgs;
use crate::logging::{self, LogFormat};

#[derive(Args, Debug, Clone)]
pub struct WebhookArgs {
    /// HTTPS address for /mutate (and health).
    #[arg(
        long,
        env = "PODIDENTITY_WEBHOOK_LISTEN",
        default_value = "0.0.0.0:8443"
    )]
    pub listen: SocketAddr,
    /// Plain-HTTP address for /metrics, /livez and /readyz.
    #[arg(
        long,
        env = "PODIDENTITY_WEBHOOK_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_listen: SocketAddr,
    #[arg(
        long,
        env = "PODIDENTITY_WEBHOOK_TLS_CERT",
        default_value = "/etc/webhook/certs/tls.crt"
    )]
    pub tls_cert: PathBuf,
    #[arg(
        long,
        env = "PODIDENTITY_WEBHOOK_TLS_KEY",
        default_value = "/etc/webhook/certs/tls.key"
    )]
    pub tls_key: PathBuf,
    /// How often the certificate files are checked for a rotation.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub cert_reload_interval: Duration,
    /// Annotation domain read on ServiceAccounts and pods.
    #[arg(long, default_value = "eks.amazonaws.com")]
    pub annotation_prefix: String,
    /// Default token audience (the ServiceAccount annotation overrides it).
    #[arg(long, default_value = "sts.amazonaws.com")]
    pub token_audience: String,
    /// Default token lifetime in seconds (annotations override it; never below 600).
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(600..))]
    pub token_expiration: i64,
    /// Sets AWS_REGION and AWS_DEFAULT_REGION in injected containers.
    #[arg(long, env = "PODIDENTITY_WEBHOOK_AWS_DEFAULT_REGION")]
    pub aws_default_region: Option<String>,
    /// Inject AWS_STS_REGIONAL_ENDPOINTS=regional unless the ServiceAccount says otherwise.
    #[arg(long)]
    pub sts_regional_endpoint: bool,
    #[arg(
        long,
        default_value = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
    )]
    pub token_mount_path: String,
    /// How non-root containers get to read the token: fsGroup for pods that declare they
    /// run as non-root (default), for every pod without one, or never.
    #[arg(long, value_enum, default_value_t = FsGroupMode::NonRoot)]
    pub token_fs_group_mode: FsGroupMode,
    /// The fsGroup added when the pod has no runAsGroup to reuse.
    #[arg(long, default_value_t = 65_534)]
    pub token_fs_group: i64,
    /// How long a cache miss may wait for its one live GET.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub service_account_lookup_timeout: Duration,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The controller's ServiceAccount (`NAMESPACE/NAME`): the bindings it makes from
    /// annotated ServiceAccounts are let in to report their refusals in status.
    #[arg(
        long,
        env = "PODIDENTITY_CONTROLLER_SERVICE_ACCOUNT",
        value_name = "NAMESPACE/NAME"
    )]
    pub controller_service_account: Option<String>,
    #[command(flatten)]
    pub operator: ConfigArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsGroupMode {
    NonRoot,
    Always,
    Off,
}

impl WebhookArgs {
    pub fn mutation_config(&self) -> MutationConfig {
        let gid = self.token_fs_group;
        MutationConfig {
            annotation_prefix: self.annotation_prefix.clone(),
            default_audience: self.token_audience.clone(),
            default_token_expiration: self.token_expiration,
            default_regional_sts: self.sts_regional_endpoint,
            region: self.aws_default_region.clone(),
            mount_path: self.token_mount_path.clone(),
            token_access: match self.token_fs_group_mode {
                FsGroupMode::NonRoot => TokenAccess::FsGroupForNonRoot { gid },
                FsGroupMode::Always => TokenAccess::FsGroupAlways { gid },
                FsGroupMode::Off => TokenAccess::Off,
            },
            ..MutationConfig::default()
        }
    }
}

pub async fn run(args: &WebhookArgs) -> ExitCode {
    logging::init(args.log_format);
    // With an operator configuration, roles are predicted from bindings; without one the
    // webhook reads ServiceAccount annotations only, as the original does.
    let wants_prediction = args.operator.config.is_some() || args.operator.cluster_name.is_some();
    let operator = if wants_prediction {
        match args.operator.load() {
            Ok(config) => Some(config),
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let predictor = match &operator {
        // A predicted ARN needs the account; the webhook has no AWS access to learn it.
        Some(config) if config.aws.account_id.is_none() => {
            tracing::warn!(
                "no aws.accountId in the configuration: roles come from ServiceAccount annotations only"
            );
            Predictor::annotations_only(&args.annotation_prefix)
        }
        Some(config) => Predictor::new(config.clone(), &args.annotation_prefix),
        None => {
            tracing::info!(
                "no operator configuration: roles come from ServiceAccount annotations only"
            );
            Predictor::annotations_only(&args.annotation_prefix)
        }
    };
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(err) => {
            eprintln!("error: cannot reach the Kubernetes API (kubeconfig or in-cluster): {err}");
            return ExitCode::FAILURE;
        }
    };
    // One pair of policy and namespace watches serves predictions and admission.
    let rules = operator
        .as_ref()
        .map(|config| NamespaceRules::watch_cluster(config, client.clone()));
    let predictor = match &rules {
        Some(rules) if predictor.predicts() => predictor.with_rules(rules.clone()),
        _ => predictor,
    };
    let bindings = BindingAdmission {
        operator: operator.zip(rules),
        rights: Arc::new(SubjectAccessReviews(client.clone())),
        controller_user: args
            .controller_service_account
            .as_deref()
            .and_then(|account| account.split_once('/'))
            .map(|(namespace, name)| format!("system:serviceaccount:{namespace}:{name}")),
    };
    let lookup = podidentity_webhook::lookup::watch_cluster(
        client,
        args.service_account_lookup_timeout,
        predictor,
    );
    let state = Arc::new(AppState {
        lookup: Arc::new(lookup),
        config: args.mutation_config(),
        metrics: Metrics::new(),
        bindings: Some(bindings),
    });
    let settings = ServerSettings {
        listen: args.listen,
        metrics_listen: Some(args.metrics_listen),
        tls_cert_file: args.tls_cert.clone(),
        tls_key_file: args.tls_key.clone(),
        cert_reload_interval: args.cert_reload_interval,
    };
    let server = match podidentity_webhook::server::start(&settings, state).await {
        Ok(server) => server,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(https = %server.https_addr, metrics = ?server.metrics_addr, "pod identity webhook serving");
    tokio::select! {
        () = server.wait() => ExitCode::FAILURE,
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
    }
}
