//! The watches the controllers run on, and what each change wakes.
//!
//! Each watch raises a readiness check on its first complete list (`InitDone`). Not
//! `Store::wait_until_ready`: kube-runtime's `DelayedInit` keeps a single waker, so of
//! several tasks waiting on one store only the last to poll is ever woken, and the
//! controller's own runner already waits on it (readiness and the drift sweep never woke).

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use kube::runtime::Controller;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use podidentity_iam::service_account_owner;
use serde::de::DeserializeOwned;

use crate::binding::memory::Memory;
use crate::binding::short_form::AccountMeta;
use crate::caches::Watched;
use crate::process::health::Raise;

/// The trigger backoff of the controllers built on watches of ours: none. Each watch backs
/// off by itself (`default_backoff`), and kube-runtime's `Controller` adds one more backoff
/// over all its triggers together, wake-ups included: after an outage, each watch error
/// had doubled a sleep (with jitter, up to a minute) during which no wake-up got through
/// (seen end to end: a policy changed during an outage, its bindings woken once the watch
/// re-listed, and no pass for over a minute).
struct WatchesBackOffThemselves;

impl Iterator for WatchesBackOffThemselves {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl Backoff for WatchesBackOffThemselves {
    fn reset(&mut self) {}
}

/// A controller over one of our watches (which backs off by itself) and the cache it
/// fills: every controller the process builds on its own watches starts here.
pub fn controller_on<K>(
    trigger: impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    cache: Store<K>,
) -> Controller<K>
where
    K: Clone + Resource + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Debug + Unpin,
{
    Controller::for_stream(trigger, cache).trigger_backoff(WatchesBackOffThemselves)
}

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

/// Passes the ServiceAccount watch through, waking the binding that owns each account
/// that changes or goes (the short form reads the same watch: one watch of every account,
/// not two).
pub fn wake_owners<S>(
    stream: S,
    bindings: Store<Watched>,
    triggers: UnboundedSender<ObjectRef<Watched>>,
) -> impl Stream<Item = S::Item>
where
    S: Stream<Item = Result<watcher::Event<AccountMeta>, watcher::Error>>,
{
    stream.inspect(move |event| {
        let account = match event {
            Ok(
                watcher::Event::Apply(account)
                | watcher::Event::InitApply(account)
                | watcher::Event::Delete(account),
            ) => account,
            _ => return,
        };
        let namespace = account.namespace().unwrap_or_default();
        let name = account.name_any();
        // Only the bindings naming this account: most accounts are named by none.
        let naming = bindings.state_filter(|b| {
            b.0.as_ref().is_ok_and(|b| {
                b.metadata.namespace.as_deref() == Some(namespace.as_str())
                    && b.spec.service_account_name == name
            })
        });
        if let Some(owner) = owner_to_wake(&naming, &namespace, &name) {
            let _ = triggers.unbounded_send(owner);
        }
    })
}

/// Passes the bindings watch through, waking the bindings of the same namespace that wait
/// on another for their ServiceAccount whenever a binding there changes or goes (the
/// owner may have gone, or named another ServiceAccount).
pub fn wake_waiting_siblings<S>(
    stream: S,
    memory: Arc<Memory>,
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
        for waiting in memory.waiting_in(&namespace, &key) {
            let _ = triggers.unbounded_send(ObjectRef::new(&waiting.name).within(&namespace));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use kube::core::error_boundary::DeserializeGuard;
    use kube::runtime::reflector;
    use podidentity_api::{PodIdentityBinding, PodIdentityBindingSpec};

    fn account(name: &str) -> AccountMeta {
        let mut account = AccountMeta::default();
        account.metadata.name = Some(name.into());
        account.metadata.namespace = Some("shop".into());
        account
    }

    /// A controller (ours, or kube-runtime's default) over a watch that fails twice (an outage: the second failure once the
    /// backoff of the first is over) and a wake-up channel; says whether a wake-up sent
    /// right after the second failure is acted on within 1.2 s. kube-runtime's default
    /// trigger backoff sleeps 0.8 to 1.6 s after the first failure, then 1.6 to 3.2 s.
    async fn wake_acted_on_during_an_outage(ours: bool) -> bool {
        use k8s_openapi::api::core::v1::ConfigMap;
        use kube::runtime::controller::Action;

        let mut config_map = ConfigMap::default();
        config_map.metadata.name = Some("settings".into());
        config_map.metadata.namespace = Some("shop".into());
        let (store, mut writer) = reflector::store::<ConfigMap>();
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(config_map),
            watcher::Event::InitDone,
        ] {
            writer.apply_watcher_event(&event);
        }
        let (fail, failures) =
            futures::channel::mpsc::unbounded::<Result<ConfigMap, watcher::Error>>();
        let (wake, woken) = futures::channel::mpsc::unbounded();
        let (passed, mut passes) = futures::channel::mpsc::unbounded::<()>();
        let controller = if ours {
            controller_on(failures, store)
        } else {
            Controller::for_stream(failures, store)
        };
        let running = tokio::spawn(
            controller
                .reconcile_on(woken)
                .run(
                    |_, passed: Arc<UnboundedSender<()>>| async move {
                        let _ = passed.unbounded_send(());
                        Ok::<_, std::io::Error>(Action::await_change())
                    },
                    |_, _, _| Action::await_change(),
                    Arc::new(passed),
                )
                .for_each(|_| async {}),
        );
        let _ = fail.unbounded_send(Err(watcher::Error::NoResourceVersion));
        tokio::time::sleep(Duration::from_millis(1700)).await;
        let _ = fail.unbounded_send(Err(watcher::Error::NoResourceVersion));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = wake.unbounded_send(ObjectRef::new("settings").within("shop"));
        let acted = tokio::time::timeout(Duration::from_millis(1200), passes.next())
            .await
            .is_ok();
        running.abort();
        acted
    }

    #[tokio::test]
    async fn a_wake_up_is_not_held_back_by_the_errors_of_an_outage() {
        assert!(
            wake_acted_on_during_an_outage(true).await,
            "the wake-up was acted on at once"
        );
        // The defect it guards against: kube-runtime's own trigger backoff holds it.
        assert!(!wake_acted_on_during_an_outage(false).await);
    }

    #[tokio::test]
    async fn an_account_change_wakes_only_the_binding_that_owns_it() {
        let mut binding = PodIdentityBinding::new(
            "orders-role",
            PodIdentityBindingSpec {
                service_account_name: "orders".into(),
                ..Default::default()
            },
        );
        binding.metadata.namespace = Some("shop".into());
        let (store, mut writer) = reflector::store::<Watched>();
        writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(binding))));
        let (triggers, woken) = futures::channel::mpsc::unbounded();
        let events = [
            watcher::Event::Init,
            watcher::Event::InitApply(account("orders")),
            watcher::Event::InitApply(account("unrelated")),
            watcher::Event::InitDone,
            watcher::Event::Apply(account("orders")),
            watcher::Event::Delete(account("orders")),
            watcher::Event::Apply(account("unrelated")),
        ];
        let passed = wake_owners(futures::stream::iter(events.map(Ok)), store, triggers)
            .count()
            .await;
        assert_eq!(passed, 7, "every event passes on to the short form");
        let woken: Vec<ObjectRef<Watched>> = woken.collect().await;
        assert_eq!(
            woken,
            vec![ObjectRef::new("orders-role").within("shop"); 3],
            "each change to `orders` (listed, changed, gone) wakes its binding; `unrelated` none"
        );
    }
}
