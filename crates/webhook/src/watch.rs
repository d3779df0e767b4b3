//! kube-runtime's watcher, made to list again when a watch answer cannot be read. The
//! controller's watches use it too.
//!
//! kube-client reads a watch answer line by line. A kube-apiserver 1.24 answers some
//! failed watches (a metadata-only watch from a resourceVersion that expired while etcd
//! restarted) with an indented, several-line Status rather than one ERROR event: every
//! line fails to parse on its own (`invalid type: string "kind", expected adjacently
//! tagged enum WatchEvent`), so the watcher never sees the 410 that would make it list
//! again. It retried the same expired resourceVersion, one line per backoff, for minutes:
//! a watch that never came back. Here such an error drops the watch and starts over with
//! a list.

use futures::stream::{BoxStream, Stream, StreamExt};
use kube::Resource;
use kube::api::Api;
use kube::runtime::watcher::{self, Event, watcher};
use serde::de::DeserializeOwned;

/// Whether the watch answer could not be read (rather than refused, or cut).
fn unreadable(error: &watcher::Error) -> bool {
    matches!(
        error,
        watcher::Error::WatchFailed(kube::Error::SerdeError(_))
            | watcher::Error::WatchStartFailed(kube::Error::SerdeError(_))
    )
}

/// [`watcher`], but a watch whose answer cannot be read ends that watcher: the error is
/// passed on (so the caller's backoff applies) and the next poll lists afresh.
pub fn relisting_watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    type Watch<K> = BoxStream<'static, Result<Event<K>, watcher::Error>>;
    futures::stream::unfold(None::<Watch<K>>, move |current| {
        let (api, config) = (api.clone(), config.clone());
        async move {
            let mut stream = current.unwrap_or_else(|| watcher(api, config).boxed());
            // A watcher's stream never ends by itself.
            let item = stream.next().await?;
            let next = match &item {
                Err(error) if unreadable(error) => {
                    tracing::warn!(%error, "a watch answer could not be read; listing again");
                    None
                }
                _ => Some(stream),
            };
            Some((item, next))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::client::Body;

    use super::*;

    /// An API server that lists `before` first, answers every watch with the indented
    /// several-line Status kube-apiserver 1.24 sends, and lists `after` from then on.
    fn api_server(lists: Arc<AtomicUsize>) -> kube::Client {
        let service = tower::service_fn(move |request: http::Request<Body>| {
            let lists = lists.clone();
            async move {
                let watch = request
                    .uri()
                    .query()
                    .unwrap_or_default()
                    .contains("watch=true");
                let body = if watch {
                    "{\n  \"kind\": \"Status\",\n  \"apiVersion\": \"v1\",\n  \"metadata\": {},\n  \"status\": \"Failure\",\n  \"message\": \"too old resource version: 1 (9)\",\n  \"reason\": \"Expired\",\n  \"code\": 410\n}\n".to_string()
                } else {
                    let name = match lists.fetch_add(1, Ordering::SeqCst) {
                        0 => "before",
                        _ => "after",
                    };
                    format!(
                        r#"{{"apiVersion":"v1","kind":"ConfigMapList","metadata":{{"resourceVersion":"9"}},"items":[{{"metadata":{{"name":"{name}","namespace":"ns","resourceVersion":"9"}}}}]}}"#
                    )
                };
                Ok::<_, std::convert::Infallible>(http::Response::new(Body::from(
                    body.into_bytes(),
                )))
            }
        });
        kube::Client::new(service, "default")
    }

    #[tokio::test]
    async fn an_unreadable_watch_answer_lists_again() {
        let lists = Arc::new(AtomicUsize::new(0));
        let api: Api<ConfigMap> = Api::all(api_server(lists.clone()));
        let mut stream = relisting_watcher(api, watcher::Config::default()).boxed();
        let mut seen = Vec::new();
        for _ in 0..12 {
            match tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await {
                Ok(Some(Ok(Event::InitApply(cm)))) => {
                    seen.push(cm.metadata.name.unwrap_or_default())
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
            if seen.contains(&"after".to_string()) {
                break;
            }
        }
        assert_eq!(
            seen,
            ["before", "after"],
            "listed again after the unreadable watch"
        );
        assert_eq!(lists.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn refusals_do_not_restart_the_watch() {
        let refused = kube::Error::Api(Box::new(
            kube::core::Status::failure("forbidden", "Forbidden").with_code(403),
        ));
        assert!(!unreadable(&watcher::Error::WatchFailed(refused)));
    }
}
