//! The settings for keeping the cluster's IAM OIDC provider and its published documents
//! in line (`oidc.manage`, `oidc.publish`): their defaults and their checks.

use std::time::Duration;

use super::OperatorConfig;
use super::problem::{ConfigProblem, Problems};
use crate::annotations::DEFAULT_AUDIENCE;

const DEFAULT_CHECK_INTERVAL: &str = "1m";
const DEFAULT_KEY_RETENTION: &str = "24h";

/// `HOST:PORT:TARGET_HOST:TARGET_PORT`: connections for HOST:PORT go to the target, as
/// curl's `--connect-to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectTo {
    pub host: String,
    pub port: u16,
    /// `TARGET_HOST:TARGET_PORT`.
    pub target: String,
}

impl std::str::FromStr for ConnectTo {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split(':').collect();
        let [host, host_port, target_host, target_port] = parts.as_slice() else {
            return Err(format!(
                "{text:?}: write HOST:PORT:TARGET_HOST:TARGET_PORT, e.g. \
                 oidc.example.com:443:127.0.0.1:8443"
            ));
        };
        let number = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| format!("{text:?}: {p:?} is not a port number"))
        };
        Ok(Self {
            host: host.to_string(),
            port: number(host_port)?,
            target: format!("{target_host}:{}", number(target_port)?),
        })
    }
}

fn duration(setting: &'static str, text: &str) -> Result<Duration, ConfigProblem> {
    humantime::parse_duration(text).map_err(|err| ConfigProblem {
        setting,
        message: format!("{text:?} is not a duration ({err}); write it like 1m, 90s or 24h"),
    })
}

impl OperatorConfig {
    /// The client ids the managed provider must list.
    pub fn provider_client_ids(&self) -> Vec<String> {
        match self.oidc.client_ids.is_empty() {
            true => vec![DEFAULT_AUDIENCE.to_string()],
            false => self.oidc.client_ids.clone(),
        }
    }

    pub fn oidc_check_interval(&self) -> Result<Duration, ConfigProblem> {
        duration(
            "oidc.checkInterval",
            self.oidc
                .check_interval
                .as_deref()
                .unwrap_or(DEFAULT_CHECK_INTERVAL),
        )
    }

    pub fn key_retention(&self) -> Result<Duration, ConfigProblem> {
        duration(
            "oidc.publish.keyRetention",
            self.oidc
                .publish
                .key_retention
                .as_deref()
                .unwrap_or(DEFAULT_KEY_RETENTION),
        )
    }

    /// `oidc.connectTo`, parsed (bad entries are reported by `problems`).
    pub fn issuer_connect_to(&self) -> Vec<ConnectTo> {
        self.oidc
            .connect_to
            .iter()
            .filter_map(|text| text.parse().ok())
            .collect()
    }

    /// `oidc.manage`, `oidc.publish` and what they need.
    pub(super) fn oidc_management_problems(&self, problems: &mut Problems) {
        let oidc = &self.oidc;
        if oidc.publish.s3_bucket.is_some() && !oidc.manage {
            problems.bad(
                "oidc.publish.s3Bucket",
                "publishing the issuer's keys is part of managing the provider: set \
                 oidc.manage: true as well, or remove oidc.publish"
                    .into(),
            );
        }
        if let Some(bucket) = &oidc.publish.s3_bucket
            && !is_bucket_name(bucket)
        {
            problems.bad(
                "oidc.publish.s3Bucket",
                format!(
                    "{bucket:?} is not an S3 bucket name: 3 to 63 lower-case letters, digits, \
                     dots and hyphens, starting and ending with a letter or digit"
                ),
            );
        }
        if oidc.manage
            && let (Some(arn), Some(_)) = (&oidc.provider_arn, &oidc.issuer_url)
            && !arn.ends_with(&format!(":oidc-provider/{}", self.issuer_host_path()))
        {
            problems.bad(
                "oidc.providerArn",
                format!(
                    "{arn:?} does not name the provider of oidc.issuerUrl ({}): a managed \
                     provider is the issuer's; remove oidc.providerArn or make them agree",
                    self.issuer_host_path()
                ),
            );
        }
        if oidc.manage && oidc.provider_arn.is_some() && oidc.issuer_url.is_none() {
            problems.bad(
                "oidc.issuerUrl",
                "a managed provider needs its issuer: set oidc.issuerUrl, or remove \
                 oidc.providerArn so that the API server's issuer is used"
                    .into(),
            );
        }
        for thumbprint in &oidc.thumbprints {
            if thumbprint.len() != 40 || !thumbprint.chars().all(|c| c.is_ascii_hexdigit()) {
                problems.bad(
                    "oidc.thumbprints",
                    format!(
                        "{thumbprint:?} is not a thumbprint: 40 hex digits, the SHA-1 of the \
                         issuer's top certificate"
                    ),
                );
            }
        }
        if oidc.client_ids.iter().any(|id| id.trim().is_empty()) {
            problems.bad(
                "oidc.clientIds",
                "an empty client id: remove it (the default is [sts.amazonaws.com])".into(),
            );
        }
        if let Some(pem) = &oidc.issuer_ca
            && !pem.contains("-----BEGIN CERTIFICATE-----")
        {
            problems.bad(
                "oidc.issuerCa",
                "holds no PEM certificate: paste the CA's -----BEGIN CERTIFICATE----- block".into(),
            );
        }
        for text in &oidc.connect_to {
            if let Err(message) = text.parse::<ConnectTo>() {
                problems.bad("oidc.connectTo", message);
            }
        }
        match self.oidc_check_interval() {
            Ok(interval) if interval < Duration::from_secs(1) => problems.bad(
                "oidc.checkInterval",
                "must be at least 1s (1m is plenty: keys change on an API server restart)".into(),
            ),
            Ok(_) => {}
            Err(problem) => problems.0.push(problem),
        }
        if let Err(problem) = self.key_retention() {
            problems.0.push(problem);
        }
    }
}

/// S3's rules for a bucket name (the DNS-compatible ones every region enforces).
fn is_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managed() -> OperatorConfig {
        let mut config = OperatorConfig {
            cluster_name: "prod".into(),
            ..OperatorConfig::default()
        };
        config.oidc.manage = true;
        config.oidc.issuer_url = Some("https://oidc.example.com/id/ABC".into());
        config
    }

    fn settings_named(config: &OperatorConfig) -> Vec<&'static str> {
        config.problems().iter().map(|p| p.setting).collect()
    }

    #[test]
    fn defaults_are_sts_a_minute_and_a_day() {
        let config = managed();
        assert!(config.problems().is_empty(), "{:?}", config.problems());
        assert_eq!(config.provider_client_ids(), vec!["sts.amazonaws.com"]);
        assert_eq!(config.oidc_check_interval(), Ok(Duration::from_secs(60)));
        assert_eq!(config.key_retention(), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn each_bad_setting_is_named_with_its_fix() {
        let mut config = managed();
        config.oidc.manage = false;
        config.oidc.publish.s3_bucket = Some("Not_A_Bucket".into());
        config.oidc.thumbprints = vec!["abc".into()];
        config.oidc.client_ids = vec![" ".into()];
        config.oidc.connect_to = vec!["oidc.example.com:443".into()];
        config.oidc.issuer_ca = Some("not a certificate".into());
        config.oidc.check_interval = Some("soon".into());
        config.oidc.publish.key_retention = Some("forever".into());
        let problems = config.problems();
        let named = settings_named(&config);
        for setting in [
            "oidc.publish.s3Bucket",
            "oidc.thumbprints",
            "oidc.clientIds",
            "oidc.connectTo",
            "oidc.issuerCa",
            "oidc.checkInterval",
            "oidc.publish.keyRetention",
        ] {
            assert!(named.contains(&setting), "{setting} in {problems:?}");
        }
        let text = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains("oidc.manage: true"), "{text}");
        assert!(text.contains("40 hex digits"), "{text}");
        assert!(text.contains("HOST:PORT:TARGET_HOST:TARGET_PORT"), "{text}");
    }

    #[test]
    fn a_managed_provider_arn_must_name_the_issuer() {
        let mut config = managed();
        config.oidc.provider_arn =
            Some("arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/OTHER".into());
        assert_eq!(settings_named(&config), vec!["oidc.providerArn"]);
        config.oidc.provider_arn =
            Some("arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/ABC".into());
        assert!(config.problems().is_empty());
    }

    #[test]
    fn a_managed_provider_needs_its_issuer() {
        let mut config = managed();
        config.oidc.issuer_url = None;
        assert!(
            config.problems().is_empty(),
            "the API server's issuer is used"
        );
        config.oidc.provider_arn =
            Some("arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/ABC".into());
        assert_eq!(settings_named(&config), vec!["oidc.issuerUrl"]);
    }

    #[test]
    fn bucket_names_follow_s3() {
        for good in ["abc", "my-cluster.oidc", "a1-b2"] {
            assert!(is_bucket_name(good), "{good}");
        }
        for bad in ["ab", "-abc", "abc-", "ABC", "a..b", "a_b", &"a".repeat(64)] {
            assert!(!is_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn connect_to_is_parsed_as_curl_does() {
        let parsed: ConnectTo = "oidc.example.com:443:127.0.0.1:8443"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.host, "oidc.example.com");
        assert_eq!(parsed.port, 443);
        assert_eq!(parsed.target, "127.0.0.1:8443");
        assert!("a:b:c:d".parse::<ConnectTo>().is_err());
    }
}
