//! One HTTPS GET, as STS makes it to an issuer: the discovery document and the JWKS.
//! `--connect-to` sends a host's connections elsewhere (an issuer not yet in DNS, a
//! bucket behind a proxy) and `--issuer-ca` trusts a private CA, as curl's flags do.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// Discovery documents and key sets are small; anything larger is not one.
const MAX_BODY: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(10);

/// `HOST:PORT:TARGET_HOST:TARGET_PORT`: connections for HOST:PORT go to the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectTo {
    pub host: String,
    pub port: u16,
    pub target: String,
}

impl std::str::FromStr for ConnectTo {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split(':').collect();
        let [host, host_port, target_host, target_port] = parts.as_slice() else {
            return Err(format!(
                "--connect-to {text:?}: write HOST:PORT:TARGET_HOST:TARGET_PORT, e.g. \
                 oidc.example.com:443:127.0.0.1:8443"
            ));
        };
        let number = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| format!("--connect-to {text:?}: {p:?} is not a port number"))
        };
        Ok(Self {
            host: host.to_string(),
            port: number(host_port)?,
            target: format!("{target_host}:{}", number(target_port)?),
        })
    }
}

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
                let cert = cert.map_err(|e| format!("--issuer-ca: not a PEM certificate: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("--issuer-ca: unusable certificate: {e}"))?;
                added += 1;
            }
            if added == 0 {
                return Err("--issuer-ca: the file holds no PEM certificate".into());
            }
        }
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

    async fn get_now(&self, url: &str) -> Result<Bytes, String> {
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
        let tcp = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|e| format!("cannot connect to {address} for {url}: {e}"))?;
        let name = ServerName::try_from(host.clone())
            .map_err(|e| format!("{host:?} is not a server name: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host} failed: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP with {host} failed: {e}"))?;
        tokio::spawn(connection);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let request = http::Request::get(path)
            .header("host", &host)
            .header("accept", "application/json")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_to_reads_like_curls_and_says_what_is_wrong() {
        let parsed: ConnectTo = "oidc.example.com:443:127.0.0.1:8443"
            .parse()
            .unwrap_or_else(|e: String| panic!("{e}"));
        assert_eq!(parsed.target, "127.0.0.1:8443");
        for bad in ["oidc.example.com", "a:b:c:d", "a:443:b:99999"] {
            let err = bad.parse::<ConnectTo>().expect_err(bad);
            assert!(err.contains("--connect-to"), "{err}");
        }
    }
}
