//! A proxy in front of moto that records every IAM and STS call the operator makes (the
//! action, the role, the answer) and can answer some of them with a fault instead:
//! throttling, a 5xx, or a connection dropped before or after moto did the work. The
//! counts in the tests are taken here, outside the operator.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::error::HarnessError;

#[derive(Clone, Debug)]
pub struct Call {
    pub action: String,
    pub role: Option<String>,
    pub params: BTreeMap<String, String>,
    pub status: u16,
    pub at: Instant,
    /// Wall-clock time, to line calls up with the API server's audit log.
    pub wall: k8s_openapi::jiff::Timestamp,
    /// Answered by an injected fault rather than by moto.
    pub faulted: bool,
    /// The account the call acted in, when its credentials came from an AssumeRole into
    /// another account through this proxy (`None`: the operator's own credentials).
    pub account: Option<String>,
}

impl Call {
    /// Reads and anything else that changes nothing.
    pub fn is_read(&self) -> bool {
        [
            "Get",
            "List",
            "S3:Get",
            "S3:Head",
            "EKS:Describe",
            "EKS:List",
        ]
        .iter()
        .any(|p| self.action.starts_with(p))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 400 Throttling, as IAM answers when over its rate.
    Throttle,
    /// 503 ServiceUnavailable.
    Unavailable,
    /// 403 AccessDenied, as IAM answers a call the operator's own policy does not allow.
    AccessDenied,
    /// The connection closes before moto sees the call.
    DropBefore,
    /// moto does the work, then the connection closes before the answer.
    DropAfter,
    /// moto answers, this much later (a slow IAM: passes take longer than events).
    Delay(std::time::Duration),
}

#[derive(Clone, Debug)]
struct FaultRule {
    action: String,
    /// Only calls in this account (`None`: any).
    account: Option<String>,
    remaining: u32,
    fault: Fault,
}

#[derive(Default)]
struct State {
    calls: Mutex<Vec<Call>>,
    faults: Mutex<Vec<FaultRule>>,
    /// Access key id → account, learnt from the AssumeRole answers passing through.
    assumed: Mutex<BTreeMap<String, String>>,
}

/// The access key id a SigV4-signed request was signed with.
fn access_key(headers: &http::HeaderMap) -> Option<String> {
    let authorization = headers.get("authorization")?.to_str().ok()?;
    let (_, rest) = authorization.split_once("Credential=")?;
    Some(rest.split('/').next()?.to_string())
}

/// The access key id in an AssumeRole answer.
fn assumed_key(xml: &str) -> Option<String> {
    let (_, rest) = xml.split_once("<AccessKeyId>")?;
    Some(rest.split_once("</AccessKeyId>")?.0.trim().to_string())
}

pub struct IamProxy {
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for IamProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn form(body: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            Some((decode(key), decode(value)))
        })
        .collect()
}

fn fault_response(fault: Fault) -> Response<Full<Bytes>> {
    let (status, code, message) = match fault {
        Fault::Throttle => (400, "Throttling", "Rate exceeded"),
        Fault::AccessDenied => (
            403,
            "AccessDenied",
            "User: arn:aws:sts::123456789012:assumed-role/podidentity-operator/e2e is not authorized to perform this action",
        ),
        _ => (503, "ServiceUnavailable", "Service is unavailable"),
    };
    let body = format!(
        "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>e2e-fault</RequestId></ErrorResponse>"
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
    response
        .headers_mut()
        .insert("content-type", http::HeaderValue::from_static("text/xml"));
    response
}

async fn forward(
    upstream: SocketAddr,
    parts: http::request::Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, String> {
    let tcp = TcpStream::connect(upstream)
        .await
        .map_err(|e| format!("moto: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("moto: {e}"))?;
    tokio::spawn(connection);
    let request = Request::from_parts(parts, Full::new(body));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("moto: {e}"))?;
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| format!("moto: {e}"))?
        .to_bytes();
    Ok(Response::from_parts(parts, Full::new(bytes)))
}

async fn handle(
    state: Arc<State>,
    upstream: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, String> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    let mut params = form(&body);
    if eks_action(parts.method.as_str(), parts.uri.path()).is_some() {
        // EKS's calls say what they touch in their path (and a JSON body).
        params = BTreeMap::from([("Path".to_string(), parts.uri.path().to_string())]);
    }
    // IAM and STS name their action in the form; EKS's association calls and S3's
    // object calls are named here by their path and method.
    let action = params
        .get("Action")
        .cloned()
        .or_else(|| eks_action(parts.method.as_str(), parts.uri.path()))
        .unwrap_or_else(|| match parts.method.as_str() {
            "GET" => "S3:GetObject".to_string(),
            "PUT" => "S3:PutObject".to_string(),
            "HEAD" => "S3:HeadObject".to_string(),
            other => format!("S3:{other}"),
        });
    let account = access_key(&parts.headers).and_then(|key| {
        state
            .assumed
            .lock()
            .ok()
            .and_then(|assumed| assumed.get(&key).cloned())
    });
    let fault = state.faults.lock().ok().and_then(|mut rules| {
        let rule = rules.iter_mut().find(|r| {
            r.remaining > 0
                && (r.action == action || r.action == "*")
                && (r.account.is_none() || r.account == account)
        })?;
        rule.remaining -= 1;
        Some(rule.fault)
    });
    let record = |status: u16, faulted: bool| {
        if let Ok(mut calls) = state.calls.lock() {
            calls.push(Call {
                action: action.clone(),
                role: params.get("RoleName").cloned(),
                params: params.clone(),
                status,
                at: Instant::now(),
                wall: k8s_openapi::jiff::Timestamp::now(),
                faulted,
                account: account.clone(),
            });
        }
    };
    let learn = |response: &Response<Full<Bytes>>, body: &Bytes| {
        let role_account = params
            .get("RoleArn")
            .and_then(|arn| arn.split(':').nth(4))
            .map(String::from);
        if action == "AssumeRole"
            && response.status().is_success()
            && let (Some(key), Some(role_account)) =
                (assumed_key(&String::from_utf8_lossy(body)), role_account)
            && let Ok(mut assumed) = state.assumed.lock()
        {
            assumed.insert(key, role_account);
        }
    };
    match fault {
        Some(Fault::DropBefore) => {
            record(0, true);
            Err("injected: dropped before moto".into())
        }
        Some(fault @ (Fault::Throttle | Fault::Unavailable | Fault::AccessDenied)) => {
            let response = fault_response(fault);
            record(response.status().as_u16(), true);
            Ok(response)
        }
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            let response = forward(upstream, parts, body).await?;
            record(response.status().as_u16(), false);
            Ok(response)
        }
        Some(Fault::DropAfter) => {
            let response = forward(upstream, parts, body).await?;
            record(response.status().as_u16(), true);
            Err("injected: dropped after moto".into())
        }
        None => {
            let mut response = forward(upstream, parts, body).await?;
            if action == "GetAccountAuthorizationDetails" && response.status().is_success() {
                response = paged_like_iam(response, &params).await?;
            }
            if action == "AssumeRole" {
                let (head, answer) = response.into_parts();
                let bytes = answer
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                response = Response::from_parts(head, Full::new(bytes.clone()));
                learn(&response, &bytes);
            }
            record(response.status().as_u16(), false);
            Ok(response)
        }
    }
}

/// The EKS Pod Identity call a REST request is (`/clusters/<name>/pod-identity-associations[/<id>]`).
pub fn eks_action(method: &str, path: &str) -> Option<String> {
    let (_, rest) = path.split_once("/pod-identity-associations")?;
    let one = !rest.trim_matches('/').is_empty();
    let operation = match (method, one) {
        ("POST", false) => "CreatePodIdentityAssociation",
        ("GET", false) => "ListPodIdentityAssociations",
        ("GET", true) => "DescribePodIdentityAssociation",
        ("POST", true) => "UpdatePodIdentityAssociation",
        ("DELETE", true) => "DeletePodIdentityAssociation",
        _ => return None,
    };
    Some(format!("EKS:{operation}"))
}

/// IAM's marker for "the next page starts at this role"; ours is the offset.
const MARKER_PREFIX: &str = "e2e-offset-";

/// moto answers GetAccountAuthorizationDetails with every role in one page whatever
/// `MaxItems` asks; IAM pages (at most 1,000). Cut moto's answer into the page asked for,
/// so the operator reads (and holds) what it would against IAM.
async fn paged_like_iam(
    response: Response<Full<Bytes>>,
    params: &BTreeMap<String, String>,
) -> Result<Response<Full<Bytes>>, String> {
    let max: usize = params
        .get("MaxItems")
        .and_then(|m| m.parse().ok())
        .unwrap_or(100);
    let offset: usize = params
        .get("Marker")
        .and_then(|m| m.strip_prefix(MARKER_PREFIX))
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| format!("moto: {e}"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let paged = page_of_roles(&text, offset, max).unwrap_or_else(|| text.into_owned());
    let mut parts = parts;
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, Full::new(Bytes::from(paged))))
}

/// The roles `offset..offset + max` of a GetAccountAuthorizationDetails answer, with
/// `IsTruncated` and `Marker` set as IAM sets them; `None` if the answer has no role list.
pub fn page_of_roles(xml: &str, offset: usize, max: usize) -> Option<String> {
    let open = "<RoleDetailList>";
    let start = xml.find(open)? + open.len();
    let end = start + xml[start..].find("</RoleDetailList>")?;
    // Top-level <member> elements of the list (members nest: tags, policies).
    let list = &xml[start..end];
    let mut members = Vec::new();
    let (mut depth, mut from, mut at) = (0usize, 0usize, 0usize);
    while let Some(next) = list[at..]
        .find("<member>")
        .map(|i| (i, true))
        .into_iter()
        .chain(list[at..].find("</member>").map(|i| (i, false)))
        .min_by_key(|(i, _)| *i)
    {
        let (index, opening) = next;
        let position = at + index;
        if opening {
            if depth == 0 {
                from = position;
            }
            depth += 1;
            at = position + "<member>".len();
        } else {
            depth = depth.saturating_sub(1);
            at = position + "</member>".len();
            if depth == 0 {
                members.push(&list[from..at]);
            }
        }
    }
    let page: String = members.iter().skip(offset).take(max).copied().collect();
    let more = offset + max < members.len();
    let mut paged = format!("{}{page}{}", &xml[..start], &xml[end..]);
    let truncated = if more {
        format!(
            "<IsTruncated>true</IsTruncated><Marker>{MARKER_PREFIX}{}</Marker>",
            offset + max
        )
    } else {
        "<IsTruncated>false</IsTruncated>".to_string()
    };
    match paged.find("<IsTruncated>false</IsTruncated>") {
        Some(i) => paged.replace_range(i.."<IsTruncated>false</IsTruncated>".len() + i, &truncated),
        None => {
            let close = "</GetAccountAuthorizationDetailsResult>";
            let i = paged.find(close)?;
            paged.insert_str(i, &truncated);
        }
    }
    Some(paged)
}

impl IamProxy {
    /// Listens on a free loopback port and forwards to moto at `moto_url`.
    pub async fn start(moto_url: &str) -> Result<Self, HarnessError> {
        let upstream: SocketAddr = moto_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .map_err(|e| HarnessError::new(format!("moto endpoint {moto_url}: {e}")))?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| HarnessError::new(format!("IAM proxy: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| HarnessError::new(format!("IAM proxy: {e}")))?;
        let state = Arc::new(State::default());
        let serving = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = serving.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request| handle(state.clone(), upstream, request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            url: format!("http://{addr}"),
            state,
            task,
        })
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state
            .calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Calls since the `mark`-th (see [`Self::mark`]).
    pub fn calls_since(&self, mark: usize) -> Vec<Call> {
        self.calls().into_iter().skip(mark).collect()
    }

    pub fn mark(&self) -> usize {
        self.state.calls.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// How many calls of `action` so far.
    pub fn count(&self, action: &str) -> usize {
        self.calls().iter().filter(|c| c.action == action).count()
    }

    /// Calls that change something in IAM (anything but Get*/List* and STS identity:
    /// credentials assumed into another account change nothing there).
    pub fn writes_since(&self, mark: usize) -> Vec<Call> {
        self.calls_since(mark)
            .into_iter()
            .filter(|c| !c.is_read() && c.action != "GetCallerIdentity" && c.action != "AssumeRole")
            .collect()
    }

    /// The next `times` calls of `action` (`*` for any) in `account` (by the credentials
    /// assumed into it) get `fault` instead of moto's answer.
    pub fn inject_in(&self, account: &str, action: &str, fault: Fault, times: u32) {
        if let Ok(mut rules) = self.state.faults.lock() {
            rules.push(FaultRule {
                action: action.to_string(),
                account: Some(account.to_string()),
                remaining: times,
                fault,
            });
        }
    }

    /// Drops every fault not yet used.
    pub fn clear_faults(&self) {
        if let Ok(mut rules) = self.state.faults.lock() {
            rules.clear();
        }
    }

    /// The next `times` calls of `action` (`*` for any) get `fault` instead of moto's answer.
    pub fn inject(&self, action: &str, fault: Fault, times: u32) {
        if let Ok(mut rules) = self.state.faults.lock() {
            rules.push(FaultRule {
                action: action.to_string(),
                account: None,
                remaining: times,
                fault,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(roles: usize) -> String {
        let members: String = (0..roles)
            .map(|i| format!("<member><RoleName>r{i}</RoleName><Tags><member><Key>k</Key></member></Tags></member>"))
            .collect();
        format!(
            "<GetAccountAuthorizationDetailsResponse><GetAccountAuthorizationDetailsResult><RoleDetailList>{members}</RoleDetailList><IsTruncated>false</IsTruncated></GetAccountAuthorizationDetailsResult></GetAccountAuthorizationDetailsResponse>"
        )
    }

    #[test]
    fn a_page_holds_the_roles_asked_for_and_says_where_the_next_begins() {
        let xml = answer(5);
        let first = page_of_roles(&xml, 0, 2).unwrap_or_default();
        assert!(
            first.contains("<RoleName>r0</RoleName>") && first.contains("<RoleName>r1</RoleName>")
        );
        assert!(!first.contains("<RoleName>r2</RoleName>"));
        assert!(first.contains("<IsTruncated>true</IsTruncated><Marker>e2e-offset-2</Marker>"));
        assert_eq!(
            first.matches("<Key>k</Key>").count(),
            2,
            "nested members stay with their role"
        );
        let last = page_of_roles(&xml, 4, 2).unwrap_or_default();
        assert!(last.contains("<RoleName>r4</RoleName>") && !last.contains("r3<"));
        assert!(last.contains("<IsTruncated>false</IsTruncated>") && !last.contains("<Marker>"));
        assert!(page_of_roles("<Other/>", 0, 2).is_none());
    }
}
