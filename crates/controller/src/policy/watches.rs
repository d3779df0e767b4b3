//! The PodIdentityPolicy and Namespace watches beyond their caches: a change to a policy,
//! or to a namespace's labels, wakes every binding it may now judge otherwise (the bindings
//! of every namespace the policy selected before or selects now), and asks for the
//! policies' status to be worked out again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::{Stream, StreamExt};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use podidentity_iam::guardrails;
use podidentity_iam::namespace_policy::NamespacePolicy;

use crate::caches::Watched;
use crate::policy::view::{NamespaceMeta, WatchedPolicy};

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

/// What a policy's rules were seen as: its uid and generation (a change of spec bumps the
/// generation; the status the operator writes does not).
fn policy_version(policy: &WatchedPolicy) -> (Option<String>, Option<i64>) {
    let meta = match &policy.0 {
        Ok(policy) => &policy.metadata,
        Err(invalid) => &invalid.metadata,
    };
    (meta.uid.clone(), meta.generation)
}

/// A policy as it was and as it is (`None`: absent).
type PolicyChange = (Option<NamespacePolicy>, Option<NamespacePolicy>);

/// Wakes the bindings of every namespace either side of `change` selects.
fn wake_selected(
    change: &PolicyChange,
    namespaces: &Store<NamespaceMeta>,
    bindings: &Store<Watched>,
    triggers: &UnboundedSender<ObjectRef<Watched>>,
) -> usize {
    let mut woken = 0;
    for namespace in namespaces.state() {
        let labels = selectable_labels(&namespace);
        let selects = |p: &Option<NamespacePolicy>| p.as_ref().is_some_and(|p| p.selects(&labels));
        if selects(&change.0) || selects(&change.1) {
            woken += wake_namespace(bindings, &namespace.name_any(), triggers);
        }
    }
    woken
}

/// Passes the policy watch through; each change to a policy (after the first list) wakes
/// the bindings of the namespaces it selected or selects, and the policies' status. A
/// re-list (a watch answered `410 Gone`, an API server restarted) brings what changed while
/// the watch was down as a listing, not as changes: it is compared with what was seen, and
/// what changed, appeared or vanished meanwhile wakes its bindings once the listing is
/// complete (the caches hold it then; a pass woken earlier would judge the old rules).
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
    type Version = (Option<String>, Option<i64>);
    let mut seen: HashMap<String, (NamespacePolicy, Version)> = HashMap::new();
    let mut listed_once = false;
    let mut relisted: HashSet<String> = HashSet::new();
    let mut missed: Vec<(String, PolicyChange)> = Vec::new();
    stream.inspect(move |event| match event {
        Ok(watcher::Event::Init) => {
            relisted.clear();
            missed.clear();
        }
        Ok(watcher::Event::InitApply(policy)) => {
            let name = policy.name_any();
            let now = NamespacePolicy::from_watched(policy);
            let version = policy_version(policy);
            relisted.insert(name.clone());
            let before = seen.insert(name.clone(), (now.clone(), version.clone()));
            if listed_once && before.as_ref().map(|(_, v)| v) != Some(&version) {
                missed.push((name, (before.map(|(p, _)| p), Some(now))));
            }
        }
        Ok(watcher::Event::InitDone) => {
            if listed_once {
                let vanished: Vec<String> = seen
                    .keys()
                    .filter(|name| !relisted.contains(*name))
                    .cloned()
                    .collect();
                for name in vanished {
                    if let Some((before, _)) = seen.remove(&name) {
                        missed.push((name, (Some(before), None)));
                    }
                }
            }
            listed_once = true;
            for (name, change) in missed.drain(..) {
                let woken = wake_selected(&change, &namespaces, &bindings, &triggers);
                tracing::info!(policy = %name, bindings = woken, "PodIdentityPolicy changed while the watch was down; judging its bindings again");
                let _ = status.unbounded_send(());
            }
        }
        Ok(watcher::Event::Apply(policy)) => {
            let name = policy.name_any();
            let now = NamespacePolicy::from_watched(policy);
            let before = seen.insert(name.clone(), (now.clone(), policy_version(policy)));
            let change = (before.map(|(p, _)| p), Some(now));
            let woken = wake_selected(&change, &namespaces, &bindings, &triggers);
            tracing::info!(policy = %name, bindings = woken, "PodIdentityPolicy changed; judging its bindings again");
            let _ = status.unbounded_send(());
        }
        Ok(watcher::Event::Delete(policy)) => {
            let name = policy.name_any();
            let before = seen.remove(&name);
            let change = (before.map(|(p, _)| p), None);
            let woken = wake_selected(&change, &namespaces, &bindings, &triggers);
            tracing::info!(policy = %name, bindings = woken, "PodIdentityPolicy changed; judging its bindings again");
            let _ = status.unbounded_send(());
        }
        Err(_) => {}
    })
}

/// Passes the namespace watch through; a namespace whose labels change (after the first
/// list) wakes its bindings, and the policies' status. Labels changed while the watch was
/// down are found by comparing a re-list with what was seen, and wake their bindings once
/// the listing is complete.
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
    let mut listed_once = false;
    let mut relisted: HashSet<String> = HashSet::new();
    let mut missed: Vec<String> = Vec::new();
    stream.inspect(move |event| match event {
        Ok(watcher::Event::Init) => {
            relisted.clear();
            missed.clear();
        }
        Ok(watcher::Event::InitApply(namespace)) => {
            let name = namespace.name_any();
            let labels = selectable_labels(namespace);
            relisted.insert(name.clone());
            let before = seen.insert(name.clone(), labels.clone());
            if listed_once && before.as_ref() != Some(&labels) {
                missed.push(name);
            }
        }
        Ok(watcher::Event::InitDone) => {
            if listed_once {
                let before = seen.len();
                seen.retain(|name, _| relisted.contains(name));
                if seen.len() != before {
                    let _ = status.unbounded_send(());
                }
            }
            listed_once = true;
            for name in missed.drain(..) {
                let woken = wake_namespace(&bindings, &name, &triggers);
                tracing::info!(namespace = %name, bindings = woken, "namespace labels changed while the watch was down; judging its bindings again");
                let _ = status.unbounded_send(());
            }
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
        Err(_) => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use kube::core::error_boundary::DeserializeGuard;
    use kube::runtime::reflector;
    use podidentity_api::policy::{PodIdentityPolicy, PodIdentityPolicySpec};
    use podidentity_api::{PodIdentityBinding, PodIdentityBindingSpec};

    fn namespace(name: &str, team: &str) -> NamespaceMeta {
        let mut namespace = NamespaceMeta::default();
        namespace.metadata.name = Some(name.into());
        namespace.metadata.labels = Some([("team".to_string(), team.to_string())].into());
        namespace
    }

    fn policy(generation: i64, team: &str) -> WatchedPolicy {
        let mut policy = PodIdentityPolicy::new(
            "teams",
            PodIdentityPolicySpec {
                namespace_selector: Some(LabelSelector {
                    match_labels: Some([("team".to_string(), team.to_string())].into()),
                    ..Default::default()
                }),
                allowed_actions: vec!["s3:*".into()],
                ..Default::default()
            },
        );
        policy.metadata.uid = Some("uid-teams".into());
        policy.metadata.generation = Some(generation);
        DeserializeGuard(Ok(policy))
    }

    /// A binding in each of `shop` (team a) and `bank` (team b).
    fn stores() -> (Store<NamespaceMeta>, Store<Watched>) {
        let (namespaces, mut namespace_writer) = reflector::store::<NamespaceMeta>();
        let (bindings, mut binding_writer) = reflector::store::<Watched>();
        for (ns, team) in [("shop", "a"), ("bank", "b")] {
            namespace_writer.apply_watcher_event(&watcher::Event::Apply(namespace(ns, team)));
            let mut binding = PodIdentityBinding::new(
                "app",
                PodIdentityBindingSpec {
                    service_account_name: "app".into(),
                    ..Default::default()
                },
            );
            binding.metadata.namespace = Some(ns.into());
            binding_writer
                .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(binding))));
        }
        (namespaces, bindings)
    }

    fn woken_namespaces(woken: Vec<ObjectRef<Watched>>) -> Vec<String> {
        let mut namespaces: Vec<String> = woken.into_iter().filter_map(|r| r.namespace).collect();
        namespaces.sort();
        namespaces
    }

    #[tokio::test]
    async fn a_policy_changed_or_deleted_while_the_watch_was_down_wakes_its_bindings_after_the_relist()
     {
        let (namespaces, bindings) = stores();
        let (triggers, woken) = futures::channel::mpsc::unbounded();
        let (status, _asked) = futures::channel::mpsc::unbounded();
        use watcher::Event::{Init, InitApply, InitDone};
        let events = [
            // The first list: nothing to act on.
            Init,
            InitApply(policy(1, "a")),
            InitDone,
            // A re-list with the policy unchanged: nothing.
            Init,
            InitApply(policy(1, "a")),
            InitDone,
            // A re-list after the policy moved from team a to team b: both woken.
            Init,
            InitApply(policy(2, "b")),
            InitDone,
            // A re-list after the policy was deleted: team b's binding woken.
            Init,
            InitDone,
        ];
        let passed = wake_on_policy_changes(
            futures::stream::iter(events.map(Ok)),
            namespaces,
            bindings,
            triggers,
            status,
        )
        .count()
        .await;
        assert_eq!(passed, 11);
        assert_eq!(
            woken_namespaces(woken.collect().await),
            vec!["bank", "bank", "shop"]
        );
    }

    #[tokio::test]
    async fn labels_changed_while_the_watch_was_down_wake_the_namespace_after_the_relist() {
        let (_, bindings) = stores();
        let (triggers, woken) = futures::channel::mpsc::unbounded();
        let (status, _asked) = futures::channel::mpsc::unbounded();
        use watcher::Event::{Init, InitApply, InitDone};
        let events = [
            Init,
            InitApply(namespace("shop", "a")),
            InitApply(namespace("bank", "b")),
            InitDone,
            // Re-listed: shop's labels changed meanwhile, bank's did not.
            Init,
            InitApply(namespace("shop", "b")),
            InitApply(namespace("bank", "b")),
            InitDone,
        ];
        wake_on_label_changes(
            futures::stream::iter(events.map(Ok)),
            bindings,
            triggers,
            status,
        )
        .count()
        .await;
        assert_eq!(woken_namespaces(woken.collect().await), vec!["shop"]);
    }
}
