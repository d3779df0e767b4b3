//! The watches the controllers run on, and what each change wakes.
//!
//! Each watch raises a readiness check on its first complete list (`InitDone`). Not
//! `Store::wait_until_ready`: kube-runtime's `DelayedInit` keeps a single waker, so of
//! several tasks waiting on one store only the last to poll is ever woken, and the
//! controller's own runner already waits on it (readiness and the drift sweep never woke).

use std::sync::Arc;

use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use podidentity_iam::service_account_owner;

use crate::binding::Watched;
use crate::context::Context;
use crate::health::Raise;

/// Passes `stream` through, raising `check` when it has listed everything once.
pub fn raise_when_listed<K, S>(stream: S, check: Raise) -> impl Stream<Item = S::Item>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    stream.inspect(move |event| {
        if matches!(event, Ok(watcher::Event::InitDone)) {
            check.raise();
        }
    })
}

/// The binding a ServiceAccount change must wake: the one that owns it (the others write
/// nothing to it, so they have nothing to put back).
pub fn owner_to_wake(
    bindings: &[Arc<Watched>],
    namespace: &str,
    service_account: &str,
) -> Option<ObjectRef<Watched>> {
    let owner = service_account_owner(
        bindings.iter().filter_map(|b| b.0.as_ref().ok()),
        namespace,
        service_account,
    )?;
    Some(ObjectRef::new(&owner.name_any()).within(namespace))
}

/// Passes the bindings watch through, waking the bindings of the same namespace that wait
/// on another for their ServiceAccount whenever a binding there changes or goes (the
/// owner may have gone, or named another ServiceAccount).
pub fn wake_waiting_siblings<S>(
    stream: S,
    ctx: Arc<Context>,
    triggers: UnboundedSender<ObjectRef<Watched>>,
) -> impl Stream<Item = S::Item>
where
    S: Stream<Item = Result<watcher::Event<Watched>, watcher::Error>>,
{
    stream.inspect(move |event| {
        let changed = match event {
            Ok(watcher::Event::Apply(b) | watcher::Event::Delete(b)) => b,
            _ => return,
        };
        let namespace = changed.namespace().unwrap_or_default();
        let key = ObjectRef::new(&changed.name_any()).within(&namespace);
        for waiting in ctx.conflicted_in(&namespace, &key) {
            let _ = triggers.unbounded_send(ObjectRef::new(&waiting.name).within(&namespace));
        }
    })
}
