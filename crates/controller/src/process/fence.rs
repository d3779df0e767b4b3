//! The write fence for Kubernetes. A replica that is not the leader, or that has not
//! renewed its lease within the renew deadline (stopped, hung, cut off), cannot write,
//! whatever its reconcilers are in the middle of.
//!
//! A check when a request enters the client is not enough: between it and the socket lie
//! the auth layer, the pool checkout and the connection task, and a process stopped
//! (SIGSTOP) in there sends the write when it resumes, long after another replica took
//! over. So writes travel on connections of their own whose every socket write asks
//! [`Leadership::may_write`] first (`podidentity_aws::wire_fence`); reads and watches keep
//! the ordinary connections. IAM writes are fenced right before each attempt is sent
//! (`podidentity_aws::sdk::WriteGate`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::{Body, ConfigExt, DynBody};
use podidentity_aws::wire_fence::FencedConnector;
use tower::util::BoxCloneService;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};

use crate::process::leader::Leadership;

#[derive(Debug, thiserror::Error)]
#[error(
    "this replica is not the leader (or its lease ran past the renew deadline): writes are fenced"
)]
pub struct NotLeader;

/// Where the controller's writes go: their own fenced connections, built from the same
/// configuration as the client's.
pub type WriteService = BoxCloneService<Request<Body>, Response<Box<DynBody>>, BoxError>;

/// A tower layer for the Kubernetes client: reads go to the inner service, writes to the
/// fenced [`WriteService`], and both are refused at once while this replica may not write.
#[derive(Clone)]
pub struct FenceLayer {
    leadership: Leadership,
    writes: Option<WriteService>,
}

impl FenceLayer {
    /// `writes`: see [`write_service`]; without it writes share the inner service and are
    /// checked only as they enter the client.
    pub fn new(leadership: Leadership, writes: Option<WriteService>) -> Self {
        Self { leadership, writes }
    }
}

impl<S> Layer<S> for FenceLayer {
    type Service = Fence<S>;

    fn layer(&self, reads: S) -> Self::Service {
        Fence {
            reads,
            writes: self.writes.clone(),
            leadership: self.leadership.clone(),
        }
    }
}

pub struct Fence<S> {
    reads: S,
    writes: Option<WriteService>,
    leadership: Leadership,
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl<S> Service<Request<Body>> for Fence<S>
where
    S: Service<Request<Body>, Response = Response<Box<DynBody>>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<Box<DynBody>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.reads.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let write = !is_read(request.method());
        if write && !self.leadership.may_write() {
            return Box::pin(async { Err(Box::new(NotLeader) as BoxError) });
        }
        match &self.writes {
            Some(writes) if write => Box::pin(writes.clone().oneshot(request)),
            _ => {
                let future = self.reads.call(request);
                Box::pin(async move { future.await.map_err(Into::into) })
            }
        }
    }
}

/// The service the controller's writes take: kube's base URI, auth and header layers over
/// a connection pool of its own whose sockets are fenced. `None` when the
/// configuration names a proxy (kube's proxy connectors are not reachable from here).
pub fn write_service(
    config: &kube::Config,
    leadership: Leadership,
) -> Result<Option<WriteService>, kube::Error> {
    if config.proxy_url.is_some() {
        return Ok(None);
    }
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(config.connect_timeout);
    let connector = FencedConnector::new(
        config.rustls_https_connector_with_connector(tcp)?,
        leadership.write_gate(),
    );
    let client: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Builder::new(TokioExecutor::new()).build(connector);
    // kube bounds a whole request by its read timeout; so do we.
    let timeout = config.read_timeout.unwrap_or(Duration::from_secs(295));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .timeout(timeout)
        .map_response(|response: Response<hyper::body::Incoming>| {
            response.map(|body| Box::new(body.map_err(BoxError::from)) as Box<DynBody>)
        })
        .service(client);
    Ok(Some(BoxCloneService::new(service)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<String>>>;

    fn recording(
        seen: Seen,
        side: &'static str,
    ) -> BoxCloneService<Request<Body>, Response<Box<DynBody>>, BoxError> {
        BoxCloneService::new(tower::service_fn(move |request: Request<Body>| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .expect("seen")
                    .push(format!("{side} {}", request.method()));
                let body =
                    http_body_util::Empty::<hyper::body::Bytes>::new().map_err(BoxError::from);
                Ok::<_, BoxError>(Response::new(Box::new(body) as Box<DynBody>))
            }
        }))
    }

    async fn send(leadership: Leadership, method: Method) -> (Result<(), BoxError>, Vec<String>) {
        let seen = Seen::default();
        let layer = FenceLayer::new(leadership, Some(recording(seen.clone(), "writes")));
        let mut fence = layer.layer(recording(seen.clone(), "reads"));
        let request = Request::builder()
            .method(method)
            .uri("/api/v1/namespaces")
            .body(Body::empty())
            .expect("request");
        let sent = fence
            .ready()
            .await
            .expect("ready")
            .call(request)
            .await
            .map(drop);
        let seen = seen.lock().expect("seen").clone();
        (sent, seen)
    }

    #[tokio::test]
    async fn reads_take_the_ordinary_connections_and_writes_the_fenced_ones() {
        let (sent, seen) = send(Leadership::always(), Method::GET).await;
        sent.expect("read");
        assert_eq!(seen, ["reads GET"]);
        let (sent, seen) = send(Leadership::always(), Method::PATCH).await;
        sent.expect("write");
        assert_eq!(seen, ["writes PATCH"]);
    }

    #[tokio::test]
    async fn a_replica_that_does_not_lead_reads_but_sends_no_write() {
        let standby = Leadership::elected(Duration::from_secs(10));
        let (sent, seen) = send(standby.clone(), Method::GET).await;
        sent.expect("a standby reads");
        assert_eq!(seen, ["reads GET"]);
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let (sent, seen) = send(standby.clone(), method.clone()).await;
            let refused = sent.expect_err("a standby's write is refused");
            assert!(refused.to_string().contains("fenced"), "{refused}");
            assert!(seen.is_empty(), "{method} reached {seen:?}");
        }
    }
}
