//! A real Kubernetes control plane from the envtest binaries (`KUBEBUILDER_ASSETS`): etcd,
//! kube-apiserver and kube-controller-manager on free loopback ports, with generated PKI,
//! a ServiceAccount token issuer, CEL rules on, RBAC, the admission plugins the operator
//! meets in production (OwnerReferencesPermissionEnforcement among them), and an audit log
//! that counts every write.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

use crate::error::HarnessError;
use crate::pki::{Pki, token_signing_key};
use crate::process::{Process, free_port};

pub struct ControlPlane {
    pub dir: PathBuf,
    pub url: String,
    pub admin_kubeconfig: PathBuf,
    pub ca_pem: String,
    pub pki: Pki,
    pub issuer: String,
    pub audit_log: PathBuf,
    etcd_data: PathBuf,
    controller_manager: Option<Process>,
    /// Behind a lock: a scenario restarts it (a signing key rotation).
    apiserver: std::sync::Mutex<Option<Process>>,
    /// How it was last started, to start it again.
    apiserver_program: PathBuf,
    apiserver_args: std::sync::Mutex<Vec<String>>,
    /// From each restart's kill until its RBAC answered again: refusals in these windows
    /// are the restart's (an authorizer whose caches are still filling), not the chart's.
    restarts: std::sync::Mutex<Vec<(Timestamp, Timestamp)>>,
    /// Behind a lock: a scenario kills it and starts it again from its data directory.
    etcd: std::sync::Mutex<Option<Process>>,
    etcd_program: PathBuf,
    etcd_args: Vec<String>,
    /// How many times each component was started again (log file names).
    starts: std::sync::atomic::AtomicUsize,
}

/// A rotation of the ServiceAccount token signing key, as an operator of the cluster
/// does it: a second key signs while both verify, then the first is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRotation {
    /// The new key signs; the old one still verifies (both in the JWKS).
    NewKeySigns,
    /// The old key is gone: the JWKS holds the new key alone.
    OldKeyDropped,
}

const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  # Everything the operator's ServiceAccounts do, reads included (403s show missing RBAC).
  - level: Metadata
    userGroups: ["system:serviceaccounts:podidentity-system"]
  # Every write by anyone else.
  - level: Metadata
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: None
"#;

/// A kubeconfig with everything embedded.
pub fn kubeconfig(url: &str, ca_pem: &str, user: KubeconfigUser<'_>) -> String {
    let user = match user {
        KubeconfigUser::Certificate { cert_pem, key_pem } => format!(
            "{{client-certificate-data: {}, client-key-data: {}}}",
            BASE64.encode(cert_pem),
            BASE64.encode(key_pem)
        ),
        KubeconfigUser::Token(token) => format!("{{token: {token}}}"),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster: {{server: \"{url}\", certificate-authority-data: {}}}\nusers:\n- name: user\n  user: {user}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: user}}\ncurrent-context: e2e\n",
        BASE64.encode(ca_pem)
    )
}

pub enum KubeconfigUser<'a> {
    Certificate { cert_pem: &'a str, key_pem: &'a str },
    Token(&'a str),
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, HarnessError> {
    let path = dir.join(name);
    std::fs::write(&path, text)
        .map_err(|e| HarnessError::new(format!("write {}: {e}", path.display())))?;
    Ok(path)
}

fn arg(flag: &str, value: impl std::fmt::Display) -> String {
    format!("--{flag}={value}")
}

impl ControlPlane {
    /// Starts etcd, the API server and the controller manager from `assets` and waits
    /// until the API server is ready and the controller manager is working.
    pub async fn start(assets: &Path, dir: PathBuf) -> Result<Self, HarnessError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| HarnessError::new(format!("{}: {e}", dir.display())))?;
        let pki = Pki::new()?;
        let ca_pem = pki.ca_pem();
        let serving = pki.serving(&["kubernetes", "kubernetes.default.svc"])?;
        let admin = pki.client("admin", &["system:masters"])?;
        let (sa_key, sa_pub) = token_signing_key()?;
        let ca_file = write(&dir, "ca.crt", &ca_pem)?;
        let serving_cert = write(&dir, "serving.crt", &serving.cert_pem)?;
        let serving_key = write(&dir, "serving.key", &serving.key_pem)?;
        let sa_key_file = write(&dir, "sa.key", &sa_key)?;
        let sa_pub_file = write(&dir, "sa.pub", &sa_pub)?;
        let audit_policy = write(&dir, "audit-policy.yaml", AUDIT_POLICY)?;
        let audit_log = dir.join("audit.log");

        let (client_port, peer_port) = (free_port()?, free_port()?);
        // etcd syncs every write; on tmpfs that costs nothing, and the store dies with the run.
        let etcd_data = match Path::new("/dev/shm").is_dir() {
            true => PathBuf::from(format!(
                "/dev/shm/podidentity-e2e-etcd-{}",
                std::process::id()
            )),
            false => dir.join("etcd"),
        };
        let etcd_program = assets.join("etcd");
        let etcd_args = vec![
            arg("data-dir", etcd_data.display()),
            arg(
                "listen-client-urls",
                format!("http://127.0.0.1:{client_port}"),
            ),
            arg(
                "advertise-client-urls",
                format!("http://127.0.0.1:{client_port}"),
            ),
            arg("listen-peer-urls", format!("http://127.0.0.1:{peer_port}")),
            arg(
                "initial-advertise-peer-urls",
                format!("http://127.0.0.1:{peer_port}"),
            ),
            arg(
                "initial-cluster",
                format!("default=http://127.0.0.1:{peer_port}"),
            ),
            arg("name", "default"),
        ];
        let etcd = Process::start("etcd", &etcd_program, &etcd_args, &[], dir.join("etcd.log"))?;

        let secure_port = free_port()?;
        let url = format!("https://127.0.0.1:{secure_port}");
        let issuer = format!(
            "https://oidc.e2e.podidentity.test/id/{:08X}",
            std::process::id()
        );
        let apiserver_args = vec![
            arg("etcd-servers", format!("http://127.0.0.1:{client_port}")),
            arg("secure-port", secure_port),
            arg("bind-address", "127.0.0.1"),
            arg("advertise-address", "127.0.0.1"),
            arg("service-account-issuer", &issuer),
            arg("service-account-key-file", sa_pub_file.display()),
            arg("service-account-signing-key-file", sa_key_file.display()),
            arg(
                "api-audiences",
                "https://kubernetes.default.svc,sts.amazonaws.com",
            ),
            arg("authorization-mode", "RBAC"),
            arg("client-ca-file", ca_file.display()),
            arg("tls-cert-file", serving_cert.display()),
            arg("tls-private-key-file", serving_key.display()),
            arg("service-cluster-ip-range", "10.0.0.0/24"),
            arg(
                "enable-admission-plugins",
                "NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,OwnerReferencesPermissionEnforcement",
            ),
            arg("feature-gates", "CustomResourceValidationExpressions=true"),
            arg("allow-privileged", true),
            arg("audit-policy-file", audit_policy.display()),
            arg("audit-log-path", audit_log.display()),
            arg("audit-log-maxsize", 0),
            arg("audit-log-format", "json"),
        ];
        let apiserver_program = assets.join("kube-apiserver");
        let apiserver = Process::start(
            "kube-apiserver",
            &apiserver_program,
            &apiserver_args,
            &[],
            dir.join("kube-apiserver.log"),
        )?;

        let admin_text = kubeconfig(
            &url,
            &ca_pem,
            KubeconfigUser::Certificate {
                cert_pem: &admin.cert_pem,
                key_pem: &admin.key_pem,
            },
        );
        let admin_kubeconfig = write(&dir, "admin.kubeconfig", &admin_text)?;
        let mut plane = Self {
            dir: dir.clone(),
            url,
            admin_kubeconfig: admin_kubeconfig.clone(),
            ca_pem,
            pki,
            issuer,
            audit_log,
            etcd_data,
            controller_manager: None,
            apiserver: std::sync::Mutex::new(Some(apiserver)),
            apiserver_program,
            apiserver_args: std::sync::Mutex::new(apiserver_args),
            restarts: std::sync::Mutex::new(Vec::new()),
            etcd: std::sync::Mutex::new(Some(etcd)),
            etcd_program,
            etcd_args,
            starts: std::sync::atomic::AtomicUsize::new(0),
        };
        let client = crate::cluster::client_from(&admin_kubeconfig).await?;
        plane.wait_ready(&client).await?;

        let kcm_port = free_port()?;
        let kubeconfig_arg = admin_kubeconfig.display().to_string();
        plane.controller_manager = Some(Process::start(
            "kube-controller-manager",
            &assets.join("kube-controller-manager"),
            &[
                arg("kubeconfig", &kubeconfig_arg),
                arg("authentication-kubeconfig", &kubeconfig_arg),
                arg("authorization-kubeconfig", &kubeconfig_arg),
                arg("bind-address", "127.0.0.1"),
                arg("secure-port", kcm_port),
                arg("service-account-private-key-file", sa_key_file.display()),
                arg("root-ca-file", ca_file.display()),
                arg("use-service-account-credentials", false),
                arg("leader-elect", false),
                arg(
                    "controllers",
                    "*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service,-route,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-pvc-protection,-pv-protection,-ttl,-bootstrapsigner,-tokencleaner",
                ),
                arg("service-cluster-ip-range", "10.0.0.0/24"),
                // Garbage collection and namespace deletion react within a second or two.
                arg("concurrent-gc-syncs", 5),
            ],
            &[],
            dir.join("kube-controller-manager.log"),
        )?);
        plane.wait_controller_manager(&client).await?;
        Ok(plane)
    }

    async fn wait_ready(&mut self, client: &kube::Client) -> Result<(), HarnessError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if ready(client).await {
                return Ok(());
            }
            if let Some(etcd) = self
                .etcd
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                && !etcd.running()
            {
                return Err(HarnessError::new(format!(
                    "etcd exited during start-up:\n{}",
                    etcd.log_tail(30)
                )));
            }
            if let Some(failure) = self.apiserver_failure(deadline) {
                return Err(failure);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Why waiting for the API server is over: it exited, or the deadline passed.
    fn apiserver_failure(&self, deadline: Instant) -> Option<HarnessError> {
        let mut apiserver = self.apiserver.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(process) = apiserver.as_mut()
            && !process.running()
        {
            return Some(HarnessError::new(format!(
                "kube-apiserver exited during start-up:\n{}",
                process.log_tail(30)
            )));
        }
        (Instant::now() > deadline).then(|| {
            HarnessError::new(format!(
                "kube-apiserver not ready after 60 s:\n{}",
                apiserver
                    .as_ref()
                    .map(|p| p.log_tail(30))
                    .unwrap_or_default()
            ))
        })
    }

    /// The controller manager works once it has made the `default` ServiceAccount.
    async fn wait_controller_manager(&mut self, client: &kube::Client) -> Result<(), HarnessError> {
        let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
            kube::Api::namespaced(client.clone(), "default");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if accounts.get_opt("default").await.ok().flatten().is_some() {
                return Ok(());
            }
            if let Some(process) = &mut self.controller_manager
                && !process.running()
            {
                return Err(HarnessError::new(format!(
                    "kube-controller-manager exited:\n{}",
                    process.log_tail(30)
                )));
            }
            if Instant::now() > deadline {
                return Err(HarnessError::new(
                    "kube-controller-manager made no default ServiceAccount in 60 s".to_string(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last lines of each component's log (for a failure report).
    pub fn log_tails(&self, lines: usize) -> String {
        let apiserver = self.apiserver.lock().unwrap_or_else(|e| e.into_inner());
        let etcd = self.etcd.lock().unwrap_or_else(|e| e.into_inner());
        [&*etcd, &*apiserver, &self.controller_manager]
            .into_iter()
            .flatten()
            .map(|p| format!("--- {}\n{}", p.name, p.log_tail(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Restarts the API server with a second token signing key (made on the first call),
    /// and waits until it serves again. Its port, store and everything else stay.
    pub async fn rotate_token_keys(
        &self,
        rotation: KeyRotation,
        client: &kube::Client,
    ) -> Result<(), HarnessError> {
        let (new_key, new_pub) = (self.dir.join("sa-2.key"), self.dir.join("sa-2.pub"));
        if !new_key.is_file() {
            let (key, public) = token_signing_key()?;
            write(&self.dir, "sa-2.key", &key)?;
            write(&self.dir, "sa-2.pub", &public)?;
        }
        let old_pub = self.dir.join("sa.pub");
        let mut args: Vec<String> = self
            .current_apiserver_args()
            .into_iter()
            .filter(|a| {
                !a.starts_with("--service-account-key-file=")
                    && !a.starts_with("--service-account-signing-key-file=")
            })
            .collect();
        if rotation == KeyRotation::NewKeySigns {
            args.push(arg("service-account-key-file", old_pub.display()));
        }
        args.push(arg("service-account-key-file", new_pub.display()));
        args.push(arg("service-account-signing-key-file", new_key.display()));
        self.restart_apiserver_with(args, client).await
    }

    /// Kills the API server (as a crash does: SIGKILL) and starts it again as it was
    /// started; waits until it serves and authorizes again. Its watch cache starts afresh,
    /// so a watch resumed from before the restart may be answered `410 Gone`.
    pub async fn restart_apiserver(&self, client: &kube::Client) -> Result<(), HarnessError> {
        self.restart_apiserver_with(self.current_apiserver_args(), client)
            .await
    }

    fn current_apiserver_args(&self) -> Vec<String> {
        self.apiserver_args
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Kills the API server and leaves it down (see `start_apiserver`).
    pub fn stop_apiserver(&self) -> Timestamp {
        let mut apiserver = self.apiserver.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut old) = apiserver.take() {
            old.kill();
        }
        Timestamp::now()
    }

    /// Starts the API server stopped by `stop_apiserver` (`killed` is what it returned)
    /// and waits until it serves and authorizes again.
    pub async fn start_apiserver(
        &self,
        killed: Timestamp,
        client: &kube::Client,
    ) -> Result<(), HarnessError> {
        self.start_apiserver_process(self.current_apiserver_args(), killed, client)
            .await
    }

    async fn restart_apiserver_with(
        &self,
        args: Vec<String>,
        client: &kube::Client,
    ) -> Result<(), HarnessError> {
        let killed = self.stop_apiserver();
        self.start_apiserver_process(args, killed, client).await
    }

    async fn start_apiserver_process(
        &self,
        args: Vec<String>,
        killed: Timestamp,
        client: &kube::Client,
    ) -> Result<(), HarnessError> {
        let start = self
            .starts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self.dir.join(format!("kube-apiserver-{start}.log"));
        *self
            .apiserver_args
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = args.clone();
        {
            let mut apiserver = self.apiserver.lock().unwrap_or_else(|e| e.into_inner());
            *apiserver = Some(Process::start(
                "kube-apiserver",
                &self.apiserver_program,
                &args,
                &[],
                log,
            )?);
        }
        self.wait_back(killed, "kube-apiserver's restart", client)
            .await
    }

    /// Waits until the API server authorizes again after `what`, and records the window
    /// since `killed` (see `restarts`).
    async fn wait_back(
        &self,
        killed: Timestamp,
        what: &str,
        client: &kube::Client,
    ) -> Result<(), HarnessError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !rbac_answers(client).await {
            if Instant::now() > deadline {
                return Err(HarnessError::new(format!(
                    "the API server not authorizing 60 s after {what}:\n{}",
                    self.log_tails(30)
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Clients that reconnected in the last instant are answered by now.
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((killed, Timestamp::now()));
        Ok(())
    }

    /// Kills etcd with SIGKILL and starts it again from its data directory (what survived
    /// its last fsync); waits until the API server reads and authorizes through it again.
    pub async fn restart_etcd(&self, client: &kube::Client) -> Result<(), HarnessError> {
        let killed = Timestamp::now();
        let start = self
            .starts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        {
            let mut etcd = self.etcd.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(mut old) = etcd.take() {
                old.kill();
            }
            *etcd = Some(Process::start(
                "etcd",
                &self.etcd_program,
                &self.etcd_args,
                &[],
                self.dir.join(format!("etcd-{start}.log")),
            )?);
        }
        self.wait_back(killed, "etcd's restart", client).await
    }

    /// When the API server was restarting (see `restarts`).
    pub fn restart_windows(&self) -> Vec<(Timestamp, Timestamp)> {
        self.restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A second kube-apiserver of the same cluster (same etcd, keys and CA, as an HA control
/// plane runs several) whose tokens name its own URL as their issuer: the API server is
/// its own OIDC issuer, as kubeadm, k3s and kind are when their discovery is served
/// directly. The cluster's first issuer is still accepted. Stopped when dropped.
pub struct OwnIssuerApiServer {
    /// `https://127.0.0.1:PORT`: its URL and its tokens' issuer.
    pub url: String,
    /// An admin kubeconfig for it.
    pub kubeconfig: PathBuf,
    _process: Process,
}

impl ControlPlane {
    /// Starts an `OwnIssuerApiServer` and waits until it serves and authorizes.
    pub async fn start_own_issuer_apiserver(&self) -> Result<OwnIssuerApiServer, HarnessError> {
        let port = free_port()?;
        let url = format!("https://127.0.0.1:{port}");
        let current = self.current_apiserver_args();
        let issuers: Vec<String> = current
            .iter()
            .filter(|a| a.starts_with("--service-account-issuer="))
            .cloned()
            .collect();
        let mut args: Vec<String> = current
            .into_iter()
            .filter(|a| {
                !a.starts_with("--secure-port=")
                    && !a.starts_with("--service-account-issuer=")
                    && !a.starts_with("--audit-log-path=")
            })
            .collect();
        args.push(arg("secure-port", port));
        // The first issuer signs; the others are accepted.
        args.push(arg("service-account-issuer", &url));
        args.extend(issuers);
        args.push(arg(
            "audit-log-path",
            self.dir.join("audit-own-issuer.log").display(),
        ));
        // The `kubernetes` Service stays the first API server's.
        args.push(arg("endpoint-reconciler-type", "none"));
        let mut process = Process::start(
            "kube-apiserver (own issuer)",
            &self.apiserver_program,
            &args,
            &[],
            self.dir.join("kube-apiserver-own-issuer.log"),
        )?;
        let text = std::fs::read_to_string(&self.admin_kubeconfig)
            .map_err(|e| HarnessError::new(format!("admin kubeconfig: {e}")))?
            .replace(&self.url, &url);
        let kubeconfig = write(&self.dir, "admin-own-issuer.kubeconfig", &text)?;
        let client = crate::cluster::client_from(&kubeconfig).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !rbac_answers(&client).await {
            if !process.running() {
                return Err(HarnessError::new(format!(
                    "the second kube-apiserver exited:\n{}",
                    process.log_tail(30)
                )));
            }
            if Instant::now() > deadline {
                return Err(HarnessError::new(format!(
                    "the second kube-apiserver not ready after 60 s:\n{}",
                    process.log_tail(30)
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(OwnIssuerApiServer {
            url,
            kubeconfig,
            _process: process,
        })
    }
}

/// Whether the API server answers `/readyz`.
async fn ready(client: &kube::Client) -> bool {
    match http::Request::get("/readyz").body(Vec::new()) {
        Ok(request) => client.request_text(request).await.is_ok(),
        Err(_) => false,
    }
}

/// Whether the API server is ready and its RBAC authorizer grants what the bootstrap
/// policy grants, cluster-wide and in a namespace (its caches have filled).
async fn rbac_answers(client: &kube::Client) -> bool {
    if !ready(client).await {
        return false;
    }
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    for (user, namespace, resource, verb) in [
        ("system:kube-scheduler", None, "pods", "list"),
        (
            "system:kube-controller-manager",
            Some("kube-system"),
            "configmaps",
            "get",
        ),
    ] {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.into()),
                resource_attributes: Some(ResourceAttributes {
                    namespace: namespace.map(String::from),
                    resource: Some(resource.into()),
                    verb: Some(verb.into()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let allowed = reviews
            .create(&PostParams::default(), &review)
            .await
            .ok()
            .and_then(|r| r.status)
            .is_some_and(|s| s.allowed);
        if !allowed {
            return false;
        }
    }
    true
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Stop in dependency order: the controller manager, the API server, then etcd.
        self.controller_manager.take();
        self.apiserver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.etcd.lock().unwrap_or_else(|e| e.into_inner()).take();
        let _ = std::fs::remove_dir_all(&self.etcd_data);
        if std::env::var_os("PODIDENTITY_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
