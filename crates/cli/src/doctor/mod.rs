//! `podidentity doctor`: why a pod gets no AWS credentials. Reads the whole chain live
//! (`gather`), judges each link (`chain`, pure) and prints one line per link, the first
//! broken one marked with what to do. Exit 0: the chain holds; 1: a link is broken; 2:
//! bad input.

mod chain;
#[cfg(test)]
mod chain_tests;
#[cfg(test)]
mod discover_tests;
mod gather;
mod pod_identity;
mod settings;
#[cfg(test)]
mod settings_tests;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use podidentity_aws::eks::SdkEks;
use podidentity_aws::sdk::{AwsSettings, SdkIam, assumed_config, sdk_config};
use podidentity_controller::process::startup::api_server_issuer;

use crate::config_load::ConfigArgs;
use chain::{Health, Link};
use gather::{Reach, Target};
use podidentity_api::config::ConnectTo;
use settings::SettingsError;

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// NAMESPACE/SERVICEACCOUNT, or pod/NAMESPACE/NAME.
    pub target: String,
    /// Also exchange a fresh token with STS (AssumeRoleWithWebIdentity), as the pod's SDK
    /// would; the credentials are dropped.
    #[arg(long)]
    pub assume: bool,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Extra CA certificates (PEM) to trust when fetching the issuer's documents, instead
    /// of the configuration's oidc.issuerCa (the cluster's CA is trusted as well).
    #[arg(long, value_name = "FILE")]
    pub issuer_ca: Option<PathBuf>,
    /// HOST:PORT:TARGET_HOST:TARGET_PORT: fetch the issuer's documents for HOST:PORT from
    /// the target instead (as curl's --connect-to); over oidc.connectTo for that HOST:PORT.
    #[arg(long, value_name = "HOST:PORT:TARGET_HOST:TARGET_PORT")]
    pub connect_to: Vec<ConnectTo>,
    /// The operator's namespace, where the chart's ConfigMap is read (without --config).
    #[arg(long, default_value = "podidentity-system")]
    pub namespace: String,
    /// The chart's release name: its ConfigMap is <release>-pod-identity-operator-config
    /// (or <release>-config when the release name contains pod-identity-operator). Without
    /// it, the one ConfigMap of the chart in --namespace.
    #[arg(long)]
    pub release: Option<String>,
    /// The operator's configuration, as the controller reads it; without --config, the
    /// chart's ConfigMap in the cluster is the file.
    #[command(flatten)]
    pub operator: ConfigArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

fn bad_input(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// The API server cannot be reached: said once, exit 1 (doctor and status).
pub(crate) fn unreachable_api(err: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: cannot reach the Kubernetes API (kubeconfig or in-cluster): {err}");
    ExitCode::from(1)
}

pub async fn run(args: &DoctorArgs) -> ExitCode {
    let target: Target = match args.target.parse() {
        Ok(target) => target,
        Err(err) => return bad_input(err),
    };
    let kube_config = match kube::Config::infer().await {
        Ok(config) => config,
        Err(err) => return unreachable_api(err),
    };
    // The cluster's CA: an issuer that is the API server itself serves its documents
    // under it.
    let cluster_ca = match (&kube_config.root_cert, &kube_config.root_cert_file) {
        (Some(ders), _) => settings::pem_of(ders),
        (None, Some(file)) => std::fs::read(file).unwrap_or_default(),
        (None, None) => Vec::new(),
    };
    let client = match kube::Client::try_from(kube_config) {
        Ok(client) => client,
        Err(err) => return unreachable_api(err),
    };
    let loaded = settings::load(
        &args.operator,
        &client,
        &args.namespace,
        args.release.as_deref(),
    )
    .await;
    let mut config = match loaded {
        Ok(config) => config,
        Err(SettingsError::BadInput(message)) => return bad_input(message),
        Err(SettingsError::Unreachable(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(1);
        }
    };
    let issuer_ca = match &args.issuer_ca {
        Some(path) => match std::fs::read(path) {
            Ok(pem) => Some((path.display().to_string(), pem)),
            Err(err) => {
                return bad_input(format!("--issuer-ca {}: {err}", path.display()));
            }
        },
        None => None,
    };
    let fetcher = match settings::issuer_fetcher(
        issuer_ca
            .as_ref()
            .map(|(name, pem)| (name.as_str(), pem.as_slice())),
        &config,
        &cluster_ca,
        settings::issuer_routes(&args.connect_to, &config),
    ) {
        Ok(fetcher) => fetcher,
        Err(err) => return bad_input(err),
    };
    let aws = AwsSettings {
        region: config.aws.region.clone(),
        endpoint_url: config.aws.endpoint_url.clone(),
        max_attempts: 3,
        call_timeout: Some(Duration::from_secs(20)),
        static_credentials: None,
        write_gate: None,
    };
    let shared = sdk_config(&aws).await;
    let iam = SdkIam::from_config(&shared, &aws);
    // Each other account as the controller reaches it: its role assumed with our
    // credentials.
    let mut other_accounts = Vec::new();
    for account in &config.accounts {
        let assumed = assumed_config(&shared, &account.role_arn, &config.cluster_name).await;
        other_accounts.push((account.id.clone(), SdkIam::from_config(&assumed, &aws)));
    }
    let eks = SdkEks::connect(&aws).await;
    // As the controller completes it: the issuer from the API server, the account from
    // STS, where the configuration leaves them out.
    if config.oidc.issuer_url.is_none()
        && config.oidc.provider_arn.is_none()
        && let Ok(issuer) = api_server_issuer(&client).await
    {
        config.oidc.issuer_url = Some(issuer);
    }
    if config.aws.account_id.is_none()
        && let Ok(account) = podidentity_aws::Iam::new(&iam).caller_account().await
    {
        config.aws.account_id = Some(account);
    }
    let reach = Reach {
        client: &client,
        iam: &iam,
        accounts: other_accounts
            .iter()
            .map(|(id, iam)| (id.clone(), iam as &dyn podidentity_aws::IamApi))
            .collect(),
        eks: &eks,
        fetcher: &fetcher,
        assume: args.assume,
    };
    let facts = gather::gather(&reach, config, &target).await;
    let links = chain::judge(&facts);
    match args.output {
        Output::Text => print!("{}", text(&args.target, &links)),
        Output::Json => println!("{}", json(&args.target, &links)),
    }
    if links.iter().any(|l| l.health == Health::Broken) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// One screen: a line per link, the first broken one marked with its fix.
fn text(target: &str, links: &[Link]) -> String {
    let first = links.iter().position(|l| l.health == Health::Broken);
    let mut out = format!("podidentity doctor {target}\n");
    for (index, link) in links.iter().enumerate() {
        let mark = match link.health {
            Health::Ok => "ok  ",
            Health::Warning => "warn",
            Health::Broken => "FAIL",
            Health::Skipped => "-   ",
        };
        let pointer = if Some(index) == first { "▶" } else { " " };
        out.push_str(&format!(
            "{pointer} {mark} {:<13} {}\n",
            link.link, link.detail
        ));
        if let Some(fix) = link.fix.as_ref().filter(|_| link.health != Health::Ok) {
            out.push_str(&format!("                    fix: {fix}\n"));
        }
    }
    out.push_str(&match first.map(|i| &links[i]) {
        Some(link) => format!("first broken link: {} ({})\n", link.link, link.reason),
        None => "the chain holds\n".into(),
    });
    out
}

fn json(target: &str, links: &[Link]) -> serde_json::Value {
    let first = links.iter().find(|l| l.health == Health::Broken);
    serde_json::json!({
        "target": target,
        "healthy": first.is_none(),
        "firstBroken": first.map(|l| l.link),
        "links": links,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &'static str, health: Health, fix: Option<&str>) -> Link {
        Link {
            link: name,
            health,
            reason: "Why",
            detail: format!("{name} detail"),
            fix: fix.map(String::from),
        }
    }

    #[test]
    fn the_first_broken_link_is_marked_with_its_fix_and_json_names_it() {
        let links = vec![
            link("serviceAccount", Health::Ok, None),
            link("role", Health::Warning, Some("look")),
            link("trustPolicy", Health::Broken, Some("rewrite it")),
            link("pod", Health::Broken, Some("restart it")),
        ];
        let shown = text("shop/orders", &links);
        let marked: Vec<&str> = shown.lines().filter(|l| l.starts_with('▶')).collect();
        assert_eq!(marked.len(), 1, "{shown}");
        assert!(marked[0].contains("trustPolicy"), "{shown}");
        assert!(shown.contains("fix: rewrite it") && shown.contains("fix: look"));
        assert!(
            shown.ends_with("first broken link: trustPolicy (Why)\n"),
            "{shown}"
        );
        let report = json("shop/orders", &links);
        assert_eq!(report["firstBroken"], "trustPolicy");
        assert_eq!(report["healthy"], false);
        let healthy = text("shop/orders", &links[..2]);
        assert!(healthy.ends_with("the chain holds\n"), "{healthy}");
    }
}
