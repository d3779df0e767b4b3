//! HTTPS to an issuer's host, as STS reaches it: one GET (the discovery document, the
//! JWKS), or the thumbprint of the certificate chain it serves (what an IAM OIDC provider
//! records). A `ConnectTo` sends a host's connections elsewhere (an issuer not yet in DNS,
//! a bucket behind a proxy) and an extra CA is trusted beside the system's roots, as
//! curl's `--connect-to` and `--cacert` do.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use podidentity_api::config::ConnectTo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Discovery documents and key sets are small; anything larger is not one.
const MAX_BODY: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(10);
/// What a GET asks for. A key set's own type first: kube-apiserver serves `/openid/v1/jwks`
/// only as `application/jwk-set+json` and answers `406 Not Acceptable` to an `Accept`
/// that admits neither it nor `*/*`; the discovery document is `application/json`; S3
/// and CDNs serve whatever type the object was stored with.
const ACCEPT: &str = "application/jwk-set+json, application/json;q=0.9, */*;q=0.8";

/// Where and how to fetch.
#[derive(Clone)]
pub struct Fetcher {
    tls: Arc<rustls::ClientConfig>,
    connect_to: Vec<ConnectTo>,
}

impl Fetcher {
    /// The system's roots, plus the certificates of `extra_ca_pem` if given.
    pub fn new(extra_ca_pem: Option<&[u8]>, connect_to: Vec<ConnectTo>) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A system certificate rustls cannot use is skipped, as every client does.
            let _ = roots.add(cert);
        }
        if let Some(pem) = extra_ca_pem {
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert =
                    cert.map_err(|e| format!("the issuer CA: not a PEM certificate: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("the issuer CA: unusable certificate: {e}"))?;
                added += 1;
            }
            if added == 0 {
                return Err("the issuer CA: the file holds no PEM certificate".into());
            }
        }
        #[allow(deprecated)] // ring: see Cargo.toml on rustls
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            tls: Arc::new(tls),
            connect_to,
        })
    }

    /// GETs an `https://` URL; the body of a 200, or what went wrong.
    pub async fn get(&self, url: &str) -> Result<Bytes, String> {
        tokio::time::timeout(TIMEOUT, self.get_now(url))
            .await
            .map_err(|_| format!("GET {url}: no answer within {}s", TIMEOUT.as_secs()))?
    }

    /// The SHA-1 of the last certificate the issuer's host serves in its chain (the top
    /// intermediate, or the only certificate), in lower-case hex: the thumbprint IAM
    /// asks for. The chain is verified first, so a thumbprint is never taken from an
    /// impostor.
    pub async fn thumbprint(&self, url: &str) -> Result<String, String> {
        let connect = async {
            let (tls, _, host) = self.connect(url).await?;
            let (_, session) = tls.get_ref();
            let top = session
                .peer_certificates()
                .and_then(|chain| chain.last())
                .ok_or_else(|| format!("{host} served no certificate"))?;
            let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, top);
            Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
        };
        tokio::time::timeout(TIMEOUT, connect)
            .await
            .map_err(|_| format!("{url}: no TLS answer within {}s", TIMEOUT.as_secs()))?
    }

    /// A verified TLS connection to the URL's host (or where `ConnectTo` sends it), the
    /// parsed URL and its host.
    async fn connect(
        &self,
        url: &str,
    ) -> Result<(TlsStream<TcpStream>, http::Uri, String), String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!(
                "{url} is not https:// (STS fetches only over HTTPS)"
            ));
        }
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(443);
        let address = self
            .connect_to
            .iter()
            .find(|c| c.host == host && c.port == port)
            .map_or_else(|| format!("{host}:{port}"), |c| c.target.clone());
        let tcp = TcpStream::connect(&address)
            .await
            .map_err(|e| format!("cannot connect to {address} for {url}: {e}"))?;
        let name = ServerName::try_from(host.clone())
            .map_err(|e| format!("{host:?} is not a server name: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host} failed: {e}"))?;
        Ok((tls, uri, host))
    }

    async fn get_now(&self, url: &str) -> Result<Bytes, String> {
        let (tls, uri, host) = self.connect(url).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP with {host} failed: {e}"))?;
        tokio::spawn(connection);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let request = http::Request::get(path)
            .header("host", &host)
            .header("accept", ACCEPT)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("GET {url} failed: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("GET {url}: reading the answer failed: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("GET {url} answered {status}"));
        }
        Ok(body)
    }
}
