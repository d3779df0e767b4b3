//! What the binding wing remembers between passes: one record per binding (by uid) of what
//! its passes did and why it waits, and an index of the bindings that wait on siblings.
//! The binding controller, the drift sweep (which flags roles) and the binding watch
//! (which wakes waiting siblings) share it; nothing else reads it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use podidentity_api::PodIdentityBinding;

use super::conditions::Assessment;
use crate::context::jitter;

/// How long a binding waits after a permanent AWS error (or on a managed policy IAM does
/// not have) before asking again by itself.
pub const PERMANENT_ERROR_RETRY: Duration = Duration::from_secs(600);

/// One binding's memory.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// What this process last made IAM hold for the binding.
    pub applied: Option<Applied>,
    /// What stopped a generation of the role for good (a conflict, a permanent IAM
    /// error): IAM is not asked again for that generation until the re-check.
    pub blocked: Option<Blocked>,
    /// The status this process last wrote, and the resourceVersion it wrote over: a pass
    /// from a cache still at that version skips the same write.
    pub own_write: Option<OwnWrite>,
    /// The drift sweep found the role out of line (or gone): the next pass reads the role
    /// and converges it, whatever the status says.
    pub drifted: bool,
    /// Credentials Secrets this process created for the binding ("namespace/name"), for
    /// the moment before the Secret watch brings them.
    pub secrets_made: BTreeSet<String>,
    /// Failed passes since the last success: the backoff's exponent.
    pub failures: u32,
}

/// A role this process made or converged for a binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub generation: Option<i64>,
    /// Of the desired role that was applied.
    pub fingerprint: u64,
    pub role: RoleFacts,
    /// Managed policies of the spec that IAM does not have (tried once per generation):
    /// the binding is stalled on them, and the drift sweep does not count them as drift.
    pub missing_policies: Vec<String>,
    /// When IAM is asked again whether the missing policies exist now (reads only).
    pub missing_recheck_at: Option<Instant>,
}

/// What stopped one generation of a binding's role, until a change or the re-check.
#[derive(Clone, Debug)]
pub struct Blocked {
    pub generation: Option<i64>,
    pub fingerprint: u64,
    /// What the status says meanwhile.
    pub assessment: Assessment,
    /// When IAM is asked again (the conflicting role may have gone, a permission may have
    /// been granted).
    pub recheck_at: Instant,
}

/// A status write of this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnWrite {
    /// The binding's resourceVersion the status was computed from.
    pub over: String,
    /// The write reported an object the operator could not read (`InvalidObject`).
    pub unreadable: bool,
}

/// The role as IAM named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleFacts {
    pub name: String,
    pub arn: String,
    pub id: String,
}

/// A digest of a value's JSON (a desired role), to tell whether it is what this process
/// applied.
pub fn fingerprint(value: &impl serde::Serialize) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(value)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// Every binding's record, and which bindings wait on others of their namespace.
#[derive(Default)]
pub struct Memory {
    records: Mutex<HashMap<String, Record>>,
    /// Bindings waiting on others of their namespace (the owner of their ServiceAccount,
    /// or older bindings holding the namespace's quota), by namespace: any change to a
    /// binding of that namespace wakes them.
    waiting: Mutex<HashMap<String, HashSet<ObjectRef<PodIdentityBinding>>>>,
}

impl Memory {
    /// The binding's record (empty when it has none).
    pub fn record(&self, uid: &str) -> Record {
        self.records
            .lock()
            .ok()
            .and_then(|records| records.get(uid).cloned())
            .unwrap_or_default()
    }

    /// Changes the binding's record in place (making it if it has none).
    pub fn update<T>(&self, uid: &str, change: impl FnOnce(&mut Record) -> T) -> Option<T> {
        let mut records = self.records.lock().ok()?;
        Some(change(records.entry(uid.to_string()).or_default()))
    }

    /// Changes the binding's record if it has one: what only clears makes no record (a
    /// binding deleted and forgotten stays forgotten).
    fn update_existing<T>(&self, uid: &str, change: impl FnOnce(&mut Record) -> T) -> Option<T> {
        let mut records = self.records.lock().ok()?;
        records.get_mut(uid).map(change)
    }

    /// Whether the binding has a record (a deleted binding has none).
    pub fn holds(&self, uid: &str) -> bool {
        self.records
            .lock()
            .is_ok_and(|records| records.contains_key(uid))
    }

    pub fn applied(&self, uid: &str) -> Option<Applied> {
        self.record(uid).applied
    }

    pub fn remember_applied(&self, uid: &str, applied: Option<Applied>) {
        self.update(uid, |r| r.applied = applied);
    }

    pub fn remember_blocked(&self, uid: &str, blocked: Option<Blocked>) {
        self.update(uid, |r| r.blocked = blocked);
    }

    pub fn remember_own_write(&self, uid: &str, write: OwnWrite) {
        self.update(uid, |r| r.own_write = Some(write));
    }

    /// The managed policies the binding is stalled on (IAM does not have them).
    pub fn stalled_on(&self, uid: &str) -> Vec<String> {
        self.applied(uid)
            .map(|applied| applied.missing_policies)
            .unwrap_or_default()
    }

    /// The sweep found this binding's role out of line (or gone): what was applied is
    /// forgotten and the next pass reads the role.
    pub fn mark_drifted(&self, uid: &str) {
        self.update(uid, |r| {
            r.applied = None;
            r.drifted = true;
        });
    }

    /// Whether the sweep flagged this binding; clears the flag.
    pub fn take_drifted(&self, uid: &str) -> bool {
        self.update_existing(uid, |r| std::mem::take(&mut r.drifted))
            .unwrap_or(false)
    }

    /// This process created the Secret for this binding (and for no other: the last
    /// creator is its maker).
    pub fn remember_secret(&self, uid: &str, namespace: &str, name: &str) {
        let key = format!("{namespace}/{name}");
        if let Ok(mut records) = self.records.lock() {
            for record in records.values_mut() {
                record.secrets_made.remove(&key);
            }
            records
                .entry(uid.to_string())
                .or_default()
                .secrets_made
                .insert(key);
        }
    }

    /// Whether this process created that Secret for that binding.
    pub fn made_secret(&self, uid: &str, namespace: &str, name: &str) -> bool {
        self.record(uid)
            .secrets_made
            .contains(&format!("{namespace}/{name}"))
    }

    /// Exponential backoff per binding (5s doubling, at most 5 minutes, jittered).
    pub fn backoff(&self, uid: &str) -> Duration {
        let attempt = self
            .update(uid, |r| {
                r.failures += 1;
                r.failures
            })
            .unwrap_or(1)
            .min(7);
        let base = Duration::from_secs(5) * 2u32.pow(attempt - 1);
        let base = base.min(Duration::from_secs(300));
        base + jitter(base / 5)
    }

    /// A successful pass resets the backoff.
    pub fn succeeded(&self, uid: &str) {
        self.update_existing(uid, |r| r.failures = 0);
    }

    /// Forgets everything about a binding that is gone.
    pub fn forget_binding(&self, uid: &str, binding: &ObjectRef<PodIdentityBinding>) {
        if let Ok(mut records) = self.records.lock() {
            records.remove(uid);
        }
        self.set_waiting(binding, false);
    }

    /// Records whether a binding waits on others of its namespace (its ServiceAccount's
    /// owner, or the quota).
    pub fn set_waiting(&self, binding: &ObjectRef<PodIdentityBinding>, waiting: bool) {
        let Some(namespace) = binding.namespace.clone() else {
            return;
        };
        if let Ok(mut map) = self.waiting.lock() {
            let set = map.entry(namespace.clone()).or_default();
            if waiting {
                set.insert(binding.clone());
            } else {
                set.remove(binding);
                if set.is_empty() {
                    map.remove(&namespace);
                }
            }
        }
    }

    /// The bindings of `namespace` waiting on another, except `changed` itself.
    pub fn waiting_in(
        &self,
        namespace: &str,
        changed: &ObjectRef<PodIdentityBinding>,
    ) -> Vec<ObjectRef<PodIdentityBinding>> {
        self.waiting
            .lock()
            .ok()
            .and_then(|map| map.get(namespace).cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|b| b != changed)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_binding_leaves_nothing_behind_and_its_neighbours_keep_theirs() {
        let memory = Memory::default();
        let gone = ObjectRef::new("gone").within("shop");
        let kept = ObjectRef::new("kept").within("shop");
        for (uid, key) in [("uid-gone", &gone), ("uid-kept", &kept)] {
            memory.remember_secret(uid, "shop", &format!("{}-creds", key.name));
            memory.mark_drifted(uid);
            memory.remember_own_write(
                uid,
                OwnWrite {
                    over: "1".into(),
                    unreadable: false,
                },
            );
            memory.set_waiting(key, true);
        }

        memory.forget_binding("uid-gone", &gone);

        assert!(!memory.made_secret("uid-gone", "shop", "gone-creds"));
        assert!(!memory.take_drifted("uid-gone"));
        assert!(memory.record("uid-gone").own_write.is_none());
        assert!(memory.made_secret("uid-kept", "shop", "kept-creds"));
        assert!(memory.record("uid-kept").own_write.is_some());
        assert!(memory.take_drifted("uid-kept"));
        let elsewhere = ObjectRef::new("other").within("shop");
        assert_eq!(memory.waiting_in("shop", &elsewhere), vec![kept]);
    }

    #[test]
    fn a_forgotten_binding_stays_forgotten_through_the_passes_after_its_deletion() {
        let memory = Memory::default();
        let key = ObjectRef::new("gone").within("shop");
        memory.mark_drifted("uid-gone");
        memory.forget_binding("uid-gone", &key);
        // The pass that removed the finalizer succeeds; later passes find it done.
        memory.succeeded("uid-gone");
        assert!(!memory.take_drifted("uid-gone"));
        assert!(!memory.holds("uid-gone"), "no record comes back");
    }

    #[test]
    fn a_secret_is_the_last_creators() {
        let memory = Memory::default();
        memory.remember_secret("uid-a", "shop", "creds");
        memory.remember_secret("uid-b", "shop", "creds");
        assert!(!memory.made_secret("uid-a", "shop", "creds"));
        assert!(memory.made_secret("uid-b", "shop", "creds"));
    }
}
