//! The ServiceAccount short form: annotations make a binding named after the
//! ServiceAccount, owned by it and labelled; removing them removes it; a user's binding of
//! that name is never overwritten.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;
use kube::core::ObjectMeta;
use kube_fake_client::ClientBuilder;
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

fn sa(annotations: &[(&str, &str)]) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some("external-dns".into()),
            namespace: Some("dns".into()),
            uid: Some("5f0c8c1e-0000-4000-8000-000000000001".into()),
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

async fn context(
    objects: Vec<ServiceAccount>,
    bindings: Vec<PodIdentityBinding>,
) -> (kube::Client, Arc<Context>) {
    let client = ClientBuilder::new()
        .with_resource::<PodIdentityBinding>()
        .with_status_subresource::<PodIdentityBinding>()
        .with_objects(objects)
        .with_objects(bindings)
        .build()
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
    (
        client.clone(),
        Arc::new(Context::new(client, Arc::new(NoIam), config)),
    )
}

#[tokio::test]
async fn where_the_short_form_is_off_annotations_make_nothing() {
    let annotated = sa(&[("podidentity.io/inline-policy", POLICY)]);
    for short_form in [
        ShortFormConfig::default(),
        ShortFormConfig {
            enabled: true,
            namespaces: vec!["elsewhere".into()],
        },
    ] {
        let (client, _) = context(vec![annotated.clone()], vec![]).await;
        let config = OperatorConfig {
            cluster_name: "prod".into(),
            short_form: short_form.clone(),
            ..OperatorConfig::default()
        };
        let ctx = Arc::new(Context::new(client.clone(), Arc::new(NoIam), config));
        reconcile(meta(&annotated), ctx)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        let bindings: Api<PodIdentityBinding> = Api::namespaced(client, "dns");
        assert!(
            bindings
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
    let annotated = sa(&[("podidentity.io/inline-policy", POLICY)]);
    let (client, ctx) = context(vec![annotated.clone()], vec![]).await;
    reconcile(meta(&annotated.clone()), ctx.clone())
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let bindings: Api<PodIdentityBinding> = Api::namespaced(client.clone(), "dns");
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

    let plain = sa(&[]);
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
    users.metadata.namespace = Some("dns".into());
    users.metadata.labels = Some(BTreeMap::from([("team".to_string(), "dns".to_string())]));
    let annotated = sa(&[("podidentity.io/inline-policy", POLICY)]);
    let (client, ctx) = context(vec![annotated.clone()], vec![users.clone()]).await;
    reconcile(meta(&annotated), ctx.clone())
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let bindings: Api<PodIdentityBinding> = Api::namespaced(client.clone(), "dns");
    let kept = bindings
        .get("external-dns")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(kept.spec, users.spec, "the user's binding is untouched");
    // Removing the annotations does not delete the user's binding either.
    reconcile(meta(&sa(&[])), ctx)
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
    let mut account = sa(&[
        ("podidentity.io/inline-policy", POLICY),
        (
            "kubectl.kubernetes.io/last-applied-configuration",
            "{\"a\": 1}",
        ),
        (
            "eks.amazonaws.com/role-arn",
            "arn:aws:iam::111122223333:role/x",
        ),
    ]);
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
    let gets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = gets.clone();
    let client = ClientBuilder::new()
        .with_resource::<PodIdentityBinding>()
        .with_interceptor_funcs(kube_fake_client::interceptor::Funcs::new().get(move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(None)
        }))
        .build()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
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
    reconcile(meta(&sa(&[])), ctx.clone())
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(gets.load(std::sync::atomic::Ordering::SeqCst), 0);
    // One that asks for a role looks for its binding.
    let _ = reconcile(meta(&sa(&[("podidentity.io/inline-policy", POLICY)])), ctx).await;
    assert_eq!(gets.load(std::sync::atomic::Ordering::SeqCst), 1);
    drop(writer);
}

fn named(name: &str, annotations: &[(&str, &str)]) -> AccountMeta {
    let mut account = sa(annotations);
    account.metadata.name = Some(name.into());
    account.metadata.uid = Some(format!("uid-{name}"));
    (*meta(&account)).clone()
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
    let (client, _) = context(vec![], vec![]).await;
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
