//! Operator configuration from a YAML file, environment and flags, in rising precedence:
//! defaults < `--config` file < `PODIDENTITY_*` environment < flags (clap merges the last
//! two). Every bad value is reported at once, naming the setting.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use podidentity_api::DeletionPolicy;
use podidentity_api::config::OperatorConfig;
use podidentity_plan::config_file::ConfigTextError;

#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// Operator configuration file (YAML, the settings of the Helm values).
    #[arg(long, env = "PODIDENTITY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// clusterName: names this cluster in ownership tags and the role name prefix.
    #[arg(long, env = "PODIDENTITY_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// oidc.issuerUrl
    #[arg(long, env = "PODIDENTITY_OIDC_ISSUER_URL")]
    pub oidc_issuer_url: Option<String>,
    /// oidc.providerArn
    #[arg(long, env = "PODIDENTITY_OIDC_PROVIDER_ARN")]
    pub oidc_provider_arn: Option<String>,
    /// oidc.additionalProviderArns (comma-separated)
    #[arg(
        long,
        env = "PODIDENTITY_OIDC_ADDITIONAL_PROVIDER_ARNS",
        value_delimiter = ','
    )]
    pub oidc_additional_provider_arns: Vec<String>,
    /// roles.namePrefix
    #[arg(long, env = "PODIDENTITY_ROLES_NAME_PREFIX")]
    pub roles_name_prefix: Option<String>,
    /// roles.path
    #[arg(long, env = "PODIDENTITY_ROLES_PATH")]
    pub roles_path: Option<String>,
    /// roles.permissionsBoundaryArn
    #[arg(long, env = "PODIDENTITY_ROLES_PERMISSIONS_BOUNDARY_ARN")]
    pub roles_permissions_boundary_arn: Option<String>,
    /// roles.allowNameOverride
    #[arg(long, env = "PODIDENTITY_ROLES_ALLOW_NAME_OVERRIDE")]
    pub roles_allow_name_override: Option<bool>,
    /// roles.maxManagedPolicies
    #[arg(long, env = "PODIDENTITY_ROLES_MAX_MANAGED_POLICIES")]
    pub roles_max_managed_policies: Option<usize>,
    /// guardrails.deniedActions (comma-separated)
    #[arg(
        long,
        env = "PODIDENTITY_GUARDRAILS_DENIED_ACTIONS",
        value_delimiter = ','
    )]
    pub guardrails_denied_actions: Vec<String>,
    /// guardrails.actionsNeedingNamedResources (comma-separated)
    #[arg(
        long,
        env = "PODIDENTITY_GUARDRAILS_ACTIONS_NEEDING_NAMED_RESOURCES",
        value_delimiter = ','
    )]
    pub guardrails_actions_needing_named_resources: Vec<String>,
    /// guardrails.allowedManagedPolicyArns (comma-separated)
    #[arg(
        long,
        env = "PODIDENTITY_GUARDRAILS_ALLOWED_MANAGED_POLICY_ARNS",
        value_delimiter = ','
    )]
    pub guardrails_allowed_managed_policy_arns: Vec<String>,
    /// guardrails.deniedManagedPolicyArns (comma-separated)
    #[arg(
        long,
        env = "PODIDENTITY_GUARDRAILS_DENIED_MANAGED_POLICY_ARNS",
        value_delimiter = ','
    )]
    pub guardrails_denied_managed_policy_arns: Vec<String>,
    /// guardrails.requireBoundary: refuse to run without roles.permissionsBoundaryArn
    #[arg(long, env = "PODIDENTITY_GUARDRAILS_REQUIRE_BOUNDARY")]
    pub guardrails_require_boundary: Option<bool>,
    /// trustPolicy.maxBytes
    #[arg(long, env = "PODIDENTITY_TRUST_POLICY_MAX_BYTES")]
    pub trust_policy_max_bytes: Option<usize>,
    /// deletionPolicy: default for bindings that do not set one.
    #[arg(long, env = "PODIDENTITY_DELETION_POLICY", value_enum)]
    pub deletion_policy: Option<DeletionPolicyArg>,
    /// driftInterval, e.g. 10m
    #[arg(long, env = "PODIDENTITY_DRIFT_INTERVAL")]
    pub drift_interval: Option<String>,
    /// aws.region
    #[arg(long, env = "PODIDENTITY_AWS_REGION")]
    pub aws_region: Option<String>,
    /// aws.endpointUrl (an emulator, in tests)
    #[arg(long, env = "PODIDENTITY_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    /// aws.maxRequestsPerSecond
    #[arg(long, env = "PODIDENTITY_AWS_MAX_REQUESTS_PER_SECOND")]
    pub aws_max_requests_per_second: Option<f64>,
    /// aws.accountId (else from STS; plan shows a placeholder)
    #[arg(long, env = "PODIDENTITY_AWS_ACCOUNT_ID")]
    pub aws_account_id: Option<String>,
    /// aws.partition (else derived from the region)
    #[arg(long, env = "PODIDENTITY_AWS_PARTITION")]
    pub aws_partition: Option<String>,
    /// shortForm.enabled: ServiceAccount annotations may ask for roles
    #[arg(long, env = "PODIDENTITY_SHORT_FORM_ENABLED")]
    pub short_form_enabled: Option<bool>,
    /// shortForm.namespaces (comma-separated; empty: every namespace)
    #[arg(long, env = "PODIDENTITY_SHORT_FORM_NAMESPACES", value_delimiter = ',')]
    pub short_form_namespaces: Vec<String>,
    /// verifyAssumable: a binding is Ready only once STS exchanged a token for its role
    #[arg(long, env = "PODIDENTITY_VERIFY_ASSUMABLE")]
    pub verify_assumable: Option<bool>,
    /// allowPodRestarts: bindings with spec.injection.restartPods may restart workloads
    #[arg(long, env = "PODIDENTITY_ALLOW_POD_RESTARTS")]
    pub allow_pod_restarts: Option<bool>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletionPolicyArg {
    Delete,
    Retain,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// `origin`: where the text came from ("config file PATH", a ConfigMap).
    #[error("{origin} is not valid YAML: {message}")]
    Yaml { origin: String, message: String },
    #[error("{origin}: {field}: {message}")]
    Field {
        origin: String,
        field: String,
        message: String,
    },
    #[error("bad configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<podidentity_api::config::ConfigProblem>),
}

impl ConfigArgs {
    /// The merged, checked configuration.
    pub fn load(&self) -> Result<OperatorConfig, ConfigError> {
        let config = match &self.config {
            Some(path) => read_file(path)?,
            None => OperatorConfig::default(),
        };
        self.finish(config)
    }

    /// As `load`, with `text` (read from `origin`) in the place of the `--config` file:
    /// defaults < `text` < environment < flags.
    pub fn load_text(&self, origin: &str, text: &str) -> Result<OperatorConfig, ConfigError> {
        self.finish(parse_text(origin, text)?)
    }

    /// The environment and flags over `config`, checked.
    fn finish(&self, mut config: OperatorConfig) -> Result<OperatorConfig, ConfigError> {
        self.apply_overrides(&mut config);
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    fn apply_overrides(&self, config: &mut OperatorConfig) {
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(value) = value {
                *target = value.clone();
            }
        }
        fn set_some<T: Clone>(target: &mut Option<T>, value: &Option<T>) {
            if value.is_some() {
                target.clone_from(value);
            }
        }
        fn set_list(target: &mut Vec<String>, values: &[String]) {
            if !values.is_empty() {
                *target = values
                    .iter()
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
            }
        }
        set(&mut config.cluster_name, &self.cluster_name);
        set_some(&mut config.oidc.issuer_url, &self.oidc_issuer_url);
        set_some(&mut config.oidc.provider_arn, &self.oidc_provider_arn);
        set_list(
            &mut config.oidc.additional_provider_arns,
            &self.oidc_additional_provider_arns,
        );
        set_some(&mut config.roles.name_prefix, &self.roles_name_prefix);
        set_some(&mut config.roles.path, &self.roles_path);
        set_some(
            &mut config.roles.permissions_boundary_arn,
            &self.roles_permissions_boundary_arn,
        );
        set(
            &mut config.roles.allow_name_override,
            &self.roles_allow_name_override,
        );
        set(
            &mut config.roles.max_managed_policies,
            &self.roles_max_managed_policies,
        );
        set_list(
            &mut config.guardrails.denied_actions,
            &self.guardrails_denied_actions,
        );
        set_list(
            &mut config.guardrails.actions_needing_named_resources,
            &self.guardrails_actions_needing_named_resources,
        );
        set_list(
            &mut config.guardrails.allowed_managed_policy_arns,
            &self.guardrails_allowed_managed_policy_arns,
        );
        set_list(
            &mut config.guardrails.denied_managed_policy_arns,
            &self.guardrails_denied_managed_policy_arns,
        );
        set(
            &mut config.guardrails.require_boundary,
            &self.guardrails_require_boundary,
        );
        set(
            &mut config.trust_policy.max_bytes,
            &self.trust_policy_max_bytes,
        );
        if let Some(policy) = self.deletion_policy {
            config.deletion_policy = match policy {
                DeletionPolicyArg::Delete => DeletionPolicy::Delete,
                DeletionPolicyArg::Retain => DeletionPolicy::Retain,
            };
        }
        set(&mut config.drift_interval, &self.drift_interval);
        set_some(&mut config.aws.region, &self.aws_region);
        set_some(&mut config.aws.endpoint_url, &self.aws_endpoint_url);
        set(
            &mut config.aws.max_requests_per_second,
            &self.aws_max_requests_per_second,
        );
        set_some(&mut config.aws.account_id, &self.aws_account_id);
        set_some(&mut config.aws.partition, &self.aws_partition);
        set(&mut config.short_form.enabled, &self.short_form_enabled);
        set_list(
            &mut config.short_form.namespaces,
            &self.short_form_namespaces,
        );
        set(&mut config.verify_assumable, &self.verify_assumable);
        set(&mut config.allow_pod_restarts, &self.allow_pod_restarts);
    }
}

fn read_file(path: &Path) -> Result<OperatorConfig, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_text(&format!("config file {shown}"), &text)
}

fn parse_text(origin: &str, text: &str) -> Result<OperatorConfig, ConfigError> {
    podidentity_plan::config_file::parse(text).map_err(|err| match err {
        ConfigTextError::Yaml(message) => ConfigError::Yaml {
            origin: origin.to_string(),
            message,
        },
        ConfigTextError::Field { field, message } => ConfigError::Field {
            origin: origin.to_string(),
            field,
            message,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile_path::TempPath, ConfigArgs) {
        let file = tempfile_path::TempPath::new(text);
        let args = ConfigArgs {
            config: Some(file.path.clone()),
            ..ConfigArgs::default()
        };
        (file, args)
    }

    /// A file removed on drop, without pulling a crate in for it.
    mod tempfile_path {
        use std::path::PathBuf;
        use std::sync::atomic::{AtomicU32, Ordering};

        pub struct TempPath {
            pub path: PathBuf,
        }
        impl TempPath {
            pub fn new(text: &str) -> Self {
                static NEXT: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "podidentity-config-{}-{}.yaml",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&path, text).unwrap_or_else(|err| panic!("{err}"));
                Self { path }
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }

    #[test]
    fn flags_win_over_the_file() {
        let (_file, mut args) = write("clusterName: from-file\ntrustPolicy: {maxBytes: 4096}\n");
        args.cluster_name = Some("from-flag".into());
        let config = args.load().unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(config.cluster_name, "from-flag");
        assert_eq!(config.trust_policy.max_bytes, 4096);
    }

    #[test]
    fn a_wrong_type_names_the_setting() {
        let (_file, args) = write("clusterName: prod\ntrustPolicy:\n  maxBytes: lots\n");
        let err = args.load().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("trustPolicy.maxBytes"), "{err}");
    }

    #[test]
    fn a_misspelt_setting_is_refused() {
        let (_file, args) = write("clusterName: prod\nroles:\n  namePrefx: x-\n");
        let err = args.load().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains(
                "roles.namePrefx: unknown field `namePrefx`, expected one of `namePrefix`"
            ),
            "{err}"
        );
    }

    #[test]
    fn all_bad_values_are_listed_together() {
        let (_file, mut args) = write("clusterName: prod\n");
        args.trust_policy_max_bytes = Some(9000);
        args.aws_account_id = Some("abc".into());
        let err = args.load().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("trustPolicy.maxBytes: 9000 is out of range"),
            "{err}"
        );
        assert!(err.contains("aws.accountId"), "{err}");
    }
}
