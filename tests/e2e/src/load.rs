//! A closed-loop HTTPS load generator for webhook benchmarks, in the manner of wrk: a fixed
//! number of requests in flight, each sent as soon as the previous one on its slot is
//! answered. HTTP/1.1 opens one keep-alive connection per slot (as wrk does); HTTP/2 opens
//! one connection and multiplexes every slot over it (as the API server's webhook client
//! does). Runs on the caller's runtime: give it a current-thread runtime on its own core.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::error::HarnessError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        }
    }

    fn alpn(self) -> &'static [u8] {
        match self {
            Protocol::Http1 => b"http/1.1",
            Protocol::Http2 => b"h2",
        }
    }
}

/// One load level: what to send, how hard, for how long.
#[derive(Clone, Debug)]
pub struct Level {
    pub protocol: Protocol,
    pub concurrency: usize,
    pub warm_up: Duration,
    pub measure: Duration,
}

/// What one level measured (requests answered within the measured window).
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub requests: u64,
    pub seconds: f64,
    /// Answers carrying a JSON patch.
    pub mutated: u64,
    /// Transport errors and non-200 answers.
    pub errors: u64,
    latencies_ns: Vec<u64>,
}

impl Measured {
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The latency at `quantile` (0..1) in milliseconds.
    pub fn percentile_ms(&self, quantile: f64) -> f64 {
        if self.latencies_ns.is_empty() {
            return 0.0;
        }
        let rank = ((self.latencies_ns.len() as f64) * quantile).ceil() as usize;
        let index = rank.clamp(1, self.latencies_ns.len()) - 1;
        self.latencies_ns[index] as f64 / 1e6
    }

    pub fn max_ms(&self) -> f64 {
        self.latencies_ns.last().map_or(0.0, |ns| *ns as f64 / 1e6)
    }

    fn merge(&mut self, other: Measured) {
        self.requests += other.requests;
        self.mutated += other.mutated;
        self.errors += other.errors;
        self.latencies_ns.extend(other.latencies_ns);
    }
}

/// TLS settings for a server whose certificate the given CA signed.
pub fn client_tls(
    ca_pem: &str,
    protocol: Protocol,
) -> Result<Arc<rustls::ClientConfig>, HarnessError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| HarnessError::new(format!("CA certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| HarnessError::new(format!("CA certificate: {e}")))?;
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![protocol.alpn().to_vec()];
    Ok(Arc::new(config))
}

async fn connect(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, HarnessError> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| HarnessError::new(format!("connect {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::IpAddress(addr.ip().into());
    tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| HarnessError::new(format!("TLS to {addr}: {e}")))
}

fn request(addr: SocketAddr, body: &Bytes) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::new(Full::new(body.clone()));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = format!("https://{addr}/mutate")
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/mutate"));
    request.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Ok(host) = http::HeaderValue::from_str(&addr.to_string()) {
        request.headers_mut().insert(http::header::HOST, host);
    }
    request
}

/// Runs one level against `addr` with `body` as every request, and returns what the
/// measured window saw.
pub async fn run(
    addr: SocketAddr,
    ca_pem: &str,
    body: Bytes,
    level: &Level,
) -> Result<Measured, HarnessError> {
    let tls = client_tls(ca_pem, level.protocol)?;
    let start = Instant::now();
    let window = (start + level.warm_up, start + level.warm_up + level.measure);
    let mut slots = tokio::task::JoinSet::new();
    match level.protocol {
        Protocol::Http1 => {
            for _ in 0..level.concurrency {
                let stream = connect(addr, tls.clone()).await?;
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|e| HarnessError::new(format!("HTTP/1.1 handshake: {e}")))?;
                tokio::spawn(connection);
                slots.spawn(drive_http1(window, sender, addr, body.clone()));
            }
        }
        Protocol::Http2 => {
            let stream = connect(addr, tls.clone()).await?;
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .map_err(|e| HarnessError::new(format!("HTTP/2 handshake: {e}")))?;
            tokio::spawn(connection);
            for _ in 0..level.concurrency {
                slots.spawn(drive_http2(window, sender.clone(), addr, body.clone()));
            }
        }
    }
    let mut measured = Measured {
        seconds: level.measure.as_secs_f64(),
        ..Measured::default()
    };
    while let Some(slot) = slots.join_next().await {
        if let Ok(slot) = slot {
            measured.merge(slot);
        }
    }
    measured.latencies_ns.sort_unstable();
    Ok(measured)
}

/// One slot's tally: which answers fall in the measured window, and how they went.
struct Slot {
    window: (Instant, Instant),
    measured: Measured,
}

impl Slot {
    fn new(window: (Instant, Instant)) -> Self {
        Self {
            window,
            measured: Measured::default(),
        }
    }

    /// Whether to send another request now.
    fn open(&self) -> bool {
        Instant::now() < self.window.1
    }

    /// Records one exchange sent at `sent`; false when the connection broke.
    async fn record(
        &mut self,
        sent: Instant,
        answer: hyper::Result<http::Response<hyper::body::Incoming>>,
    ) -> bool {
        let answer = match answer {
            Ok(response) => {
                let ok = response.status() == http::StatusCode::OK;
                response
                    .into_body()
                    .collect()
                    .await
                    .ok()
                    .map(|body| (ok, body.to_bytes()))
            }
            Err(_) => None,
        };
        let done = Instant::now();
        let counted = sent >= self.window.0 && done <= self.window.1;
        match answer {
            Some((true, body)) if counted => {
                self.measured.requests += 1;
                self.measured
                    .latencies_ns
                    .push((done - sent).as_nanos() as u64);
                if carries_patch(&body) {
                    self.measured.mutated += 1;
                }
                true
            }
            Some((false, _)) if counted => {
                self.measured.errors += 1;
                true
            }
            Some(_) => true,
            None => {
                self.measured.errors += 1;
                false
            }
        }
    }
}

async fn drive_http1(
    window: (Instant, Instant),
    mut sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    body: Bytes,
) -> Measured {
    let mut slot = Slot::new(window);
    while slot.open() {
        if sender.ready().await.is_err() {
            slot.measured.errors += 1;
            break;
        }
        let sent = Instant::now();
        let answer = sender.send_request(request(addr, &body)).await;
        if !slot.record(sent, answer).await {
            break;
        }
    }
    slot.measured
}

async fn drive_http2(
    window: (Instant, Instant),
    mut sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    body: Bytes,
) -> Measured {
    let mut slot = Slot::new(window);
    while slot.open() {
        let sent = Instant::now();
        let answer = sender.send_request(request(addr, &body)).await;
        if !slot.record(sent, answer).await {
            break;
        }
    }
    slot.measured
}

/// One request, its answer's status and body (diagnostics).
pub async fn once(
    addr: SocketAddr,
    ca_pem: &str,
    body: Bytes,
) -> Result<(u16, String), HarnessError> {
    let stream = connect(addr, client_tls(ca_pem, Protocol::Http1)?).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| HarnessError::new(format!("HTTP/1.1 handshake: {e}")))?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request(addr, &body))
        .await
        .map_err(|e| HarnessError::new(format!("request: {e}")))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| HarnessError::new(format!("answer: {e}")))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Whether an AdmissionReview answer carries a patch.
fn carries_patch(body: &[u8]) -> bool {
    body.windows(8).any(|w| w == b"\"patch\":")
}
