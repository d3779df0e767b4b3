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

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use podidentity_aws::sdk::{AwsSettings, SdkIam};
use podidentity_controller::startup::api_server_issuer;

use crate::config_load::ConfigArgs;
use chain::{Health, Link};
use gather::{Reach, Target};
use podidentity_api::config::ConnectTo;
use podidentity_controller::oidc::fetch::Fetcher;

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
    /// Extra CA certificates (PEM) to trust when fetching the issuer's documents.
    #[arg(long, value_name = "FILE")]
    pub issuer_ca: Option<PathBuf>,
    /// HOST:PORT:TARGET_HOST:TARGET_PORT: fetch the issuer's documents for HOST:PORT from
    /// the target instead (as curl's --connect-to).
    #[arg(long, value_name = "HOST:PORT:TARGET_HOST:TARGET_PORT")]
    pub connect_to: Vec<ConnectTo>,
    /// The operator's configuration, as the controller reads it.
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

pub async fn run(args: &DoctorArgs) -> ExitCode {
    let target: Target = match args.target.parse() {
        Ok(target) => target,
        Err(err) => return bad_input(err),
    };
    let mut config = match args.operator.load() {
        Ok(config) => config,
        Err(err) => return bad_input(err),
    };
    let extra_ca = match &args.issuer_ca {
        Some(path) => match std::fs::read(path) {
            Ok(pem) => Some(pem),
            Err(err) => {
                return bad_input(format!("--issuer-ca {}: {err}", path.display()));
            }
        },
        None => None,
    };
    let fetcher = match Fetcher::new(extra_ca.as_deref(), args.connect_to.clone()) {
        Ok(fetcher) => fetcher,
        Err(err) => return bad_input(err),
    };
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(err) => {
            eprintln!("error: cannot reach the Kubernetes API (kubeconfig or in-cluster): {err}");
            return ExitCode::from(1);
        }
    };
    let iam = SdkIam::connect(&AwsSettings {
        region: config.aws.region.clone(),
        endpoint_url: config.aws.endpoint_url.clone(),
        max_attempts: 3,
        call_timeout: Some(Duration::from_secs(20)),
        static_credentials: None,
        write_gate: None,
    })
    .await;
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
