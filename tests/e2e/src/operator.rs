//! The operator's processes, started as the chart starts them: the Deployment's own
//! arguments and the ConfigMap's configuration file, authenticated as the chart's
//! ServiceAccount (a TokenRequest token), so its RBAC is exactly what the chart grants.
//! Only addresses and file paths are rewritten to fit a process on this machine.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::chart::OPERATOR_NAMESPACE;
use crate::chart::{RELEASE, Rendered};
use crate::cluster::Cluster;
use crate::error::HarnessError;
use crate::image::Image;
use crate::process::{Process, free_port};
use crate::wait::until;

pub struct Operator {
    pub process: Process,
    /// Plain-HTTP health and metrics address.
    pub health: SocketAddr,
    /// HTTPS address (the webhook only).
    pub https: Option<SocketAddr>,
    /// POD_NAME: the lease holder identity.
    pub identity: String,
    /// The user the API server sees (for the audit log).
    pub user: String,
}

/// One plain-HTTP GET on loopback: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header("host", "127.0.0.1")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The value of one sample in Prometheus text, e.g. `podidentity_reconciles_total{result="ok"}`;
/// 0 when absent.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// The sum of every sample of a family whose labels contain `label_part` (or all).
pub fn family_sum(metrics: &str, family: &str, label_part: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            let matches = (name == family || name.starts_with(&format!("{family}{{")))
                && name.contains(label_part);
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Rewrites `--flag=value` arguments whose flag is in `replace`.
fn rewrite(args: Vec<String>, replace: &[(&str, String)]) -> Vec<String> {
    args.into_iter()
        .map(|arg| {
            for (flag, value) in replace {
                if arg.starts_with(&format!("--{flag}=")) {
                    return format!("--{flag}={value}");
                }
            }
            arg
        })
        .collect()
}

/// Points a kubeconfig at another address for the API server (a proxy).
fn redirect(kubeconfig: &Path, from: &str, to: &str) -> Result<(), HarnessError> {
    let text = std::fs::read_to_string(kubeconfig)
        .map_err(|e| HarnessError::new(format!("{}: {e}", kubeconfig.display())))?;
    write(kubeconfig, &text.replace(from, to))
}

fn write(path: &Path, text: &str) -> Result<(), HarnessError> {
    std::fs::write(path, text).map_err(|e| HarnessError::new(format!("{}: {e}", path.display())))
}

/// How to start one controller replica.
#[derive(Clone, Debug)]
pub struct Replica {
    /// POD_NAME.
    pub identity: String,
    /// The ServiceAccount it runs as (bound to the chart's roles).
    pub service_account: String,
    /// Talk to the API server through this URL instead (a stallable proxy).
    pub api_server: Option<String>,
}

impl Replica {
    pub fn named(identity: &str) -> Self {
        Self {
            identity: identity.to_string(),
            service_account: format!("{RELEASE}-controller"),
            api_server: None,
        }
    }
}

/// Which binary the operator's process runs.
pub enum Launch<'a> {
    /// The harness's build (`PODIDENTITY_BIN`).
    Build,
    /// The image's own binary, from its root filesystem, as its user.
    Image(&'a Image),
}

impl Operator {
    /// `podidentity controller` with the chart's arguments and configuration.
    pub async fn controller(
        cluster: &Cluster,
        rendered: &Rendered,
        dir: &Path,
        replica: &Replica,
    ) -> Result<Self, HarnessError> {
        Self::controller_from(cluster, rendered, dir, replica, Launch::Build).await
    }

    /// [`Operator::controller`], from the binary `launch` names.
    pub async fn controller_from(
        cluster: &Cluster,
        rendered: &Rendered,
        dir: &Path,
        replica: &Replica,
        launch: Launch<'_>,
    ) -> Result<Self, HarnessError> {
        // Where its files go, and the path it sees them at (the same, outside an image).
        let (files, seen) = match &launch {
            Launch::Build => (dir.to_path_buf(), dir.to_path_buf()),
            Launch::Image(image) => image.private_dir(&replica.identity)?,
        };
        let config_name = format!("{}-config.yaml", replica.identity);
        let config = files.join(&config_name);
        write(&config, &rendered.config_yaml()?)?;
        let kubeconfig_name = format!("{}.kubeconfig", replica.identity);
        let kubeconfig = files.join(&kubeconfig_name);
        cluster
            .service_account_kubeconfig(OPERATOR_NAMESPACE, &replica.service_account, &kubeconfig)
            .await?;
        if let Some(url) = &replica.api_server {
            redirect(&kubeconfig, &cluster.url, url)?;
        }
        if let Launch::Image(image) = &launch {
            image.give(&config)?;
            image.give(&kubeconfig)?;
        }
        let health: SocketAddr = format!("127.0.0.1:{}", free_port()?)
            .parse()
            .map_err(|e| HarnessError::new(format!("{e}")))?;
        let args = rewrite(
            rendered.args("controller")?,
            &[
                ("config", seen.join(&config_name).display().to_string()),
                ("health-listen", health.to_string()),
            ],
        );
        let env = operator_env(&replica.identity, &seen.join(&kubeconfig_name));
        let log = dir.join(format!("{}.log", replica.identity));
        let process = match &launch {
            Launch::Build => Process::start(&replica.identity, &cluster.binary, &args, &env, log)?,
            Launch::Image(image) => {
                let (program, line) = image.command(&env, &args);
                Process::start(&replica.identity, &program, &line, &[], log)?
            }
        };
        Ok(Self {
            process,
            health,
            https: None,
            identity: replica.identity.clone(),
            user: format!(
                "system:serviceaccount:{OPERATOR_NAMESPACE}:{}",
                replica.service_account
            ),
        })
    }

    /// `podidentity webhook` with the chart's arguments, serving a certificate for
    /// 127.0.0.1 signed by the control plane's CA.
    pub async fn webhook(
        cluster: &Cluster,
        rendered: &Rendered,
        dir: &Path,
        identity: &str,
    ) -> Result<Self, HarnessError> {
        Self::webhook_on(cluster, rendered, dir, identity, None).await
    }

    /// As `webhook`, pinned to one CPU when `cpu` is given (benchmarks).
    pub async fn webhook_on(
        cluster: &Cluster,
        rendered: &Rendered,
        dir: &Path,
        identity: &str,
        cpu: Option<usize>,
    ) -> Result<Self, HarnessError> {
        Self::start_webhook(cluster, rendered, dir, identity, cpu, None).await
    }

    /// As `webhook`, talking to the API server through `api_server` (a proxy that can
    /// play the API server gone).
    pub async fn webhook_via(
        cluster: &Cluster,
        rendered: &Rendered,
        dir: &Path,
        identity: &str,
        api_server: &str,
    ) -> Result<Self, HarnessError> {
        Self::start_webhook(cluster, rendered, dir, identity, None, Some(api_server)).await
    }

    async fn start_webhook(
        cluster: &Cluster,
        rendered: &Rendered,
        dir: &Path,
        identity: &str,
        cpu: Option<usize>,
        api_server: Option<&str>,
    ) -> Result<Self, HarnessError> {
        let plane = cluster.plane.as_ref().ok_or_else(|| {
            HarnessError::new("the webhook scenarios need the harness's own control plane")
        })?;
        let serving = plane.pki.serving(&[])?;
        let cert = dir.join(format!("{identity}-tls.crt"));
        let key = dir.join(format!("{identity}-tls.key"));
        write(&cert, &serving.cert_pem)?;
        write(&key, &serving.key_pem)?;
        let config = dir.join(format!("{identity}-config.yaml"));
        write(&config, &rendered.config_yaml()?)?;
        let account = format!("{RELEASE}-webhook");
        let kubeconfig = dir.join(format!("{identity}.kubeconfig"));
        cluster
            .service_account_kubeconfig(OPERATOR_NAMESPACE, &account, &kubeconfig)
            .await?;
        if let Some(url) = api_server {
            redirect(&kubeconfig, &cluster.url, url)?;
        }
        let parse = |port: u16| -> Result<SocketAddr, HarnessError> {
            format!("127.0.0.1:{port}")
                .parse()
                .map_err(|e| HarnessError::new(format!("{e}")))
        };
        let https = parse(free_port()?)?;
        let health = parse(free_port()?)?;
        let args = rewrite(
            rendered.args("webhook")?,
            &[
                ("config", config.display().to_string()),
                ("listen", https.to_string()),
                ("metrics-listen", health.to_string()),
                ("tls-cert", cert.display().to_string()),
                ("tls-key", key.display().to_string()),
            ],
        );
        let process = Process::start_on(
            identity,
            &cluster.binary,
            &args,
            &operator_env(identity, &kubeconfig),
            dir.join(format!("{identity}.log")),
            cpu,
        )?;
        Ok(Self {
            process,
            health,
            https: Some(https),
            identity: identity.to_string(),
            user: format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{account}"),
        })
    }

    pub async fn readyz(&self) -> Option<u16> {
        http_get(self.health, "/readyz").await.ok().map(|(s, _)| s)
    }

    pub async fn metrics(&self) -> String {
        http_get(self.health, "/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Waits until /readyz answers 200 (panics with the log tail otherwise).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Duration {
        let started = std::time::Instant::now();
        loop {
            if self.readyz().await == Some(200) {
                return started.elapsed();
            }
            if !self.process.running() || started.elapsed() > timeout {
                panic!(
                    "{} not ready after {:?} (running: {}):\n{}",
                    self.identity,
                    started.elapsed(),
                    self.process.running(),
                    self.process.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the process exits by itself; returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        until(&format!("{} to exit", self.identity), timeout, || {
            let code = self.process.exit_code();
            let running = self.process.running();
            async move {
                if running {
                    Err("running".into())
                } else {
                    Ok(code)
                }
            }
        })
        .await
    }
}

fn operator_env(identity: &str, kubeconfig: &Path) -> Vec<(String, String)> {
    let pairs: [(&str, String); 7] = [
        ("POD_NAME", identity.to_string()),
        ("POD_NAMESPACE", OPERATOR_NAMESPACE.to_string()),
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        (
            "RUST_LOG",
            std::env::var("PODIDENTITY_E2E_LOG").unwrap_or_else(|_| "info".into()),
        ),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
