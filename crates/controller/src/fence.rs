//! The write fence for Kubernetes: every write of the controller's client passes through
//! [`Leadership::may_write`] at the moment it is sent. A replica that is not the leader,
//! or that has not renewed its lease within the renew deadline (stopped, hung, cut off),
//! cannot write, whatever its reconcilers are in the middle of. IAM writes are fenced the
//! same way, right before each attempt is sent (`podidentity_aws::sdk::WriteGate`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Method, Request};
use tower::{Layer, Service};

use crate::leader::Leadership;

#[derive(Debug, thiserror::Error)]
#[error(
    "this replica is not the leader (or its lease ran past the renew deadline): writes are fenced"
)]
pub struct NotLeader;

/// A tower layer for the Kubernetes client: requests other than reads are refused while
/// this replica may not write.
#[derive(Clone)]
pub struct FenceLayer {
    leadership: Leadership,
}

impl FenceLayer {
    pub fn new(leadership: Leadership) -> Self {
        Self { leadership }
    }
}

impl<S> Layer<S> for FenceLayer {
    type Service = Fence<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Fence {
            inner,
            leadership: self.leadership.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Fence<S> {
    inner: S,
    leadership: Leadership,
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl<S, B> Service<Request<B>> for Fence<S>
where
    S: Service<Request<B>>,
    S::Error: Into<tower::BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = tower::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, tower::BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !is_read(request.method()) && !self.leadership.may_write() {
            return Box::pin(async { Err(Box::new(NotLeader) as tower::BoxError) });
        }
        let future = self.inner.call(request);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}
