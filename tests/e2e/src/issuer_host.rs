//! The issuer's public host, as STS sees it: the discovery document and the key set the
//! API server serves, published over HTTPS under the issuer's own name (what an S3 bucket
//! or the EKS issuer does). `doctor` reaches it with `--connect-to` and `--issuer-ca`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::Value;

use crate::cluster::Cluster;
use crate::error::HarnessError;
use crate::https_server::{HttpsServer, serve};

pub struct IssuerHost {
    pub addr: SocketAddr,
    /// The host name of the issuer URL.
    pub host: String,
    /// The chain it serves: its certificate, then the cluster's CA that signed it (as a
    /// host behind a public CA serves its intermediate). The thumbprint is the last one's.
    pub chain_pem: String,
    _server: HttpsServer,
}

fn error(what: &str, err: impl std::fmt::Display) -> HarnessError {
    HarnessError::new(format!("issuer host: {what}: {err}"))
}

impl IssuerHost {
    /// Publishes the API server's discovery document and JWKS at its issuer URL, on a free
    /// loopback port, with a certificate for the issuer's host signed by the cluster's CA.
    pub async fn publish(cluster: &Cluster) -> Result<Self, HarnessError> {
        let plane = cluster
            .plane
            .as_ref()
            .ok_or_else(|| HarnessError::new("the issuer host needs our own control plane"))?;
        let issuer = plane.issuer.clone();
        let (host, path) = issuer
            .trim_start_matches("https://")
            .split_once('/')
            .map(|(h, p)| (h.to_string(), format!("/{p}")))
            .unwrap_or_else(|| {
                (
                    issuer.trim_start_matches("https://").to_string(),
                    String::new(),
                )
            });
        let raw = |uri: &'static str| async move {
            let request = http::Request::get(uri)
                .body(Vec::new())
                .map_err(|e| error(uri, e))?;
            cluster
                .client
                .request::<Value>(request)
                .await
                .map_err(|e| error(uri, e))
        };
        let mut discovery = raw("/.well-known/openid-configuration").await?;
        let jwks = raw("/openid/v1/jwks").await?;
        let jwks_path = format!("{path}/keys.json");
        discovery["jwks_uri"] = Value::String(format!("https://{host}{jwks_path}"));
        let files = BTreeMap::from([
            (
                format!("{path}/.well-known/openid-configuration"),
                discovery.to_string().into_bytes(),
            ),
            (jwks_path, jwks.to_string().into_bytes()),
        ]);
        let mut serving = plane.pki.serving(&[host.as_str()])?;
        serving.cert_pem = format!("{}{}", serving.cert_pem, plane.ca_pem);
        let files = Arc::new(files);
        let server = serve("issuer host", &serving, move |request| {
            let files = files.clone();
            async move { answer(&request, &files) }
        })
        .await?;
        Ok(Self {
            addr: server.addr,
            chain_pem: serving.cert_pem.clone(),
            host,
            _server: server,
        })
    }

    /// doctor's `--connect-to` for this host.
    pub fn connect_to(&self) -> String {
        format!("{}:443:127.0.0.1:{}", self.host, self.addr.port())
    }
}

fn answer(
    request: &http::Request<hyper::body::Incoming>,
    files: &BTreeMap<String, Vec<u8>>,
) -> http::Response<Full<Bytes>> {
    let found = files.get(request.uri().path());
    let mut response =
        http::Response::new(Full::new(Bytes::from(found.cloned().unwrap_or_default())));
    if found.is_none() {
        *response.status_mut() = http::StatusCode::NOT_FOUND;
    }
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
