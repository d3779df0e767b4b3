//! The PodIdentityPolicy and Namespace watches beyond their caches: a change to a policy,
//! or to a namespace's labels, wakes every binding it may now judge otherwise (the bindings
//! of every namespace the policy selected before or selects now), and asks for the
//! policies' status to be worked out again.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::{Stream, StreamExt};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use podidentity_iam::guardrails;
use podidentity_iam::namespace_policy::NamespacePolicy;

use crate::binding::Watched;
use crate::policy_view::{NamespaceMeta, WatchedPolicy};

/// A namespace's labels as selectors see them.
fn selectable_labels(namespace: &NamespaceMeta) -> BTreeMap<String, String> {
    guardrails::selectable_labels(&namespace.name_any(), namespace.metadata.labels.as_ref())
}

fn wake_namespace(
    bindings: &Store<Watched>,
    namespace: &str,
    triggers: &UnboundedSender<ObjectRef<Watched>>,
) -> usize {
    let found = bindings.state_filter(|b| {
        let meta = match &b.0 {
            Ok(binding) => &binding.metadata,
            Err(invalid) => &invalid.metadata,
        };
        meta.namespace.as_deref() == Some(namespace)
    });
    for binding in &found {
        let _ = triggers.unbounded_send(ObjectRef::new(&binding.name_any()).within(namespace));
    }
    found.len()
}

/// Passes the policy watch through; each change to a policy (after the first list) wakes
/// the bindings of the namespaces it selected or selects, and the policies' status.
pub fn wake_on_policy_changes<S>(
    stream: S,
    namespaces: Store<NamespaceMeta>,
    bindings: Store<Watched>,
    triggers: UnboundedSender<ObjectRef<Watched>>,
    status: UnboundedSender<()>,
) -> impl Stream<Item = S::Item>
where
    S: Stream<Item = Result<watcher::Event<WatchedPolicy>, watcher::Error>>,
{
    let mut seen: HashMap<String, NamespacePolicy> = HashMap::new();
    stream.inspect(move |event| {
        let (policy, gone, listing) = match event {
            Ok(watcher::Event::InitApply(p)) => (p, false, true),
            Ok(watcher::Event::Apply(p)) => (p, false, false),
            Ok(watcher::Event::Delete(p)) => (p, true, false),
            _ => return,
        };
        let name = policy.name_any();
        let now = (!gone).then(|| NamespacePolicy::from_watched(policy));
        let before = match &now {
            Some(now) => seen.insert(name.clone(), now.clone()),
            None => seen.remove(&name),
        };
        if listing {
            return;
        }
        let mut woken = 0;
        for namespace in namespaces.state() {
            let labels = selectable_labels(&namespace);
            let selects = |p: &Option<NamespacePolicy>| p.as_ref().is_some_and(|p| p.selects(&labels));
            if selects(&before) || selects(&now) {
                woken += wake_namespace(&bindings, &namespace.name_any(), &triggers);
            }
        }
        tracing::info!(policy = %name, bindings = woken, "PodIdentityPolicy changed; judging its bindings again");
        let _ = status.unbounded_send(());
    })
}

/// Passes the namespace watch through; a namespace whose labels change (after the first
/// list) wakes its bindings, and the policies' status.
pub fn wake_on_label_changes<S>(
    stream: S,
    bindings: Store<Watched>,
    triggers: UnboundedSender<ObjectRef<Watched>>,
    status: UnboundedSender<()>,
) -> impl Stream<Item = S::Item>
where
    S: Stream<Item = Result<watcher::Event<NamespaceMeta>, watcher::Error>>,
{
    let mut seen: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    stream.inspect(move |event| match event {
        Ok(watcher::Event::InitApply(namespace)) => {
            seen.insert(namespace.name_any(), selectable_labels(namespace));
        }
        Ok(watcher::Event::Apply(namespace)) => {
            let name = namespace.name_any();
            let labels = selectable_labels(namespace);
            if seen.get(&name) != Some(&labels) {
                seen.insert(name.clone(), labels);
                let woken = wake_namespace(&bindings, &name, &triggers);
                tracing::info!(namespace = %name, bindings = woken, "namespace labels changed; judging its bindings again");
                let _ = status.unbounded_send(());
            }
        }
        Ok(watcher::Event::Delete(namespace)) => {
            seen.remove(&namespace.name_any());
            let _ = status.unbounded_send(());
        }
        _ => {}
    })
}

/// Passes the bindings watch through, asking for the policies' status on each change (a
/// binding made, changed or gone changes what they govern and refuse).
pub fn note_binding_changes<S>(
    stream: S,
    status: UnboundedSender<()>,
) -> impl Stream<Item = S::Item>
where
    S: Stream<Item = Result<watcher::Event<Watched>, watcher::Error>>,
{
    stream.inspect(move |event| {
        if matches!(
            event,
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone)
        ) {
            let _ = status.unbounded_send(());
        }
    })
}

/// At most one signal per `period`, however many arrive: the policies' status is a
/// summary, worked out again once things settle, not once per binding written.
pub fn at_most_every(signals: UnboundedReceiver<()>, period: Duration) -> impl Stream<Item = ()> {
    futures::stream::unfold(signals, move |mut signals| async move {
        signals.next().await?;
        tokio::time::sleep(period).await;
        while signals.try_recv().is_ok() {}
        Some(((), signals))
    })
}
