//! OpenShift's CredentialsRequests, reconciled like bindings: the request becomes a
//! desired state through the same engine and guardrails (`podidentity_iam::
//! credentials_request`), one role per request made and kept in line by the same code as
//! a binding's, the Secret it names written in ccoctl's format (`secret`), and the status
//! written back as the Cloud Credential Operator writes it (`report`). Only with
//! `credentialsRequests.enabled`, only for requests in `credentialsRequests.namespaces`,
//! and only where the CRD is installed: elsewhere the controller never starts.

pub mod report;
pub mod secret;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use podidentity_api::credentials_request::{CRD_NAME, CredentialsRequest, Provisioned};
use podidentity_aws::ErrorKind;
use podidentity_iam::build::{DesiredState, ownership_tags};
use podidentity_iam::credentials_request::{
    binding_ref, desired_state, owner_tag, secret_binding_ref,
};

use crate::binding::finalizer::{self, Stage};
use crate::binding::role::{Known, RoleIdentity, RoleOutcome, delete_role, ensure_role};
use crate::context::{Context, jitter};
use crate::error::Error;
use report::{Failure, Found};

/// How soon a pass that failed for a passing reason (IAM, the API) is tried again.
const RETRY: Duration = Duration::from_secs(30);

/// Whether the CredentialsRequest CRD is served; `false` with one line saying so.
pub async fn crd_installed(client: &kube::Client) -> bool {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.get_opt(CRD_NAME).await {
        Ok(Some(_)) => true,
        Ok(None) => {
            tracing::info!(
                crd = CRD_NAME,
                "no CredentialsRequest CRD: CredentialsRequests are not reconciled"
            );
            false
        }
        Err(err) => {
            tracing::warn!(crd = CRD_NAME, error = %err, "cannot read the CredentialsRequest CRD: CredentialsRequests are not reconciled");
            false
        }
    }
}

/// Runs the CredentialsRequest controller until shutdown; never completes when it has
/// nothing to do. Its Secrets (by label) wake their request when changed or deleted.
pub async fn run(ctx: Arc<Context>) {
    if !ctx.config.credentials_requests.enabled || !crd_installed(&ctx.client).await {
        return futures::future::pending().await;
    }
    Controller::new(
        Api::<CredentialsRequest>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<Secret>::all(ctx.client.clone()),
        watcher::Config::default().labels(&secret::selector()),
        |secret| {
            secret::request_of(&secret)
                .map(|(namespace, name)| ObjectRef::new(&name).within(&namespace))
        },
    )
    .shutdown_on_signal()
    .run(reconcile, error_policy, ctx)
    .for_each(|_| async {})
    .await;
}

pub fn error_policy(
    _request: Arc<CredentialsRequest>,
    error: &Error,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(%error, "CredentialsRequest pass failed");
    Action::requeue(RETRY)
}

/// `namespace/name` of a request: its Secret's annotation.
fn request_ref(request: &CredentialsRequest) -> String {
    format!(
        "{}/{}",
        request.namespace().unwrap_or_default(),
        request.name_any()
    )
}

/// What the request asks for now, named as it would be provisioned.
fn asked(ctx: &Context, request: &CredentialsRequest) -> Provisioned {
    let owner = owner_tag(
        &request.namespace().unwrap_or_default(),
        &request.name_any(),
    );
    let secret = &request.spec.secret_ref;
    Provisioned {
        role_name: binding_ref(&request.spec, &owner).derived_role_name(&ctx.config),
        role_arn: String::new(),
        secret_namespace: secret.namespace.clone(),
        secret_name: secret.name.clone(),
    }
}

/// Deletes a role and Secret this request had: the role only if its tags say it is the
/// request's, the Secret only if annotated for it.
async fn release(
    ctx: &Context,
    request: &CredentialsRequest,
    made: &Provisioned,
) -> Result<(), Error> {
    let owner = owner_tag(
        &request.namespace().unwrap_or_default(),
        &request.name_any(),
    );
    let tagged_as = secret_binding_ref(&made.secret_namespace, &made.secret_name, &owner);
    let role = RoleIdentity::new(
        made.role_name.clone(),
        ownership_tags(&ctx.config, tagged_as),
    );
    delete_role(ctx.iam.as_ref(), &role).await?;
    secret::delete(
        ctx,
        &request_ref(request),
        &made.secret_namespace,
        &made.secret_name,
    )
    .await
}

pub async fn reconcile(
    request: Arc<CredentialsRequest>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = request.namespace().unwrap_or_default();
    let api: Api<CredentialsRequest> = Api::namespaced(ctx.client.clone(), &namespace);
    let recorded = request
        .status
        .as_ref()
        .and_then(|s| s.provisioned_objects());
    let stage = finalizer::stage(request.as_ref());
    match stage {
        // A request that carries our finalizer is cleaned up whatever the settings say now.
        Stage::Cleanup => {
            let asked = asked(&ctx, &request);
            if let Some(made) = recorded.as_ref().filter(|made| !made.same_objects(&asked)) {
                release(&ctx, &request, made).await?;
            }
            release(&ctx, &request, &asked).await?;
            finalizer::remove(&api, request.as_ref()).await?;
            return Ok(Action::await_change());
        }
        Stage::Done => return Ok(Action::await_change()),
        Stage::Add | Stage::Apply => {}
    }
    if !ctx.config.honours_credentials_requests(&namespace) {
        // Not the platform's namespace: not ours to answer, not even in its status.
        return Ok(Action::await_change());
    }
    if !request.spec.is_for_aws() {
        write_status(&api, &request, &Found::Ignored).await?;
        return Ok(Action::await_change());
    }
    if stage == Stage::Add {
        finalizer::add(&api, request.as_ref()).await?;
        return Ok(Action::await_change());
    }
    let secret_namespace = request.spec.secret_ref.namespace.clone();
    let rules = ctx
        .policies
        .for_namespace(&secret_namespace)
        .rules_for(&secret_namespace);
    let found = match desired_state(
        &namespace,
        &request.name_any(),
        &request.spec,
        &ctx.config,
        &rules,
    ) {
        None => Found::Ignored,
        Some(Err(refused)) => Found::Failed(Failure::Provision, refused.to_string()),
        Some(Ok(desired)) => provision(&ctx, &request, &desired).await?,
    };
    // The Secret moved (or was renamed): what was made for the old one goes.
    if let (Found::Provisioned(now), Some(before)) = (&found, &recorded)
        && !before.same_objects(now)
    {
        release(&ctx, &request, before).await?;
    }
    tracing::debug!(request = %request_ref(&request), ?found, "CredentialsRequest pass");
    write_status(&api, &request, &found).await?;
    let interval = jitter(
        ctx.config
            .drift_interval()
            .unwrap_or(Duration::from_secs(600)),
    );
    Ok(match found {
        // Re-read on the drift interval; a refusal too, since policies may change.
        Found::Provisioned(_) | Found::Failed(Failure::Provision, _) => Action::requeue(interval),
        Found::Ignored => Action::await_change(),
        Found::Failed(_, _) => Action::requeue(RETRY),
    })
}

/// The role, then the Secret. IAM errors that only a change fixes, and AccessDenied, are
/// findings; others fail the pass (and it is retried).
async fn provision(
    ctx: &Context,
    request: &CredentialsRequest,
    desired: &DesiredState,
) -> Result<Found, Error> {
    match ensure_role(ctx.iam.as_ref(), &desired.role, Known::Exists).await {
        Ok(RoleOutcome::Conflict { name, why }) => {
            return Ok(Found::Failed(Failure::Provision, why.explain(&name)));
        }
        Ok(_) => {}
        Err(failure) if failure.error.kind == ErrorKind::AccessDenied => {
            return Ok(Found::Failed(
                Failure::InsufficientCreds,
                failure.error.to_string(),
            ));
        }
        Err(failure) if failure.error.kind.is_permanent() => {
            return Ok(Found::Failed(Failure::Provision, failure.error.to_string()));
        }
        Err(failure) => return Err(failure.error.into()),
    }
    let namespace = &request.spec.secret_ref.namespace;
    let made = Provisioned {
        role_name: desired.role.name.clone(),
        role_arn: desired.role.arn.clone(),
        secret_namespace: namespace.clone(),
        secret_name: request.spec.secret_ref.name.clone(),
    };
    let Some(wanted) = &desired.credentials_secret else {
        return Ok(Found::Provisioned(made));
    };
    Ok(
        match secret::apply(ctx, &request_ref(request), namespace, wanted).await? {
            secret::Written::InLine => Found::Provisioned(made),
            secret::Written::NoNamespace => Found::Failed(
                Failure::MissingNamespace,
                format!("target namespace {namespace} not found"),
            ),
            secret::Written::Foreign(whose) => Found::Failed(
                Failure::Provision,
                format!(
                    "Secret {namespace}/{} exists and is {whose}: delete it (the operator writes \
                 it again), or name another Secret",
                    wanted.name
                ),
            ),
        },
    )
}
/// Writes the status when it changes.
async fn write_status(
    api: &Api<CredentialsRequest>,
    request: &CredentialsRequest,
    found: &Found,
) -> Result<(), Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let generation = request.meta().generation.unwrap_or_default();
    let next = report::next_status(request.status.as_ref(), found, generation, &now);
    if request.status.as_ref() == Some(&next) {
        return Ok(());
    }
    let patch = serde_json::json!({ "status": next });
    match api
        .patch_status(
            &request.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing to report on.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}
