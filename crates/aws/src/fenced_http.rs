//! The SDK's HTTP client with IAM writes on fenced connections of their own
//! ([`crate::wire_fence`]): reads (Get*, List*) take the SDK's ordinary client; a write
//! goes through a hyper pool whose sockets ask the [`WriteGate`] before every byte.

use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;

use crate::wire_fence::FencedConnector;
use crate::write_gate::{WriteGate, is_write_action};

/// The SDK's own default for a TCP connect.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

type WritePool = hyper_util::client::legacy::Client<
    FencedConnector<hyper_rustls::HttpsConnector<TcpConnector>>,
    SdkBody,
>;

#[derive(Clone)]
pub struct FencedHttpClient {
    reads: SharedHttpClient,
    writes: WritePool,
}

impl std::fmt::Debug for FencedHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FencedHttpClient").finish_non_exhaustive()
    }
}

impl FencedHttpClient {
    /// Reads through `reads`; writes over rustls (ring, the system's roots) on fenced
    /// connections. Fails only when the system's root certificates cannot be read.
    pub fn new(reads: SharedHttpClient, gate: WriteGate) -> std::io::Result<Self> {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        #[allow(deprecated)] // ring: see Cargo.toml on rustls
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let writes = hyper_util::client::legacy::Builder::new(TokioExecutor::new())
            .build(FencedConnector::new(https, gate));
        Ok(Self { reads, writes })
    }
}

impl HttpClient for FencedHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Split {
            reads: self.reads.http_connector(settings, components),
            writes: self.writes.clone(),
            read_timeout: settings.read_timeout(),
        })
    }
}

#[derive(Clone)]
struct Split {
    reads: SharedHttpConnector,
    writes: WritePool,
    read_timeout: Option<Duration>,
}

impl std::fmt::Debug for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Split").finish_non_exhaustive()
    }
}

impl HttpConnector for Split {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let body = request.body().bytes().unwrap_or_default();
        if !is_write_action(body) {
            return self.reads.call(request);
        }
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(err) => return HttpConnectorFuture::ready(Err(ConnectorError::user(err.into()))),
        };
        let sending = self.writes.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                Some(limit) => match tokio::time::timeout(limit, sending).await {
                    Ok(response) => response,
                    Err(elapsed) => return Err(ConnectorError::timeout(elapsed.into())),
                },
                None => sending.await,
            };
            let response = response.map_err(|err| ConnectorError::io(err.into()))?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|err| ConnectorError::other(err.into(), None))
        })
    }
}
