//! The API server's audit log, read back: who wrote what, and who was refused. Writes are
//! counted here, at the API server, not by the operator's own word.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde_json::Value;

#[derive(Clone, Debug)]
pub struct AuditLog {
    pub path: PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    pub verb: String,
    pub user: String,
    pub user_agent: String,
    pub namespace: Option<String>,
    pub resource: Option<String>,
    pub subresource: Option<String>,
    pub name: Option<String>,
    pub code: u16,
    pub uri: String,
    pub at: String,
    /// `forbid` when RBAC refused the request (not, say, a terminating namespace).
    pub authorization: String,
    /// The API server's message, for refusals.
    pub message: String,
}

pub const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

impl AuditEvent {
    /// When the API server completed it.
    pub fn time(&self) -> Option<k8s_openapi::jiff::Timestamp> {
        self.at.parse().ok()
    }

    pub fn is_write(&self) -> bool {
        WRITE_VERBS.contains(&self.verb.as_str())
    }

    /// `resource` or `resource/subresource`.
    pub fn kind(&self) -> String {
        match (&self.resource, &self.subresource) {
            (Some(r), Some(s)) => format!("{r}/{s}"),
            (Some(r), None) => r.clone(),
            _ => self.uri.clone(),
        }
    }

    fn parse(line: &str) -> Option<Self> {
        let value: Value = serde_json::from_str(line).ok()?;
        if value.get("stage")?.as_str()? != "ResponseComplete" {
            return None;
        }
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let object = value.get("objectRef");
        Some(Self {
            verb: text(value.get("verb"))?,
            user: text(value.pointer("/user/username")).unwrap_or_default(),
            user_agent: text(value.get("userAgent")).unwrap_or_default(),
            namespace: text(object.and_then(|o| o.get("namespace"))),
            resource: text(object.and_then(|o| o.get("resource"))),
            subresource: text(object.and_then(|o| o.get("subresource"))),
            name: text(object.and_then(|o| o.get("name"))),
            code: value
                .pointer("/responseStatus/code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(0),
            uri: text(value.get("requestURI")).unwrap_or_default(),
            at: text(value.get("stageTimestamp")).unwrap_or_default(),
            authorization: text(value.pointer("/annotations/authorization.k8s.io~1decision"))
                .unwrap_or_default(),
            message: text(value.pointer("/responseStatus/message")).unwrap_or_default(),
        })
    }
}

impl AuditLog {
    /// The current end of the log: events after it are "since now".
    pub fn mark(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Every completed request logged after `mark`.
    pub fn since(&self, mark: u64) -> Vec<AuditEvent> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if file.seek(SeekFrom::Start(mark)).is_err() {
            return Vec::new();
        }
        let mut text = String::new();
        if file.read_to_string(&mut text).is_err() {
            return Vec::new();
        }
        text.lines().filter_map(AuditEvent::parse).collect()
    }

    /// Writes by `user` (exact) after `mark`.
    pub fn writes_by(&self, user: &str, mark: u64) -> Vec<AuditEvent> {
        self.since(mark)
            .into_iter()
            .filter(|e| e.user == user && e.is_write())
            .collect()
    }
}
