//! An admission webhook that only records: every AdmissionReview the API server sends it is
//! kept byte for byte and allowed unchanged. Benchmarks use it to send exactly what a real
//! API server sends.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};

use crate::error::HarnessError;
use crate::https_server::{HttpsServer, serve};
use crate::pki::Pair;

pub struct Capture {
    pub addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Bytes>>>,
    _server: HttpsServer,
}

impl Capture {
    /// Serves HTTPS on a free loopback port with `serving` (HTTP/1.1 only).
    pub async fn start(serving: &Pair) -> Result<Self, HarnessError> {
        let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let kept = bodies.clone();
        let server = serve("capture", serving, move |request| {
            let kept = kept.clone();
            async move { answer(request, kept).await }
        })
        .await?;
        Ok(Self {
            addr: server.addr,
            bodies,
            _server: server,
        })
    }

    /// Every body received so far.
    pub fn bodies(&self) -> Vec<Bytes> {
        self.bodies.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

async fn answer(
    request: http::Request<hyper::body::Incoming>,
    kept: Arc<Mutex<Vec<Bytes>>>,
) -> http::Response<Full<Bytes>> {
    let Ok(body) = request.into_body().collect().await.map(|b| b.to_bytes()) else {
        let mut refused = http::Response::new(Full::new(Bytes::new()));
        *refused.status_mut() = http::StatusCode::BAD_REQUEST;
        return refused;
    };
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Ok(mut kept) = kept.lock() {
        kept.push(body);
    }
    let answer = json!({
        "apiVersion": review["apiVersion"],
        "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], "allowed": true},
    });
    let mut response = http::Response::new(Full::new(Bytes::from(answer.to_string())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
