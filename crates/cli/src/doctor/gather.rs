//! Reads everything the chain depends on, live and read-only (the one thing written is a
//! TokenRequest, which the API server answers without storing anything). Each read keeps
//! its failure as text: a link that cannot be read is reported, not fatal.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use podidentity_api::annotations::{AUDIENCE, DEFAULT_AUDIENCE, ROLE_ARN};
use podidentity_api::config::OperatorConfig;
use podidentity_api::{Mechanism, PodIdentityBinding};
use podidentity_aws::eks::{Association, AssociationApi, AssociationKey};
use podidentity_aws::{
    AssumedRole, AwsError, Iam, IamApi, OidcProvider, RoleState, WebIdentityToken,
};
use podidentity_controller::binding::assumable::service_account_token;
use podidentity_iam::assume::{TokenFacts, read_token};
use podidentity_iam::ownership::service_account_owner;
use serde_json::Value;

use podidentity_controller::oidc::fetch::Fetcher;

/// What doctor was asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    ServiceAccount { namespace: String, name: String },
    Pod { namespace: String, name: String },
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        };
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [namespace, name] if ok(namespace) && ok(name) => Ok(Target::ServiceAccount {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
            ["pod", namespace, name] if ok(namespace) && ok(name) => Ok(Target::Pod {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
            _ => Err(format!(
                "{text:?} names no ServiceAccount or pod: write NAMESPACE/SERVICEACCOUNT or \
                 pod/NAMESPACE/NAME (lower-case names)"
            )),
        }
    }
}

/// The issuer's published documents, as STS would read them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovery {
    /// `issuer` in the discovery document.
    pub issuer: String,
    pub jwks_uri: String,
    /// `kid` of every key in the JWKS.
    pub key_ids: Vec<String>,
}

/// Everything read, each with its failure kept.
pub struct Facts {
    pub config: OperatorConfig,
    pub namespace: String,
    pub service_account_name: String,
    /// Asked about a pod: it, or why not.
    pub pod: Option<Result<Option<Pod>, String>>,
    pub service_account: Result<Option<ServiceAccount>, String>,
    /// When the role annotation last landed (its field manager's time).
    pub annotated_at: Option<Timestamp>,
    /// Bindings of the namespace naming the ServiceAccount.
    pub bindings: Result<Vec<PodIdentityBinding>, String>,
    /// The role the ServiceAccount's annotation names, if it names one.
    pub role: Option<Result<RoleState, AwsError>>,
    pub audience: String,
    pub token: Result<(String, TokenFacts), String>,
    pub provider_arn: String,
    pub provider: Result<OidcProvider, AwsError>,
    /// `None`: no token, so no issuer to ask.
    pub discovery: Option<Result<Discovery, String>>,
    /// `None`: not asked (`--assume`), or nothing to assume.
    pub assumed: Option<Result<AssumedRole, AwsError>>,
    /// What EKS Pod Identity's chain depends on, when the ServiceAccount's binding uses it.
    pub pod_identity: Option<PodIdentityFacts>,
}

/// The name and namespace of EKS Pod Identity's agent (the EKS add-on's DaemonSet).
pub const AGENT_DAEMON_SET: (&str, &str) = ("kube-system", "eks-pod-identity-agent");

/// The Pod Identity chain's facts.
pub struct PodIdentityFacts {
    /// The EKS cluster the association is in (`eks.clusterName`).
    pub cluster: String,
    /// The role the binding records.
    pub role_arn: Option<String>,
    pub role: Option<Result<RoleState, AwsError>>,
    /// The ServiceAccount's association, or why it could not be read.
    pub association: Result<Option<Association>, String>,
    /// The agent's DaemonSet: (desired, ready) pods, `None` when it does not exist.
    pub agent: Result<Option<(i32, i32)>, String>,
}

impl Facts {
    pub fn role_arn(&self) -> Option<&str> {
        annotation(self.service_account.as_ref().ok()?.as_ref()?, ROLE_ARN)
    }
}

pub fn annotation<'a>(account: &'a ServiceAccount, key: &str) -> Option<&'a str> {
    account
        .metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The time the role annotation was last written, from the managed fields of whoever
/// wrote it.
fn annotation_time(account: &ServiceAccount) -> Option<Timestamp> {
    let field = format!("f:{ROLE_ARN}");
    account
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| {
            entry
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.pointer("/f:metadata/f:annotations"))
                .and_then(Value::as_object)
                .is_some_and(|annotations| annotations.contains_key(&field))
        })
        .filter_map(|entry| entry.time.as_ref().map(|t| t.0))
        .max()
}

pub struct Reach<'a> {
    pub client: &'a kube::Client,
    /// IAM in the operator's own account.
    pub iam: &'a dyn IamApi,
    /// IAM in each other account of the configuration, by id (credentials assumed as the
    /// controller assumes them).
    pub accounts: BTreeMap<String, &'a dyn IamApi>,
    pub eks: &'a dyn AssociationApi,
    pub fetcher: &'a Fetcher,
    pub assume: bool,
}

impl<'a> Reach<'a> {
    /// IAM in the account of `arn` (a role's, a provider's): the operator's own unless the
    /// ARN names another configured account.
    fn iam_for(&self, arn: Option<&str>) -> &'a dyn IamApi {
        arn.and_then(|arn| arn.split(':').nth(4))
            .and_then(|account| self.accounts.get(account).copied())
            .unwrap_or(self.iam)
    }
}

pub async fn gather(reach: &Reach<'_>, config: OperatorConfig, target: &Target) -> Facts {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let (namespace, pod) = match target {
        Target::ServiceAccount { namespace, .. } => (namespace.clone(), None),
        Target::Pod { namespace, name } => {
            let pods: Api<Pod> = Api::namespaced(reach.client.clone(), namespace);
            (
                namespace.clone(),
                Some(pods.get_opt(name).await.map_err(|e| text(&e))),
            )
        }
    };
    let service_account_name = match (target, &pod) {
        (Target::ServiceAccount { name, .. }, _) => name.clone(),
        (_, Some(Ok(Some(pod)))) => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        _ => "default".into(),
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(reach.client.clone(), &namespace);
    let service_account = accounts
        .get_opt(&service_account_name)
        .await
        .map_err(|e| text(&e));
    let found = service_account.as_ref().ok().and_then(Option::as_ref);
    let annotated_at = found.and_then(annotation_time);
    let bindings: Api<PodIdentityBinding> = Api::namespaced(reach.client.clone(), &namespace);
    let bindings = bindings
        .list(&ListParams::default())
        .await
        .map(|list| {
            list.items
                .into_iter()
                .filter(|b| b.spec.service_account_name == service_account_name)
                .collect()
        })
        .map_err(|e| text(&e));
    let role_arn = found
        .and_then(|a| annotation(a, ROLE_ARN))
        .map(String::from);
    // The role, and the provider STS judges its tokens by, live in the role's account.
    let iam = Iam::new(reach.iam_for(role_arn.as_deref()));
    let role = match &role_arn {
        Some(arn) => {
            let name = arn.rsplit('/').next().unwrap_or_default();
            Some(iam.get_role(name).await)
        }
        None => None,
    };
    let audience = found
        .and_then(|a| annotation(a, AUDIENCE))
        .unwrap_or(DEFAULT_AUDIENCE)
        .to_string();
    let token = match found {
        Some(_) => request_token(reach.client, &namespace, &service_account_name, &audience).await,
        None => Err("no ServiceAccount to request a token for".into()),
    };
    // STS finds the provider by the token's issuer, in the role's account.
    let provider_arn = match &token {
        Ok((_, facts)) => provider_for(&config, role_arn.as_deref(), &facts.claims.issuer),
        Err(_) => config.provider_arn(),
    };
    let provider = iam.oidc_provider(&provider_arn).await;
    let discovery = match &token {
        Ok((_, facts)) => Some(discover(reach.fetcher, &facts.claims.issuer).await),
        Err(_) => None,
    };
    let assumed = match (&role_arn, &token) {
        (Some(arn), Ok((jwt, _))) if reach.assume => Some(
            iam.assume_role_with_web_identity(
                arn,
                "podidentity-doctor",
                WebIdentityToken(jwt.clone()),
            )
            .await,
        ),
        _ => None,
    };
    let owner = bindings
        .as_ref()
        .ok()
        .and_then(|b: &Vec<PodIdentityBinding>| {
            service_account_owner(b.iter(), &namespace, &service_account_name)
        });
    let pod_identity = match owner {
        Some(owner)
            if owner
                .spec
                .identity
                .effective_mechanism(config.identity.default_mechanism)
                == Mechanism::PodIdentity =>
        {
            Some(
                gather_pod_identity(reach, &config, owner, &namespace, &service_account_name).await,
            )
        }
        _ => None,
    };
    Facts {
        pod_identity,
        config,
        namespace,
        service_account_name,
        pod,
        service_account,
        annotated_at,
        bindings,
        role,
        audience,
        token,
        provider_arn,
        provider,
        discovery,
        assumed,
    }
}

/// The association, the role the binding records, and the agent.
async fn gather_pod_identity(
    reach: &Reach<'_>,
    config: &OperatorConfig,
    owner: &PodIdentityBinding,
    namespace: &str,
    service_account: &str,
) -> PodIdentityFacts {
    let cluster = config.eks_cluster_name().to_string();
    let key = AssociationKey {
        cluster: cluster.clone(),
        namespace: namespace.into(),
        service_account: service_account.into(),
    };
    let association = async {
        for id in reach.eks.find(&key).await.map_err(|e| e.to_string())? {
            if let Some(found) = reach
                .eks
                .describe(&cluster, &id)
                .await
                .map_err(|e| e.to_string())?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
    .await;
    let role_arn = owner.status.as_ref().and_then(|s| s.role_arn.clone());
    let role = match &role_arn {
        Some(arn) => {
            let name = arn.rsplit('/').next().unwrap_or_default();
            Some(Iam::new(reach.iam_for(Some(arn))).get_role(name).await)
        }
        None => None,
    };
    let (agent_namespace, agent_name) = AGENT_DAEMON_SET;
    let agent = Api::<DaemonSet>::namespaced(reach.client.clone(), agent_namespace)
        .get_opt(agent_name)
        .await
        .map(|found| {
            found.map(|d| {
                let status = d.status.unwrap_or_default();
                (status.desired_number_scheduled, status.number_ready)
            })
        })
        .map_err(|e| e.to_string());
    PodIdentityFacts {
        cluster,
        role_arn,
        role,
        association,
        agent,
    }
}

/// The IAM OIDC provider STS judges a token of `issuer` by: in the account of
/// `role_arn`, else the configured one.
fn provider_for(config: &OperatorConfig, role_arn: Option<&str>, issuer: &str) -> String {
    let account = role_arn
        .and_then(|arn| arn.split(':').nth(4))
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| config.account_id_or_placeholder());
    config.provider_arn_for(account, issuer)
}

/// A fresh token of the ServiceAccount, as the kubelet would project it for the pod.
async fn request_token(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    audience: &str,
) -> Result<(String, TokenFacts), String> {
    let jwt = service_account_token(client, namespace, name, audience)
        .await
        .map_err(|e| {
            format!("the API server issued no token ({e}): doctor needs `create` on serviceaccounts/token")
        })?
        .ok_or("the API server answered without a token")?;
    let facts = read_token(&jwt).map_err(|e| e.to_string())?;
    Ok((jwt, facts))
}

/// The issuer's discovery document and its key set.
pub(super) async fn discover(fetcher: &Fetcher, issuer: &str) -> Result<Discovery, String> {
    let base = issuer.trim_end_matches('/');
    let url = format!("{base}/.well-known/openid-configuration");
    let document: Value = serde_json::from_slice(&fetcher.get(&url).await?)
        .map_err(|e| format!("{url} is not JSON: {e}"))?;
    let field = |key: &str| {
        document
            .get(key)
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| format!("{url} has no {key}"))
    };
    let (issuer, jwks_uri) = (field("issuer")?, field("jwks_uri")?);
    let keys: Value = serde_json::from_slice(&fetcher.get(&jwks_uri).await?)
        .map_err(|e| format!("{jwks_uri} is not JSON: {e}"))?;
    let key_ids = keys
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{jwks_uri} has no keys"))?
        .iter()
        .filter_map(|k| k.get("kid").and_then(Value::as_str).map(String::from))
        .collect();
    Ok(Discovery {
        issuer,
        jwks_uri,
        key_ids,
    })
}
