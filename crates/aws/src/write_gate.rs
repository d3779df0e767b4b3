//! Which IAM requests are writes, and the gate that says whether one may be sent now.

use std::sync::Arc;

/// Says whether an IAM write may be sent now (leader election: only the leader, within
/// its renew deadline, writes).
#[derive(Clone)]
pub struct WriteGate(pub Arc<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for WriteGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteGate")
    }
}

/// IAM's reads are the Get* and List* actions.
pub fn is_write_action(form_body: &[u8]) -> bool {
    let body = String::from_utf8_lossy(form_body);
    let action = body
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .unwrap_or_default();
    !(action.starts_with("Get") || action.starts_with("List"))
}
