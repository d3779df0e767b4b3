//! AdmissionReview in, AdmissionReview out. Whatever goes wrong inside admits the pod
//! unchanged (with a warning), so the webhook can never block pod creation; only a body
//! that is not an AdmissionReview at all is refused (400).

use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

use crate::lookup::IdentityLookup;
use crate::mutation::{MutationConfig, mutate};

/// How one admission ended; the metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A patch was returned.
    Mutated,
    /// The pod has a role and already carries everything.
    Unchanged,
    /// No role for the pod's ServiceAccount.
    NoIdentity,
    /// Not a pod create we act on (another kind, another operation).
    Ignored,
    /// Something failed inside; the pod was admitted unchanged.
    Error,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Mutated => "mutated",
            Outcome::Unchanged => "unchanged",
            Outcome::NoIdentity => "no_identity",
            Outcome::Ignored => "ignored",
            Outcome::Error => "error",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not an AdmissionReview: {0}")]
pub struct NotAReview(String);

/// Handles one AdmissionReview body.
pub async fn review(
    body: &[u8],
    lookup: &dyn IdentityLookup,
    config: &MutationConfig,
) -> Result<(AdmissionReview<DynamicObject>, Outcome), NotAReview> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|err| NotAReview(err.to_string()))?;
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(err) => {
            return Ok((
                AdmissionResponse::invalid(err).into_review(),
                Outcome::Error,
            ));
        }
    };
    let (response, outcome) = respond(&request, lookup, config).await;
    Ok((response.into_review(), outcome))
}

async fn respond(
    request: &AdmissionRequest<DynamicObject>,
    lookup: &dyn IdentityLookup,
    config: &MutationConfig,
) -> (AdmissionResponse, Outcome) {
    let allowed = AdmissionResponse::from(request);
    if request.kind.kind != "Pod" || !request.kind.group.is_empty() {
        return (allowed, Outcome::Ignored);
    }
    let admit_unchanged = |reason: String| {
        tracing::warn!(uid = %request.uid, %reason, "admitting pod unchanged");
        let mut response = AdmissionResponse::from(request);
        response.warnings = Some(vec![format!(
            "pod identity webhook: {reason}; pod admitted without AWS credentials injection"
        )]);
        (response, Outcome::Error)
    };
    let Some(object) = &request.object else {
        return admit_unchanged("the request carries no pod".into());
    };
    let pod: Pod = match serde_json::to_value(object).and_then(serde_json::from_value) {
        Ok(pod) => pod,
        Err(err) => return admit_unchanged(format!("the pod cannot be read: {err}")),
    };
    let Some(spec) = &pod.spec else {
        return admit_unchanged("the pod has no spec".into());
    };
    // On create the pod's namespace is only in the request.
    let namespace = request
        .namespace
        .clone()
        .or_else(|| pod.metadata.namespace.clone())
        .unwrap_or_else(|| "default".into());
    let service_account = spec
        .service_account_name
        .clone()
        .unwrap_or_else(|| "default".into());
    let annotations = match lookup.annotations(&namespace, &service_account).await {
        Ok(annotations) => annotations,
        Err(err) => return admit_unchanged(err.to_string()),
    };
    let Some(patch) = mutate(&pod, annotations.as_ref(), config) else {
        return (allowed, Outcome::NoIdentity);
    };
    if patch.0.is_empty() {
        return (allowed, Outcome::Unchanged);
    }
    match allowed.with_patch(patch) {
        Ok(response) => (response, Outcome::Mutated),
        Err(err) => admit_unchanged(format!("the patch cannot be serialized: {err}")),
    }
}
