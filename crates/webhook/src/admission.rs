//! AdmissionReview in, AdmissionReview out. Whatever goes wrong inside admits the pod
//! unchanged (with a warning), so the webhook can never block pod creation; only a body
//! that is not an AdmissionReview at all is refused (400).

use std::borrow::Cow;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::lookup::IdentityLookup;
use crate::mutation::{MutationConfig, mutate};
use crate::pod::AdmittedPod;

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
pub struct NotAReview(pub(crate) String);

/// The AdmissionReview we answer with. Written here rather than with kube's type, which
/// serializes `patch` as an array of numbers (kube-rs issue #1781); the API server wants
/// base64, as the original webhook sends.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewResponse {
    pub api_version: String,
    pub kind: &'static str,
    pub response: Response,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ResponseStatus>,
    /// The JSON patch, base64-encoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct ResponseStatus {
    pub code: u16,
    pub message: String,
}

impl ReviewResponse {
    /// The review answering one of the version the API server sent (v1 when it named
    /// none).
    pub(crate) fn answering(api_version: Option<&str>, response: Response) -> Self {
        Self {
            api_version: api_version
                .filter(|version| !version.is_empty())
                .unwrap_or("admission.k8s.io/v1")
                .to_string(),
            kind: "AdmissionReview",
            response,
        }
    }
}

impl Response {
    pub(crate) fn allow(uid: &str) -> Self {
        Self {
            uid: uid.to_string(),
            allowed: true,
            ..Self::default()
        }
    }

    /// A refusal the API server shows the requester as it is.
    pub(crate) fn deny(uid: &str, message: String) -> Self {
        Self {
            uid: uid.to_string(),
            allowed: false,
            status: Some(ResponseStatus { code: 403, message }),
            ..Self::default()
        }
    }
}

/// The AdmissionReview as read: borrowed from the body where it can be, and the object
/// kept as raw JSON until it is known to be a pod.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a> {
    #[serde(default, borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    request: Option<RequestIn<'a>>,
}

#[derive(Deserialize)]
struct RequestIn<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(borrow)]
    kind: KindIn<'a>,
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    object: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct KindIn<'a> {
    #[serde(default, borrow)]
    group: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

/// Handles one AdmissionReview body.
pub async fn review(
    body: &[u8],
    lookup: &dyn IdentityLookup,
    config: &MutationConfig,
) -> Result<(ReviewResponse, Outcome), NotAReview> {
    let review: ReviewIn<'_> =
        serde_json::from_slice(body).map_err(|err| NotAReview(err.to_string()))?;
    let wrap = |response| ReviewResponse::answering(review.api_version.as_deref(), response);
    let Some(request) = review.request else {
        let response = Response {
            status: Some(ResponseStatus {
                code: 400,
                message: "invalid AdmissionReview: the request is missing".into(),
            }),
            ..Response::default()
        };
        return Ok((wrap(response), Outcome::Error));
    };
    let (response, outcome) = respond(&request, lookup, config).await;
    Ok((wrap(response), outcome))
}

async fn respond(
    request: &RequestIn<'_>,
    lookup: &dyn IdentityLookup,
    config: &MutationConfig,
) -> (Response, Outcome) {
    if request.kind.kind != "Pod" || !request.kind.group.is_empty() {
        return (Response::allow(&request.uid), Outcome::Ignored);
    }
    let admit_unchanged = |reason: String| {
        tracing::warn!(uid = %request.uid, %reason, "admitting pod unchanged");
        let mut response = Response::allow(&request.uid);
        response.warnings = Some(vec![format!(
            "pod identity webhook: {reason}; pod admitted without AWS credentials injection"
        )]);
        (response, Outcome::Error)
    };
    let Some(object) = request.object.filter(|raw| raw.get() != "null") else {
        return admit_unchanged("the request carries no pod".into());
    };
    let pod: AdmittedPod = match serde_json::from_str(object.get()) {
        Ok(pod) => pod,
        Err(err) => return admit_unchanged(format!("the pod cannot be read: {err}")),
    };
    let Some(spec) = &pod.spec else {
        return admit_unchanged("the pod has no spec".into());
    };
    // On create the pod's namespace is only in the request.
    let namespace = request
        .namespace
        .as_deref()
        .or(pod.metadata.namespace.as_deref())
        .unwrap_or("default");
    let service_account = spec.service_account_name.as_deref().unwrap_or("default");
    let annotations = match lookup.annotations(namespace, service_account).await {
        Ok(annotations) => annotations,
        Err(err) => return admit_unchanged(err.to_string()),
    };
    let Some(patch) = mutate(&pod, annotations.as_ref(), config) else {
        return (Response::allow(&request.uid), Outcome::NoIdentity);
    };
    if patch.0.is_empty() {
        return (Response::allow(&request.uid), Outcome::Unchanged);
    }
    match serde_json::to_vec(&patch) {
        Ok(json) => {
            let mut response = Response::allow(&request.uid);
            response.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
            response.patch_type = Some("JSONPatch");
            (response, Outcome::Mutated)
        }
        Err(err) => admit_unchanged(format!("the patch cannot be serialized: {err}")),
    }
}
