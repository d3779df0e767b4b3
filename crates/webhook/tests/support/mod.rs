//! Test support: a throwaway PKI, a lookup with fixed answers, and an HTTPS client that
//! trusts only the test CA and opens a new connection per request.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use podidentity_webhook::lookup::{IdentityLookup, LookupError};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};

/// A CA, and leaf certificates for 127.0.0.1 signed by it.
pub struct TestPki {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl TestPki {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn leaf(&self) -> Leaf {
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "podidentity-webhook-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fixed answers: (namespace, ServiceAccount) → annotations; or always failing.
#[derive(Default)]
pub struct FixedLookup {
    pub answers: HashMap<(String, String), BTreeMap<String, String>>,
    pub fail: bool,
    pub ready: bool,
}

impl FixedLookup {
    pub fn with(namespace: &str, service_account: &str, annotations: &[(&str, &str)]) -> Self {
        let mut lookup = Self {
            ready: true,
            ..Self::default()
        };
        lookup.answers.insert(
            (namespace.into(), service_account.into()),
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        lookup
    }
}

impl IdentityLookup for FixedLookup {
    fn annotations<'a>(
        &'a self,
        namespace: &'a str,
        service_account: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, LookupError>> {
        Box::pin(async move {
            if self.fail {
                return Err(LookupError::Timeout {
                    namespace: namespace.into(),
                    name: service_account.into(),
                    timeout: std::time::Duration::from_millis(1),
                });
            }
            Ok(self
                .answers
                .get(&(namespace.to_string(), service_account.to_string()))
                .cloned())
        })
    }
    fn is_ready(&self) -> bool {
        self.ready
    }
}

fn tls_connector(ca: &CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    #[allow(deprecated)] // ring: see Cargo.toml on rustls
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("CA into root store");
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A new TLS connection to 127.0.0.1, verified against the CA.
pub async fn tls_connect(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name").to_owned();
    tls_connector(ca)
        .connect(name, tcp)
        .await
        .expect("TLS handshake with a certificate the CA signed")
}

/// The certificate the server presents on a new connection.
pub async fn peer_certificate(addr: SocketAddr, ca: &CertificateDer<'static>) -> Vec<u8> {
    let tls = tls_connect(addr, ca).await;
    let (_, connection) = tls.get_ref();
    connection
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|c| c.to_vec())
        .unwrap_or_default()
}

/// One HTTPS request on a fresh connection; returns status and body.
pub async fn https(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let tls = tls_connect(addr, ca).await;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("HTTP handshake");
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    (status, bytes)
}
