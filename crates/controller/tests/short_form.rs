//! The ServiceAccount short form: annotations make a binding named after the
//! ServiceAccount, owned by it and labelled; removing them removes it; a user's binding of
//! that name is never overwritten. Kubernetes is a real kube-apiserver (scripts/test starts
//! one; a namespace per test, its ServiceAccount made there so owner references hold).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use kube::core::ObjectMeta;
use podidentity_api::config::{OperatorConfig, ShortFormConfig};
use podidentity_api::{PodIdentityBinding, PodIdentityBindingSpec};
use podidentity_aws::api::{IamApi, IamRequest, IamResponse};
use podidentity_aws::error::{AwsError, ErrorKind};
use podidentity_controller::Context;
use podidentity_controller::binding::short_form::{AccountMeta, reconcile, trim};

/// The short form never talks to IAM; any call is a bug.
struct NoIam;

impl IamApi for NoIam {
    fn call(&self, request: IamRequest) -> BoxFuture<'_, Result<IamResponse, AwsError>> {
        Box::pin(async move {
            Err(AwsError::new(
                ErrorKind::Other,
                request.operation(),
                "the short form must not call IAM",
            ))
        })
    }
}

/// The ServiceAccount `external-dns` in `namespace` with `uid` (the one the API server gave
/// it), as its watch shows it with these annotations.
fn account(namespace: &str, uid: &str, annotations: &[(&str, &str)]) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some("external-dns".into()),
            namespace: Some(namespace.into()),
            uid: Some(uid.into()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    }
}

/// The ServiceAccount as the short form's watch keeps it.
fn meta(account: &ServiceAccount) -> Arc<AccountMeta> {
    let mut kept = AccountMeta {
        metadata: account.metadata.clone(),
        ..AccountMeta::default()
    };
    trim(&mut kept);
    Arc::new(kept)
}

const POLICY: &str = r#"{"Statement":[{"Effect":"Allow","Action":"route53:ChangeResourceRecordSets","Resource":"*"}]}"#;

/// A namespace of the test's own with the ServiceAccount `external-dns` in it, and a
/// context whose short form is on everywhere.
struct World {
    client: kube::Client,
    ctx: Arc<Context>,
    namespace: String,
    uid: String,
}

impl World {
    /// The ServiceAccount as its watch shows it with `annotations`.
    fn sa(&self, annotations: &[(&str, &str)]) -> ServiceAccount {
        account(&self.namespace, &self.uid, annotations)
    }
    fn bindings(&self) -> Api<PodIdentityBinding> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

/// `None`: no test control plane (skipped).
async fn world() -> Option<World> {
    let client = podidentity_test_cluster::client().await?;
    let namespace = podidentity_test_cluster::namespace(&client, "dns").await;
    let made = Api::<ServiceAccount>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &account(&namespace, "", &[]))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let config = OperatorConfig {
        cluster_name: "prod".into(),
        short_form: ShortFormConfig {
            enabled: true,
            namespaces: vec![],
        },
        ..OperatorConfig::default()
    };
    Some(World {
        ctx: Arc::new(Context::new(client.clone(), Arc::new(NoIam), config)),
        client,
        namespace,
        uid: made.metadata.uid.unwrap_or_default(),
    })
}

#[tokio::test]
async fn where_the_short_form_is_off_annotations_make_nothing() {
    for short_form in [
        ShortFormConfig::default(),
        ShortFormConfig {
            enabled: true,
            namespaces: vec!["elsewhere".into()],
        },
    ] {
        let Some(w) = world().await else { return };
        let annotated = w.sa(&[("podidentity.io/inline-policy", POLICY)]);
        let client = w.client.clone();
        let config = OperatorConfig {
            cluster_name: "prod".into(),
            short_form: short_form.clone(),
            ..OperatorConfig::default()
        };
        let ctx = Arc::new(Context::new(client.clone(), Arc::new(NoIam), config));
        reconcile(meta(&annotated), ctx)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        assert!(
            w.bindings()
                .get_opt("external-dns")
                .await
                .unwrap_or_else(|err| panic!("{err}"))
                .is_none(),
            "{short_form:?}: no binding"
        );
    }
}

#[tokio::test]
async fn annotations_make_an_owned_labelled_binding_and_removing_them_removes_it() {
    let Some(w) = world().await else { return };
    let ctx = w.ctx.clone();
    let annotated = w.sa(&[("podidentity.io/inline-policy", POLICY)]);
    reconcile(meta(&annotated.clone()), ctx.clone())
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let bindings = w.bindings();
    let made = bindings
        .get("external-dns")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(made.spec.service_account_name, "external-dns");
    assert_eq!(
        made.spec.permissions.statements[0].actions,
        ["route53:ChangeResourceRecordSets"]
    );
    assert_eq!(
        made.metadata
            .labels
            .unwrap_or_default()
            .get("podidentity.io/from-service-account")
            .map(String::as_str),
        Some("true")
    );
    assert!(
        made.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "ServiceAccount" && o.name == "external-dns")
    );

    // A second pass with the same annotations writes nothing.
    let version = bindings
        .get("external-dns")
        .await
        .ok()
        .and_then(|b| b.metadata.resource_version);
    reconcile(meta(&annotated), ctx.clone())
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        bindings
            .get("external-dns")
            .await
            .ok()
            .and_then(|b| b.metadata.resource_version),
        version
    );

    let plain = w.sa(&[]);
    reconcile(meta(&plain), ctx)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        bindings
            .get_opt("external-dns")
            .await
            .unwrap_or_else(|err| panic!("{err}"))
            .is_none()
    );
}

#[tokio::test]
async fn a_users_binding_of_that_name_is_never_overwritten() {
    let mut users = PodIdentityBinding::new(
        "external-dns",
        PodIdentityBindingSpec {
            service_account_name: "external-dns".into(),
            ..Default::default()
        },
    );
    users.metadata.labels = Some(BTreeMap::from([("team".to_string(), "dns".to_string())]));
    let Some(w) = world().await else { return };
    let ctx = w.ctx.clone();
    let bindings = w.bindings();
    bindings
        .create(&PostParams::default(), &users)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let annotated = w.sa(&[("podidentity.io/inline-policy", POLICY)]);
    reconcile(meta(&annotated), ctx.clone())
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let kept = bindings
        .get("external-dns")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(kept.spec, users.spec, "the user's binding is untouched");
    // Removing the annotations does not delete the user's binding either.
    reconcile(meta(&w.sa(&[])), ctx)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        bindings
            .get_opt("external-dns")
            .await
            .unwrap_or_else(|err| panic!("{err}"))
            .is_some()
    );
}

#[test]
fn the_watch_keeps_only_what_the_short_form_reads() {
    let mut account = account(
        "dns",
        "5f0c8c1e-0000-4000-8000-000000000001",
        &[
            ("podidentity.io/inline-policy", POLICY),
            (
                "kubectl.kubernetes.io/last-applied-configuration",
                "{\"a\": 1}",
            ),
            (
                "eks.amazonaws.com/role-arn",
                "arn:aws:iam::111122223333:role/x",
            ),
        ],
    );
    account.metadata.labels = Some(BTreeMap::from([("team".to_string(), "dns".to_string())]));
    let kept = meta(&account);
    assert_eq!(
        kept.metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_keys()
            .collect::<Vec<_>>(),
        ["podidentity.io/inline-policy"]
    );
    assert!(kept.metadata.labels.is_none());
    assert_eq!(kept.metadata.uid, account.metadata.uid);
}

#[tokio::test]
async fn an_account_asking_nothing_costs_no_request_once_bindings_are_cached() {
    let Some(w) = world().await else { return };
    let Some((client, requests)) = podidentity_test_cluster::client_recording().await else {
        return;
    };
    let (store, mut writer) = kube::runtime::reflector::store();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
    writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
    let ctx = Arc::new(
        Context::new(
            client,
            Arc::new(NoIam),
            OperatorConfig {
                cluster_name: "prod".into(),
                short_form: ShortFormConfig {
                    enabled: true,
                    namespaces: vec![],
                },
                ..OperatorConfig::default()
            },
        )
        .with_bindings_cache(store),
    );
    let quiet = w.sa(&[]);
    reconcile(meta(&quiet), ctx.clone())
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(requests.lines(), Vec::<String>::new(), "no request at all");
    // One that asks for a role looks for its binding.
    let asking = w.sa(&[("podidentity.io/inline-policy", POLICY)]);
    let _ = reconcile(meta(&asking), ctx).await;
    assert_eq!(
        requests.count(&http::Method::GET),
        1,
        "{:?}",
        requests.lines()
    );
    drop(writer);
}

fn named(name: &str, annotations: &[(&str, &str)]) -> AccountMeta {
    let mut named = account("dns", &format!("uid-{name}"), annotations);
    named.metadata.name = Some(name.into());
    (*meta(&named)).clone()
}

#[tokio::test]
async fn the_short_form_holds_only_the_accounts_it_may_act_on() {
    use futures::StreamExt;
    use kube::ResourceExt;
    use kube::core::error_boundary::DeserializeGuard;
    use kube::runtime::reflector::{self, ObjectRef};
    use kube::runtime::watcher::Event;
    use podidentity_controller::binding::short_form::reflect_actionable;

    let binding = |name: &str, from_service_account: bool| {
        let mut b = PodIdentityBinding::new(name, PodIdentityBindingSpec::default());
        b.metadata.namespace = Some("dns".into());
        if from_service_account {
            b.metadata.labels = Some(BTreeMap::from([(
                "podidentity.io/from-service-account".to_string(),
                "true".to_string(),
            )]));
        }
        DeserializeGuard(Ok(b))
    };
    let (bindings, mut bindings_writer) = reflector::store();
    bindings_writer.apply_watcher_event(&Event::Init);
    bindings_writer.apply_watcher_event(&Event::InitApply(binding("made", true)));
    bindings_writer.apply_watcher_event(&Event::InitApply(binding("users", false)));
    bindings_writer.apply_watcher_event(&Event::InitDone);
    // Holding is judged from the caches alone: a client that answers nothing.
    let client = kube::Client::new(
        tower::service_fn(|_: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, std::io::Error>(std::io::Error::other(
                "the short form's holding must not call the API server",
            ))
        }),
        "default",
    );
    let ctx = Arc::new(
        Context::new(client, Arc::new(NoIam), OperatorConfig::default())
            .with_bindings_cache(bindings),
    );

    let asking = [("podidentity.io/inline-policy", POLICY)];
    let events = vec![
        Event::Init,
        Event::InitApply(named("plain", &[])),
        Event::InitApply(named("asks", &asking)),
        // The short form's binding is there to take back; a user's is not its business.
        Event::InitApply(named("made", &[])),
        Event::InitApply(named("users", &[])),
        Event::InitDone,
        // Held: its annotations just went, and its pass must take its binding back.
        Event::Apply(named("asks", &[])),
        Event::Apply(named("plain", &[])),
        Event::Apply(named("newly-asks", &asking)),
    ];
    let (store, writer) = reflector::store::<AccountMeta>();
    let passed: Vec<String> = reflect_actionable(
        futures::stream::iter(events.into_iter().map(Ok)),
        writer,
        ctx,
    )
    .filter_map(|event| async move {
        match event {
            Ok(Event::Apply(a) | Event::InitApply(a)) => a.metadata.name,
            _ => None,
        }
    })
    .collect()
    .await;
    assert_eq!(passed, ["asks", "made", "asks", "newly-asks"]);
    let mut held: Vec<String> = store.state().iter().map(|a| a.name_any()).collect();
    held.sort();
    assert_eq!(held, ["asks", "made", "newly-asks"]);
    assert!(store.get(&ObjectRef::new("plain").within("dns")).is_none());
}
