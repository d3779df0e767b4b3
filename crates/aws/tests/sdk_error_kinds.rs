//! What IAM answers that moto cannot produce (throttling, access denied, 5xx, dropped and
//! hanging connections), from a scripted stub speaking IAM's wire format, parsed by the
//! real SDK: each must land in the right error kind, and throttling must be retried.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use podidentity_aws::api::Iam;
use podidentity_aws::error::ErrorKind;
use podidentity_aws::sdk::{AwsSettings, SdkIam};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone)]
enum Reply {
    Status(u16, String),
    /// Close the connection without answering.
    Drop,
    /// Never answer.
    Hang,
}

fn iam_error(code: &str, message: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>stub</RequestId></ErrorResponse>"#
    )
}

fn get_role_ok() -> String {
    r#"<GetRoleResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><GetRoleResult><Role><Path>/</Path><RoleName>r</RoleName><RoleId>AROASTUB</RoleId><Arn>arn:aws:iam::123456789012:role/r</Arn><CreateDate>2026-01-01T00:00:00Z</CreateDate><AssumeRolePolicyDocument>%7B%22Version%22%3A%222012-10-17%22%7D</AssumeRolePolicyDocument></Role></GetRoleResult><ResponseMetadata><RequestId>stub</RequestId></ResponseMetadata></GetRoleResponse>"#.to_string()
}

struct Stub {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

async fn stub(replies: Vec<Reply>) -> Stub {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let replies = replies.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                // Read one request: head, then Content-Length bytes of body.
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buffer).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buffer.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let reply = replies
                    .lock()
                    .ok()
                    .and_then(|mut r| r.pop_front())
                    .unwrap_or(Reply::Drop);
                match reply {
                    Reply::Status(code, body) => {
                        let response = format!(
                            "HTTP/1.1 {code} Stub\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = socket.write_all(response.as_bytes()).await;
                    }
                    Reply::Drop => {}
                    Reply::Hang => tokio::time::sleep(Duration::from_secs(60)).await,
                }
            });
        }
    });
    Stub { addr, requests }
}

async fn client(stub: &Stub, max_attempts: u32) -> SdkIam {
    SdkIam::connect(&AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(format!("http://{}", stub.addr)),
        max_attempts,
        call_timeout: Some(Duration::from_millis(500)),
        static_credentials: Some(("testing".into(), "testing".into())),
        write_gate: None,
    })
    .await
}

async fn kind_of(replies: Vec<Reply>) -> (Option<ErrorKind>, Option<String>) {
    let stub = stub(replies).await;
    let sdk = client(&stub, 1).await;
    let err = Iam::new(&sdk).get_role("r").await.err();
    (err.as_ref().map(|e| e.kind), err.and_then(|e| e.code))
}

#[tokio::test]
async fn throttling_is_throttled() {
    let (kind, code) = kind_of(vec![Reply::Status(
        400,
        iam_error("Throttling", "Rate exceeded"),
    )])
    .await;
    assert_eq!(kind, Some(ErrorKind::Throttled));
    assert_eq!(code.as_deref(), Some("Throttling"));
}

#[tokio::test]
async fn access_denied_is_access_denied() {
    let (kind, _) = kind_of(vec![Reply::Status(
        403,
        iam_error("AccessDenied", "not authorized to perform: iam:GetRole"),
    )])
    .await;
    assert_eq!(kind, Some(ErrorKind::AccessDenied));
}

#[tokio::test]
async fn a_5xx_is_unavailable() {
    let (kind, _) = kind_of(vec![Reply::Status(
        503,
        iam_error("ServiceUnavailable", "try later"),
    )])
    .await;
    assert_eq!(kind, Some(ErrorKind::Unavailable));
    let (kind, _) = kind_of(vec![Reply::Status(500, iam_error("SomethingNew", "boom"))]).await;
    assert_eq!(
        kind,
        Some(ErrorKind::Unavailable),
        "an unknown code with a 5xx status is still transient"
    );
}

#[tokio::test]
async fn a_dropped_connection_is_unavailable() {
    let (kind, _) = kind_of(vec![Reply::Drop]).await;
    assert_eq!(kind, Some(ErrorKind::Unavailable));
}

#[tokio::test]
async fn a_hanging_call_times_out_as_unavailable() {
    let started = Instant::now();
    let (kind, _) = kind_of(vec![Reply::Hang]).await;
    assert_eq!(kind, Some(ErrorKind::Unavailable));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_until_it_passes() {
    let stub = stub(vec![
        Reply::Status(400, iam_error("Throttling", "Rate exceeded")),
        Reply::Status(200, get_role_ok()),
    ])
    .await;
    let sdk = client(&stub, 3).await;
    let role = Iam::new(&sdk)
        .get_role("r")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(role.id, "AROASTUB");
    assert_eq!(
        role.trust_policy, r#"{"Version":"2012-10-17"}"#,
        "documents arrive URL-decoded"
    );
    assert_eq!(stub.requests.load(Ordering::SeqCst), 2);
}
