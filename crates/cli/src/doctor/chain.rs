//! The chain from a pod to AWS credentials, judged link by link from what was read. Pure:
//! every fact comes in [`Facts`], so each broken link is tested without a cluster.

use k8s_openapi::api::core::v1::Pod;
use podidentity_api::PodIdentityBinding;
use podidentity_api::annotations::{TAG_BINDING, TAG_CLUSTER, TAG_NAMESPACE};
use podidentity_api::conditions::READY;
use podidentity_aws::ErrorKind;
use podidentity_iam::assume::{Verdict, evaluate};
use podidentity_iam::ownership::service_account_owner;
use podidentity_iam::trust::provider_host_path;
use podidentity_webhook::pod_credentials::{
    DEFAULT_ANNOTATION_PREFIX, TOKEN_MOUNT_PATH, containers, token_volume,
};
use serde::Serialize;

use super::gather::Facts;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    /// Works, but not as the operator would have it (a role made by hand, two bindings).
    Warning,
    Broken,
    /// Not checked: an earlier link gave nothing to check it with, or not asked for.
    Skipped,
}

/// One link: its name, how it is, a stable reason word, what was found and the fix.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Link {
    pub link: &'static str,
    pub health: Health,
    pub reason: &'static str,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

pub(super) fn link(
    name: &'static str,
    health: Health,
    reason: &'static str,
    detail: String,
) -> Link {
    Link {
        link: name,
        health,
        reason,
        detail,
        fix: None,
    }
}

pub(super) fn broken(
    name: &'static str,
    reason: &'static str,
    detail: String,
    fix: String,
) -> Link {
    Link {
        fix: Some(fix),
        ..link(name, Health::Broken, reason, detail)
    }
}

pub(super) fn skipped(name: &'static str, why: &str) -> Link {
    link(name, Health::Skipped, "Skipped", why.to_string())
}

/// Every link, in the order a token travels (Pod Identity's chain when the binding uses
/// it).
pub fn judge(facts: &Facts) -> Vec<Link> {
    if let Some(pi) = &facts.pod_identity {
        return super::pod_identity::judge(facts, pi);
    }
    vec![
        service_account(facts),
        binding(facts),
        role(facts),
        token(facts),
        issuer(facts),
        trust_policy(facts),
        oidc_provider(facts),
        discovery(facts),
        pod(facts),
        assume(facts),
    ]
}

fn qualified(facts: &Facts) -> String {
    format!("{}/{}", facts.namespace, facts.service_account_name)
}

/// The link of a ServiceAccount that cannot be read or does not exist (`None`: it does).
pub(super) fn service_account_unread(facts: &Facts) -> Option<Link> {
    const NAME: &str = "serviceAccount";
    let account = qualified(facts);
    match &facts.service_account {
        Err(err) => Some(broken(
            NAME,
            "Unreadable",
            format!("cannot read ServiceAccount {account}: {err}"),
            "check the kubeconfig and that you may get ServiceAccounts there".into(),
        )),
        Ok(None) => Some(broken(
            NAME,
            "NotFound",
            format!("ServiceAccount {account} does not exist"),
            "create it, or set spec.createServiceAccount: true on its PodIdentityBinding".into(),
        )),
        Ok(Some(_)) => None,
    }
}

fn service_account(facts: &Facts) -> Link {
    const NAME: &str = "serviceAccount";
    let account = qualified(facts);
    if let Some(unread) = service_account_unread(facts) {
        return unread;
    }
    match &facts.service_account {
        Err(_) | Ok(None) => skipped(NAME, "unread"),
        Ok(Some(_)) => match facts.role_arn() {
            Some(arn) => link(
                NAME,
                Health::Ok,
                "Annotated",
                format!("{account}: eks.amazonaws.com/role-arn={arn}"),
            ),
            None => broken(
                NAME,
                "NotAnnotated",
                format!("{account} has no eks.amazonaws.com/role-arn annotation: pods get no role"),
                match owner(facts) {
                    Some(b) => format!(
                        "PodIdentityBinding {} covers it but has not annotated it: see its Ready condition (kubectl -n {} describe pib {})",
                        b.metadata.name.as_deref().unwrap_or_default(),
                        facts.namespace,
                        b.metadata.name.as_deref().unwrap_or_default()
                    ),
                    None => format!(
                        "write a PodIdentityBinding with serviceAccountName: {} in namespace {}",
                        facts.service_account_name, facts.namespace
                    ),
                },
            ),
        },
    }
}

fn owner(facts: &Facts) -> Option<&PodIdentityBinding> {
    let bindings = facts.bindings.as_ref().ok()?;
    service_account_owner(
        bindings.iter(),
        &facts.namespace,
        &facts.service_account_name,
    )
}

fn ready(binding: &PodIdentityBinding) -> Result<(), String> {
    let condition = binding
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    match condition {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => Err(format!("{}: {}", c.reason, c.message)),
        None => Err("no Ready condition yet (is the controller running?)".into()),
    }
}

pub(super) fn binding(facts: &Facts) -> Link {
    const NAME: &str = "binding";
    let bindings = match &facts.bindings {
        Ok(bindings) => bindings,
        Err(err) => {
            return link(
                NAME,
                Health::Warning,
                "Unreadable",
                format!("cannot list PodIdentityBindings: {err}"),
            );
        }
    };
    let Some(owner) = owner(facts) else {
        return match facts.role_arn() {
            Some(_) => link(
                NAME,
                Health::Warning,
                "NoBinding",
                "no PodIdentityBinding names this ServiceAccount: the annotation was set by hand \
                 or by another tool, and nothing keeps its role in line"
                    .into(),
            ),
            None => skipped(NAME, "no PodIdentityBinding names this ServiceAccount"),
        };
    };
    let name = owner.metadata.name.clone().unwrap_or_default();
    if let Err(why) = ready(owner) {
        return broken(
            NAME,
            "NotReady",
            format!("PodIdentityBinding {name} is not Ready: {why}"),
            format!(
                "kubectl -n {} describe pib {name}: its conditions and Events say what to change",
                facts.namespace
            ),
        );
    }
    let recorded = owner.status.as_ref().and_then(|s| s.role_arn.as_deref());
    if let (Some(recorded), Some(annotated)) = (recorded, facts.role_arn())
        && recorded != annotated
    {
        return broken(
            NAME,
            "ArnMismatch",
            format!(
                "the annotation names {annotated}, but PodIdentityBinding {name}'s role is {recorded}"
            ),
            "someone else writes the annotation: remove the other writer; the operator puts it back"
                .into(),
        );
    }
    let others: Vec<&str> = bindings
        .iter()
        .filter(|b| b.metadata.uid != owner.metadata.uid)
        .filter_map(|b| b.metadata.name.as_deref())
        .collect();
    if others.is_empty() {
        link(
            NAME,
            Health::Ok,
            "Ready",
            format!("PodIdentityBinding {name} is Ready"),
        )
    } else {
        Link {
            fix: Some(format!(
                "delete {} or point it at another ServiceAccount",
                others.join(", ")
            )),
            ..link(
                NAME,
                Health::Warning,
                "ClaimedTwice",
                format!(
                    "PodIdentityBinding {name} owns the ServiceAccount (the oldest); {} also name it and wait (ServiceAccountConflict)",
                    others.join(", ")
                ),
            )
        }
    }
}

fn role(facts: &Facts) -> Link {
    const NAME: &str = "role";
    let (Some(arn), Some(found)) = (facts.role_arn(), &facts.role) else {
        return skipped(NAME, "no role ARN to look up");
    };
    let role = match found {
        Ok(role) => role,
        Err(err) if err.kind == ErrorKind::NotFound => {
            return broken(
                NAME,
                "NotFound",
                format!("{arn} does not exist in IAM ({err})"),
                "the annotation names a role that is gone: if a binding owns it, the operator makes it again within its drift interval; else fix the annotation".into(),
            );
        }
        Err(err) => {
            return broken(
                NAME,
                "Unreadable",
                format!("cannot read {arn}: {err}"),
                "doctor needs iam:GetRole on it (AWS credentials and region as for the controller)"
                    .into(),
            );
        }
    };
    let config = &facts.config;
    let tag = |key: &str| role.tags.get(key).map(String::as_str);
    let ours = tag(TAG_CLUSTER) == Some(config.cluster_name.as_str())
        && tag(TAG_NAMESPACE) == Some(facts.namespace.as_str());
    let mut notes = vec![format!("path {}", role.path)];
    notes.push(match &role.permissions_boundary_arn {
        Some(boundary) => format!("boundary {boundary}"),
        None => "no boundary".into(),
    });
    let wanted_boundary = config.roles.permissions_boundary_arn.as_deref();
    if !ours {
        return link(
            NAME,
            Health::Warning,
            "NotOurs",
            format!(
                "{} exists ({}) but is not this operator's: its tags {TAG_CLUSTER}={:?}, {TAG_NAMESPACE}={:?} are not {}/{}",
                role.name,
                notes.join(", "),
                tag(TAG_CLUSTER).unwrap_or("-"),
                tag(TAG_NAMESPACE).unwrap_or("-"),
                config.cluster_name,
                facts.namespace
            ),
        );
    }
    if wanted_boundary.is_some() && role.permissions_boundary_arn.as_deref() != wanted_boundary {
        return link(
            NAME,
            Health::Warning,
            "BoundaryMismatch",
            format!(
                "{}: {} where the configuration wants {}; the operator puts it back within its drift interval",
                role.name,
                notes.join(", "),
                wanted_boundary.unwrap_or_default()
            ),
        );
    }
    link(
        NAME,
        Health::Ok,
        "Owned",
        format!(
            "{} is this operator's (binding {}), {}",
            role.name,
            tag(TAG_BINDING).unwrap_or("-"),
            notes.join(", ")
        ),
    )
}

fn token(facts: &Facts) -> Link {
    const NAME: &str = "token";
    match &facts.token {
        Ok((_, token)) => link(
            NAME,
            Health::Ok,
            "Issued",
            format!(
                "iss={} sub={} aud={} kid={}",
                token.claims.issuer,
                token.claims.subject,
                token.claims.audiences.join(","),
                token.key_id.as_deref().unwrap_or("-")
            ),
        ),
        Err(err) => match &facts.service_account {
            Ok(Some(_)) => broken(
                NAME,
                "RequestFailed",
                err.clone(),
                "doctor requests a token as the kubelet does: it needs `create` on serviceaccounts/token in the namespace".into(),
            ),
            _ => skipped(NAME, "no ServiceAccount"),
        },
    }
}

fn trimmed(url: &str) -> &str {
    url.trim_start_matches("https://").trim_end_matches('/')
}

fn issuer(facts: &Facts) -> Link {
    const NAME: &str = "issuer";
    let Ok((_, token)) = &facts.token else {
        return skipped(NAME, "no token");
    };
    let configured = provider_host_path(&facts.config.provider_arn()).to_string();
    if trimmed(&token.claims.issuer) != configured {
        return broken(
            NAME,
            "IssuerMismatch",
            format!(
                "the API server issues tokens as {}, but the operator's roles trust the provider for https://{configured}",
                token.claims.issuer
            ),
            format!(
                "set oidc.issuerUrl to {} (or unset it: the controller reads the API server's own) and let the operator rewrite the trust policies",
                token.claims.issuer
            ),
        );
    }
    link(
        NAME,
        Health::Ok,
        "Matches",
        format!(
            "tokens are issued as {}, the configured provider's URL",
            token.claims.issuer
        ),
    )
}

fn trust_policy(facts: &Facts) -> Link {
    const NAME: &str = "trustPolicy";
    let (Ok((_, token)), Some(Ok(role))) = (&facts.token, &facts.role) else {
        return skipped(NAME, "no token or no role");
    };
    let document: serde_json::Value = match serde_json::from_str(&role.trust_policy) {
        Ok(document) => document,
        Err(err) => {
            return broken(
                NAME,
                "Unreadable",
                format!("the trust policy of {} is not JSON: {err}", role.name),
                "rewrite it (the operator does, for its own roles)".into(),
            );
        }
    };
    match evaluate(&document, &facts.provider_arn, &token.claims) {
        Verdict::Allowed { statement } => link(
            NAME,
            Health::Ok,
            "Allows",
            format!(
                "statement {statement} lets {} (aud {}) in through {}",
                token.claims.subject,
                token.claims.audiences.join(","),
                facts.provider_arn
            ),
        ),
        Verdict::Denied { statement } => broken(
            NAME,
            "Denied",
            format!(
                "statement {statement}, a Deny, refuses {}",
                token.claims.subject
            ),
            "remove the Deny statement from the role's trust policy".into(),
        ),
        Verdict::NotAllowed { reasons } => broken(
            NAME,
            "NotAllowed",
            format!(
                "{} would be refused (AccessDenied): {}",
                role.name,
                reasons.join("; ")
            ),
            trust_fix(facts, &reasons),
        ),
    }
}

/// What to change for a refusal, from what the reasons name.
fn trust_fix(facts: &Facts, reasons: &[String]) -> String {
    let all = reasons.join(" ");
    if all.contains("federated principal") {
        format!(
            "the trust policy names another provider than {}: set oidc.providerArn (or unset it) so the operator writes the right one",
            facts.provider_arn
        )
    } else if all.contains(":aud") {
        format!(
            "the token's audience is {}: set spec.audience of the binding to match the ServiceAccount's eks.amazonaws.com/audience, or remove that annotation",
            facts.audience
        )
    } else if all.contains(":sub") {
        format!(
            "the trust policy is for another ServiceAccount than {}: a binding of this namespace must name it (a role trusts exactly one ServiceAccount)",
            qualified(facts)
        )
    } else {
        "rewrite the trust policy (the operator does, for its own roles)".into()
    }
}

fn oidc_provider(facts: &Facts) -> Link {
    const NAME: &str = "oidcProvider";
    let arn = &facts.provider_arn;
    let provider = match &facts.provider {
        Ok(provider) => provider,
        Err(err) if err.kind == ErrorKind::NotFound => {
            return broken(
                NAME,
                "NotFound",
                format!("there is no IAM OIDC provider {arn}"),
                format!(
                    "create it: aws iam create-open-id-connect-provider --url https://{} --client-id-list {}",
                    provider_host_path(arn),
                    facts.audience
                ),
            );
        }
        Err(err) => {
            return broken(
                NAME,
                "Unreadable",
                format!("cannot read {arn}: {err}"),
                "doctor needs iam:GetOpenIDConnectProvider".into(),
            );
        }
    };
    if let Ok((_, token)) = &facts.token
        && trimmed(&provider.url) != trimmed(&token.claims.issuer)
    {
        return broken(
            NAME,
            "UrlMismatch",
            format!(
                "{arn} has URL {}, not the issuer {}",
                provider.url, token.claims.issuer
            ),
            "create a provider for the issuer's URL".into(),
        );
    }
    if !provider.client_ids.iter().any(|c| c == &facts.audience) {
        return broken(
            NAME,
            "AudienceMissing",
            format!(
                "{arn} accepts the audiences {:?}, not the token's {}",
                provider.client_ids, facts.audience
            ),
            format!(
                "aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn {arn} --client-id {}",
                facts.audience
            ),
        );
    }
    link(
        NAME,
        Health::Ok,
        "Exists",
        format!(
            "{arn}: URL {}, client ids {}",
            provider.url,
            provider.client_ids.join(",")
        ),
    )
}

/// The issuer's host answered, but not to an anonymous reader (as STS is).
fn refused(fetch_error: &str) -> bool {
    fetch_error.contains(" answered 401") || fetch_error.contains(" answered 403")
}

fn discovery(facts: &Facts) -> Link {
    const NAME: &str = "discovery";
    let (Some(found), Ok((_, token))) = (&facts.discovery, &facts.token) else {
        return skipped(NAME, "no token, so no issuer to ask");
    };
    let published = match found {
        Ok(published) => published,
        Err(err) if refused(err) => {
            return broken(
                NAME,
                "Forbidden",
                err.clone(),
                "STS reads the issuer's documents without credentials: serve them to anonymous readers. When the issuer is the API server itself: kubectl create clusterrolebinding oidc-discovery-anonymous --clusterrole=system:service-account-issuer-discovery --group=system:unauthenticated (its default binding admits ServiceAccounts only; keep --anonymous-auth on)".into(),
            );
        }
        Err(err) => {
            return broken(
                NAME,
                "Unreachable",
                err.clone(),
                "STS fetches the issuer's discovery document and keys over public HTTPS: publish them at the issuer URL (an S3 bucket, or the API server's own /.well-known/openid-configuration and /openid/v1/jwks)".into(),
            );
        }
    };
    if trimmed(&published.issuer) != trimmed(&token.claims.issuer) {
        return broken(
            NAME,
            "IssuerMismatch",
            format!(
                "the discovery document says issuer {}, the token {}",
                published.issuer, token.claims.issuer
            ),
            "publish the document of this API server's issuer".into(),
        );
    }
    match &token.key_id {
        Some(kid) if !published.key_ids.contains(kid) => broken(
            NAME,
            "KeyMissing",
            format!(
                "{} holds keys {:?}, not the token's {kid}: STS cannot verify the token",
                published.jwks_uri, published.key_ids
            ),
            "publish the API server's current keys (kubectl get --raw /openid/v1/jwks)".into(),
        ),
        _ => link(
            NAME,
            Health::Ok,
            "Published",
            format!(
                "{} lists the token's key among {}",
                published.jwks_uri,
                published.key_ids.len()
            ),
        ),
    }
}

/// The pod asked about, or its link when there is none to judge.
pub(super) fn target_pod(facts: &Facts) -> Result<&Pod, Link> {
    const NAME: &str = "pod";
    match &facts.pod {
        None => Err(skipped(NAME, "asked about a ServiceAccount, not a pod")),
        Some(Ok(Some(pod))) => Ok(pod),
        Some(Ok(None)) => Err(broken(
            NAME,
            "NotFound",
            "the pod does not exist".into(),
            "name a pod that exists (kubectl get pods)".into(),
        )),
        Some(Err(err)) => Err(broken(
            NAME,
            "Unreadable",
            format!("cannot read the pod: {err}"),
            "check that you may get pods there".into(),
        )),
    }
}

fn pod(facts: &Facts) -> Link {
    const NAME: &str = "pod";
    let pod = match target_pod(facts) {
        Ok(pod) => pod,
        Err(link) => return link,
    };
    let Some(arn) = facts.role_arn() else {
        return skipped(NAME, "the ServiceAccount names no role");
    };
    judge_pod(pod, arn, &facts.audience, facts.annotated_at.as_ref())
}

/// A pod's environment, token volume and mounts against the role and audience.
pub fn judge_pod(
    pod: &Pod,
    arn: &str,
    audience: &str,
    annotated_at: Option<&k8s_openapi::jiff::Timestamp>,
) -> Link {
    const NAME: &str = "pod";
    let name = pod.metadata.name.clone().unwrap_or_default();
    let listed = containers(pod, DEFAULT_ANNOTATION_PREFIX);
    let skipped_names: Vec<&str> = listed
        .iter()
        .filter(|c| c.skipped)
        .map(|c| c.name.as_str())
        .collect();
    let without: Vec<&str> = listed
        .iter()
        .filter(|c| !c.skipped && c.role_arn.is_none())
        .map(|c| c.name.as_str())
        .collect();
    if !without.is_empty() {
        let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
        return match (created, annotated_at) {
            // Both are kept to the second: the same second counts as before (the
            // webhook may not have seen the annotation yet either way).
            (Some(created), Some(annotated)) if created <= *annotated => broken(
                NAME,
                "StartedBeforeAnnotation",
                format!(
                    "pod {name} was created at {created}, before the role annotation landed at {annotated}: containers {} have no AWS_ROLE_ARN",
                    without.join(", ")
                ),
                "restart it (kubectl rollout restart on its workload), or set spec.injection.restartPods: true on the binding".into(),
            ),
            _ => broken(
                NAME,
                "NotMutated",
                format!(
                    "pod {name} was admitted after the role annotation but containers {} have no AWS_ROLE_ARN",
                    without.join(", ")
                ),
                "the pod webhook did not mutate it: is it installed and reachable (with failurePolicy Ignore, pods go through without it)? Then restart the pod".into(),
            ),
        };
    }
    let other: Vec<String> = listed
        .iter()
        .filter(|c| !c.has_role(arn))
        .map(|c| format!("{} ({})", c.name, c.role_arn.as_deref().unwrap_or_default()))
        .collect();
    if !other.is_empty() {
        return broken(
            NAME,
            "WrongRole",
            format!("containers carry another role's AWS_ROLE_ARN: {}", other.join(", ")),
            "restart the pod (the role changed since it started), or remove an AWS_ROLE_ARN set by hand".into(),
        );
    }
    let Some(volume) = token_volume(pod) else {
        return broken(
            NAME,
            "NoTokenVolume",
            "the pod has AWS_ROLE_ARN but no aws-iam-token projected volume".into(),
            "restart the pod so the webhook injects it".into(),
        );
    };
    if volume.audience.as_deref() != Some(audience) {
        return broken(
            NAME,
            "AudienceMismatch",
            format!(
                "the projected token's audience is {:?}, the ServiceAccount's {audience}",
                volume.audience
            ),
            "restart the pod (the audience changed since it started)".into(),
        );
    }
    let wanted = format!("{TOKEN_MOUNT_PATH}/{}", volume.path);
    let unmounted: Vec<String> = listed
        .iter()
        .filter(|c| !c.skipped)
        .filter(|c| {
            c.token_file.as_deref() != Some(wanted.as_str())
                || c.token_mount.as_deref() != Some(TOKEN_MOUNT_PATH)
        })
        .map(|c| c.name.clone())
        .collect();
    if !unmounted.is_empty() {
        return broken(
            NAME,
            "TokenPathMismatch",
            format!(
                "containers {} do not read the token at {wanted} (AWS_WEB_IDENTITY_TOKEN_FILE or the mount differ)",
                unmounted.join(", ")
            ),
            "remove hand-set AWS_WEB_IDENTITY_TOKEN_FILE or mounts, and restart the pod".into(),
        );
    }
    let mut detail = format!(
        "pod {name}: {} container(s) carry the role and read the token at {wanted}",
        listed.len() - skipped_names.len()
    );
    if !skipped_names.is_empty() {
        detail.push_str(&format!(
            "; skipped (eks.amazonaws.com/skip-containers): {}",
            skipped_names.join(", ")
        ));
    }
    link(NAME, Health::Ok, "Injected", detail)
}

fn assume(facts: &Facts) -> Link {
    const NAME: &str = "assume";
    match &facts.assumed {
        None => skipped(NAME, "pass --assume to exchange the token with STS"),
        Some(Ok(assumed)) => link(
            NAME,
            Health::Ok,
            "Assumed",
            format!(
                "STS exchanged the token: {} (credentials dropped)",
                assumed.assumed_role_arn
            ),
        ),
        Some(Err(err)) => broken(
            NAME,
            "Refused",
            format!("AssumeRoleWithWebIdentity failed: {err}"),
            "the links above say why when they can; IAM takes seconds to apply a change".into(),
        ),
    }
}
