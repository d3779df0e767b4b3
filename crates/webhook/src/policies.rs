//! The PodIdentityPolicies and namespace labels the webhook judges bindings by (to predict
//! only roles the controller will make, and to refuse at admission what it would refuse),
//! from two watches of its own. Without them the configuration's guardrails apply alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use podidentity_api::PodIdentityPolicy;
use podidentity_api::config::OperatorConfig;
use podidentity_iam::Guardrails;
use podidentity_iam::namespace_policy::NamespacePolicy;

type WatchedPolicy = DeserializeGuard<PodIdentityPolicy>;
type NamespaceMeta = PartialObjectMeta<Namespace>;

/// The guardrails per namespace.
#[derive(Clone)]
pub struct NamespaceRules {
    base: Guardrails,
    watched: Option<Arc<Watched>>,
}

struct Watched {
    policies: Store<WatchedPolicy>,
    namespaces: Store<NamespaceMeta>,
    /// Bumped on every change to a policy or a namespace: predictions made at an older
    /// version may be stale.
    version: AtomicU64,
    policies_listed: AtomicBool,
    namespaces_listed: AtomicBool,
}

impl std::fmt::Debug for NamespaceRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceRules")
            .field("watched", &self.watched.is_some())
            .finish()
    }
}

impl NamespaceRules {
    /// The configuration's guardrails alone.
    pub fn from_config(config: &OperatorConfig) -> Self {
        Self {
            base: Guardrails::from_config(config),
            watched: None,
        }
    }

    /// The guardrails for one namespace's bindings.
    pub fn guardrails_for(&self, namespace: &str) -> Guardrails {
        let Some(watched) = &self.watched else {
            return self.base.clone();
        };
        let policies =
            NamespacePolicy::read_all(watched.policies.state().iter().map(|p| p.as_ref()));
        let labels = watched
            .namespaces
            .get(&ObjectRef::new(namespace))
            .and_then(|ns| ns.metadata.labels.clone())
            .unwrap_or_default();
        self.base
            .clone()
            .with_policies(policies, BTreeMap::from([(namespace.to_string(), labels)]))
    }

    /// Changes with every policy or namespace change.
    pub fn version(&self) -> u64 {
        self.watched
            .as_ref()
            .map_or(0, |w| w.version.load(Ordering::Acquire))
    }

    /// Whether both watches have listed everything once (readiness).
    pub fn is_listed(&self) -> bool {
        self.watched.as_ref().is_none_or(|w| {
            w.policies_listed.load(Ordering::Acquire) && w.namespaces_listed.load(Ordering::Acquire)
        })
    }

    fn over(
        config: &OperatorConfig,
        policies: Store<WatchedPolicy>,
        namespaces: Store<NamespaceMeta>,
    ) -> (Self, Arc<Watched>) {
        let watched = Arc::new(Watched {
            policies,
            namespaces,
            version: AtomicU64::new(0),
            policies_listed: AtomicBool::new(false),
            namespaces_listed: AtomicBool::new(false),
        });
        let rules = Self {
            base: Guardrails::from_config(config),
            watched: Some(watched.clone()),
        };
        (rules, watched)
    }

    /// Starts the policy and namespace watches; the rules follow them.
    pub fn watch_cluster(config: &OperatorConfig, client: kube::Client) -> Self {
        let (policies, policy_writer) = reflector::store::<WatchedPolicy>();
        let (namespaces, namespace_writer) = reflector::store::<NamespaceMeta>();
        let (rules, watched) = Self::over(config, policies, namespaces);
        let seen = watched.clone();
        tokio::spawn(
            crate::watch::relisting_watcher(
                Api::<WatchedPolicy>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff()
            .reflect(policy_writer)
            .for_each(move |event| {
                note(&seen, &event, |w| &w.policies_listed, "PodIdentityPolicy");
                futures::future::ready(())
            }),
        );
        let seen = watched.clone();
        tokio::spawn(
            crate::watch::relisting_watcher(
                Api::<NamespaceMeta>::all(client),
                watcher::Config::default(),
            )
            .modify(|ns: &mut NamespaceMeta| {
                ns.metadata.managed_fields = None;
                ns.metadata.annotations = None;
            })
            .default_backoff()
            .reflect(namespace_writer)
            .for_each(move |event| {
                note(&seen, &event, |w| &w.namespaces_listed, "Namespace");
                futures::future::ready(())
            }),
        );
        rules
    }
}

/// Counts a change, and marks the watch listed at its first complete list.
fn note<K>(
    watched: &Watched,
    event: &Result<watcher::Event<K>, watcher::Error>,
    listed: impl Fn(&Watched) -> &AtomicBool,
    kind: &str,
) {
    match event {
        Ok(watcher::Event::InitDone) => {
            listed(watched).store(true, Ordering::Release);
            watched.version.fetch_add(1, Ordering::AcqRel);
        }
        Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
            watched.version.fetch_add(1, Ordering::AcqRel);
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "{kind} watch failed; retrying"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding_cache::BindingCache;
    use crate::identity::Predictor;
    use podidentity_api::{PodIdentityBinding, PodIdentityBindingSpec, PodIdentityPolicySpec};
    use serde_json::json;

    fn teams() -> WatchedPolicy {
        let spec: PodIdentityPolicySpec = serde_json::from_value(json!({
            "namespaceSelector": {"matchLabels": {"team": "blog"}},
            "allowedResources": ["arn:aws:s3:::${namespace}.*"],
        }))
        .unwrap_or_else(|err| panic!("{err}"));
        DeserializeGuard(Ok(PodIdentityPolicy::new("teams", spec)))
    }

    fn blog_namespace() -> NamespaceMeta {
        let mut namespace = NamespaceMeta::default();
        namespace.metadata.name = Some("blog".into());
        namespace.metadata.labels = Some([("team".to_string(), "blog".to_string())].into());
        namespace
    }

    fn reader(bucket: &str) -> PodIdentityBinding {
        let spec: PodIdentityBindingSpec = serde_json::from_value(json!({
            "serviceAccountName": "app",
            "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": [format!("arn:aws:s3:::{bucket}/*")]}]},
        }))
        .unwrap_or_else(|err| panic!("{err}"));
        let mut binding = PodIdentityBinding::new("reader", spec);
        binding.metadata.namespace = Some("blog".into());
        binding
    }

    /// The second adversarial pass: with the chart's empty `aws.accountId`, the webhook
    /// filled `${account}` with a placeholder and refused at admission what the controller
    /// (which learns the account from STS) allows. Such a namespace is the controller's
    /// to judge; one whose patterns the webhook can fill is still judged at admission.
    #[tokio::test]
    async fn admission_judges_only_what_it_has_values_for() {
        use crate::validation::BindingAdmission;
        let (policies, mut policy_writer) = reflector::store::<WatchedPolicy>();
        let (namespaces, mut namespace_writer) = reflector::store::<NamespaceMeta>();
        let spec: PodIdentityPolicySpec = serde_json::from_value(json!({
            "namespaceSelector": {"matchLabels": {"team": "blog"}},
            "allowedResources": ["arn:aws:sqs:*:${account}:${namespace}_*"],
        }))
        .unwrap_or_else(|err| panic!("{err}"));
        policy_writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(
            PodIdentityPolicy::new("queues", spec),
        ))));
        namespace_writer.apply_watcher_event(&watcher::Event::Apply(blog_namespace()));
        let without_account = OperatorConfig {
            cluster_name: "prod".into(),
            ..OperatorConfig::default()
        };
        let (rules, _) = NamespaceRules::over(&without_account, policies, namespaces);
        struct Anyone;
        impl crate::validation::SecretRights for Anyone {
            fn may_create_secrets<'a>(
                &'a self,
                _: &'a crate::validation::UserInfo,
                _: &'a str,
            ) -> futures::future::BoxFuture<'a, Result<bool, String>> {
                Box::pin(async { Ok(true) })
            }
        }
        let admission = BindingAdmission {
            operator: Some((without_account, rules)),
            rights: std::sync::Arc::new(Anyone),
            controller_user: None,
        };
        let allowed = |actions: &[&str], resource: &str| {
            let mut binding = reader("x");
            binding.spec.permissions.statements[0].actions =
                actions.iter().map(ToString::to_string).collect();
            binding.spec.permissions.statements[0].resources = vec![resource.into()];
            let body = serde_json::to_vec(&json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": "u", "operation": "CREATE", "namespace": "blog",
                    "userInfo": {"username": "alice"},
                    "object": binding,
                }
            }))
            .unwrap_or_default();
            let admission = &admission;
            async move {
                admission
                    .review(&body)
                    .await
                    .map(|r| r.response.allowed)
                    .unwrap_or(false)
            }
        };
        assert!(
            allowed(
                &["sqs:SendMessage"],
                "arn:aws:sqs:eu-west-1:111122223333:blog_events"
            )
            .await,
            "the controller's to judge: it knows the account"
        );
        // What is refused whatever the account is still refused at admission.
        assert!(
            !allowed(
                &["iam:PassRole"],
                "arn:aws:sqs:eu-west-1:111122223333:blog_events"
            )
            .await
        );
    }

    #[test]
    fn roles_are_predicted_only_for_bindings_the_namespaces_policies_allow() {
        let (policies, mut policy_writer) = reflector::store::<WatchedPolicy>();
        let (namespaces, mut namespace_writer) = reflector::store::<NamespaceMeta>();
        policy_writer.apply_watcher_event(&watcher::Event::Apply(teams()));
        namespace_writer.apply_watcher_event(&watcher::Event::Apply(blog_namespace()));
        let (rules, watched) = NamespaceRules::over(&crate::test_operator(), policies, namespaces);
        let predictor =
            Predictor::new(crate::test_operator(), "eks.amazonaws.com").with_rules(rules);

        let cache = BindingCache::new();
        cache.apply(watcher::Event::Apply(DeserializeGuard(Ok(reader(
            "shop.data",
        )))));
        let covering = cache.covering("blog", "app");
        assert_eq!(
            covering[0].prediction(&predictor),
            None,
            "another team's bucket: the controller refuses it, so no role is predicted"
        );
        let own = predictor.predict(
            podidentity_iam::BindingRef::new("blog", "reader"),
            &reader("blog.data").spec,
        );
        assert!(own.is_some_and(|a| a.contains_key("eks.amazonaws.com/role-arn")));

        // The policy goes: the cached prediction is worked out again.
        policy_writer.apply_watcher_event(&watcher::Event::Delete(teams()));
        note(
            &watched,
            &Ok(watcher::Event::Delete(teams())),
            |w| &w.policies_listed,
            "PodIdentityPolicy",
        );
        assert!(
            covering[0]
                .prediction(&predictor)
                .is_some_and(|a| a.contains_key("eks.amazonaws.com/role-arn"))
        );
    }
}
