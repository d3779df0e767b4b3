//! A binding the operator cannot read (a field from a newer CRD revision, a status edited
//! by hand into the wrong shape) is reported on its own, once per version of the object,
//! and every other binding goes on. The report is a Warning Event and a status written
//! without the operator's types: Ready=False and Stalled=True with reason `InvalidObject`.
//! The apply also drops whatever the operator's field manager owned and no longer sends,
//! which heals a status field that was edited into the wrong shape.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use podidentity_api::conditions::{self, reason};
use podidentity_api::{FIELD_MANAGER, PodIdentityBinding};
use serde_json::json;

use super::memory::{Memory, OwnWrite};
use crate::context::Context;
use crate::error::Error;

pub async fn report(
    invalid: &InvalidObject,
    ctx: &Context,
    memory: &Memory,
) -> Result<Action, Error> {
    let metadata = &invalid.metadata;
    let (Some(namespace), Some(name)) = (metadata.namespace.clone(), metadata.name.clone()) else {
        return Err(Error::NoNamespace);
    };
    let uid = metadata.uid.clone().unwrap_or_default();
    let over = metadata.resource_version.clone().unwrap_or_default();
    // Reported for this version already.
    if memory
        .record(&uid)
        .own_write
        .is_some_and(|w| w.over == over && w.unreadable)
    {
        return Ok(Action::await_change());
    }
    let message = format!(
        "the operator cannot read this PodIdentityBinding ({}): fix the object, or update the \
         operator if the CRD is newer than it",
        invalid.error
    );
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let condition = |type_: &str, status: &str| {
        json!({
            "type": type_,
            "status": status,
            "reason": reason::INVALID_OBJECT,
            "message": message,
            "observedGeneration": metadata.generation,
            "lastTransitionTime": now,
        })
    };
    let patch = json!({
        "apiVersion": PodIdentityBinding::api_version(&()),
        "kind": PodIdentityBinding::kind(&()),
        "status": {
            "observedGeneration": metadata.generation,
            "conditions": [
                condition(conditions::READY, "False"),
                condition(conditions::STALLED, "True"),
                condition(conditions::RECONCILING, "False"),
            ],
        },
    });
    // Read back through the guard: the answer is the same unreadable object.
    let api: Api<crate::caches::Watched> = Api::namespaced(ctx.client.clone(), &namespace);
    match api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(Action::await_change()),
        Err(err) => return Err(err.into()),
    }
    memory.remember_own_write(
        &uid,
        OwnWrite {
            over,
            unreadable: true,
        },
    );
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(PodIdentityBinding::api_version(&()).into()),
        kind: Some(PodIdentityBinding::kind(&()).into()),
        name: Some(name.clone()),
        namespace: Some(namespace),
        uid: metadata.uid.clone(),
        ..Default::default()
    };
    ctx.event_on(
        &reference,
        EventType::Warning,
        reason::INVALID_OBJECT,
        message,
    )
    .await;
    tracing::warn!(binding = %name, error = %invalid.error, "a binding the operator cannot read");
    Ok(Action::await_change())
}
