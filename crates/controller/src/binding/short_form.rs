//! The ServiceAccount short form: annotations on a ServiceAccount become a
//! PodIdentityBinding named after it, owned by it and labelled, so one code path serves
//! both. A binding of that name that a user made is never overwritten.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use podidentity_api::annotations::FROM_SERVICE_ACCOUNT_LABEL;
use podidentity_api::{FIELD_MANAGER, PodIdentityBinding};
use podidentity_iam::short_form::spec_from_annotations;
use serde_json::json;

use crate::caches::Lookup;
use crate::context::Context;
use crate::error::Error;

/// A ServiceAccount as the short form watches it: metadata, and of its annotations only
/// the short form's own (see [`trim`]).
pub type AccountMeta = PartialObjectMeta<ServiceAccount>;

/// Keeps what the short form reads: 20,000 ServiceAccounts cost little when each is a
/// name, a uid and (rarely) two annotations, and a lot with managedFields and
/// `last-applied-configuration`.
pub fn trim(account: &mut AccountMeta) {
    let metadata = &mut account.metadata;
    metadata.managed_fields = None;
    metadata.labels = None;
    if let Some(annotations) = metadata.annotations.as_mut() {
        annotations.retain(|key, _| key.starts_with(podidentity_api::KEY_PREFIX));
    }
}

/// Whether the short form may have something to do for this ServiceAccount: it carries
/// a key of ours, or a binding the short form made may exist under its name (to take
/// back).
fn may_act_on(ctx: &Context, account: &AccountMeta) -> bool {
    let asks = account
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|annotations| {
            annotations
                .keys()
                .any(|key| key.starts_with(podidentity_api::KEY_PREFIX))
        });
    asks || account
        .namespace()
        .is_some_and(|namespace| binding_may_exist(ctx, &namespace, &account.name_any()))
}

/// Keeps in the short form's store, and passes on to it, only the ServiceAccounts it may
/// act on, and those it already holds (an account whose annotations were just removed
/// must reach its pass, whether or not the cache shows the binding yet). Of 20,000
/// accounts most ask for nothing: holding each would cost more than every binding.
pub fn reflect_actionable<S>(
    stream: S,
    writer: Writer<AccountMeta>,
    ctx: Arc<Context>,
) -> impl Stream<Item = S::Item>
where
    S: Stream<Item = Result<watcher::Event<AccountMeta>, watcher::Error>>,
{
    let held = writer.as_reader();
    stream
        .filter(move |event| {
            futures::future::ready(match event {
                Ok(watcher::Event::Apply(account) | watcher::Event::InitApply(account)) => {
                    may_act_on(&ctx, account) || held.get(&ObjectRef::from_obj(account)).is_some()
                }
                _ => true,
            })
        })
        .reflect(writer)
}

/// Whether the short form may have made a binding `namespace/name`: false only when the
/// watch cache holds none of that name labelled as the short form's (without a cache,
/// always true). A binding a user made under that name is not the short form's to take
/// back, so it is no reason to look.
fn binding_may_exist(ctx: &Context, namespace: &str, name: &str) -> bool {
    match ctx.bindings.cached(namespace, name) {
        Lookup::Found(binding) => labelled_as_made(binding.meta()),
        Lookup::Absent => false,
        Lookup::NoCache => true,
    }
}

/// Whether a binding carries the short form's label (made from a ServiceAccount).
pub fn labelled_as_made(binding: &kube::core::ObjectMeta) -> bool {
    binding
        .labels
        .as_ref()
        .and_then(|labels| labels.get(FROM_SERVICE_ACCOUNT_LABEL))
        .is_some_and(|v| v == "true")
}

/// Whether `binding` is the one this ServiceAccount's short form made.
fn made_from(binding: &PodIdentityBinding, sa: &AccountMeta) -> bool {
    let labelled = labelled_as_made(&binding.metadata);
    let owned = binding
        .owner_references()
        .iter()
        .any(|o| o.kind == "ServiceAccount" && Some(&o.uid) == sa.metadata.uid.as_ref());
    labelled && owned
}

async fn warn(ctx: &Context, sa: &AccountMeta, reason: &str, note: String) {
    ctx.event_on(&sa.object_ref(&()), EventType::Warning, reason, note)
        .await;
}

pub async fn reconcile(sa: Arc<AccountMeta>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = sa.namespace().ok_or(Error::NoNamespace)?;
    let name = sa.name_any();
    let api: Api<PodIdentityBinding> = Api::namespaced(ctx.client.clone(), &namespace);
    let annotations = sa.metadata.annotations.clone().unwrap_or_default();
    let being_deleted = sa.metadata.deletion_timestamp.is_some();
    let asked = if being_deleted {
        None
    } else {
        spec_from_annotations(&name, &annotations)
    };
    if asked.is_some()
        && let Some(refusal) = ctx.config.short_form_refusal(&namespace)
    {
        warn(&ctx, &sa, "ShortFormDisabled", refusal).await;
        return Ok(Action::await_change());
    }
    // Most ServiceAccounts ask for nothing and never did: the binding cache says so
    // without a request (a start with 20,000 accounts makes no 20,000 GETs).
    if asked.is_none() && !binding_may_exist(&ctx, &namespace, &name) {
        return Ok(Action::await_change());
    }
    let existing = api.get_opt(&name).await?;
    match asked {
        None => {
            // Annotations removed (or the ServiceAccount going): remove what they made.
            if let Some(binding) = existing
                && made_from(&binding, &sa)
            {
                api.delete(&name, &DeleteParams::default()).await?;
            }
        }
        Some(Err(violations)) => {
            let problems: Vec<String> = violations.iter().map(ToString::to_string).collect();
            warn(&ctx, &sa, "InvalidShortForm", problems.join("; ")).await;
        }
        Some(Ok(spec)) => {
            if let Some(binding) = &existing {
                if !made_from(binding, &sa) {
                    warn(
                        &ctx,
                        &sa,
                        "BindingNameTaken",
                        format!("a PodIdentityBinding {namespace}/{name} exists that these annotations did not make; it wins, and the annotations are ignored"),
                    )
                    .await;
                    return Ok(Action::await_change());
                }
                if binding.spec == spec {
                    return Ok(Action::await_change());
                }
            }
            let owner = sa.controller_owner_ref(&());
            let patch = json!({
                "apiVersion": PodIdentityBinding::api_version(&()),
                "kind": PodIdentityBinding::kind(&()),
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {FROM_SERVICE_ACCOUNT_LABEL: "true"},
                    "ownerReferences": owner.map(|o| vec![o]).unwrap_or_default(),
                },
                "spec": spec,
            });
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        }
    }
    Ok(Action::await_change())
}
