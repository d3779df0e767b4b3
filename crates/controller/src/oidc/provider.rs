//! The cluster's IAM OIDC identity provider, kept in line: made when missing, its client
//! ids and thumbprints put right in place (never deleted and made again: that would break
//! every role's trust for a moment), tagged as this cluster's. A provider without this
//! cluster's tag was made by someone else and is never changed.

use std::collections::BTreeMap;

use podidentity_api::annotations::{TAG_CLUSTER, TAG_CLUSTER_UID};
use podidentity_aws::{AwsError, ErrorKind, Iam, IamRequest, NewOidcProvider, OidcProvider};

/// What the provider should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedProvider {
    pub arn: String,
    /// The issuer, `https://` included.
    pub url: String,
    pub client_ids: Vec<String>,
    pub thumbprints: Vec<String>,
    pub cluster: String,
    pub cluster_uid: Option<String>,
}

/// What a pass found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderOutcome {
    Created,
    /// What was changed, in words.
    Updated(Vec<String>),
    InSync,
    /// Someone else's provider for this issuer: left as it is. Its tags, to say whose.
    Foreign(BTreeMap<String, String>),
}

impl WantedProvider {
    fn tags(&self) -> BTreeMap<String, String> {
        let mut tags = BTreeMap::from([(TAG_CLUSTER.to_string(), self.cluster.clone())]);
        if let Some(uid) = &self.cluster_uid {
            tags.insert(TAG_CLUSTER_UID.to_string(), uid.clone());
        }
        tags
    }

    /// Ours: the cluster tag is this cluster's name, and the uid tag (when both sides
    /// know one) this cluster's uid, as for roles.
    fn owns(&self, found: &OidcProvider) -> bool {
        found.tags.get(TAG_CLUSTER) == Some(&self.cluster)
            && match (found.tags.get(TAG_CLUSTER_UID), &self.cluster_uid) {
                (Some(found), Some(ours)) => found == ours,
                _ => true,
            }
    }
}

fn same_thumbprints(found: &[String], wanted: &[String]) -> bool {
    let normal = |list: &[String]| {
        let mut list: Vec<String> = list.iter().map(|t| t.to_ascii_lowercase()).collect();
        list.sort();
        list.dedup();
        list
    };
    normal(found) == normal(wanted)
}

/// Reads the provider and puts it right.
pub async fn ensure(iam: &Iam<'_>, wanted: &WantedProvider) -> Result<ProviderOutcome, AwsError> {
    let found = match iam.oidc_provider(&wanted.arn).await {
        Ok(found) => found,
        Err(err) if err.kind == ErrorKind::NotFound => {
            let made = iam
                .create_oidc_provider(NewOidcProvider {
                    url: wanted.url.clone(),
                    client_ids: wanted.client_ids.clone(),
                    thumbprints: wanted.thumbprints.clone(),
                    tags: wanted.tags(),
                })
                .await;
            match made {
                Ok(_) => return Ok(ProviderOutcome::Created),
                // Made between the read and now (by another tool, or a replica before
                // us): judge what is there.
                Err(err) if err.kind == ErrorKind::AlreadyExists => {
                    iam.oidc_provider(&wanted.arn).await?
                }
                Err(err) => return Err(err),
            }
        }
        Err(err) => return Err(err),
    };
    if !wanted.owns(&found) {
        return Ok(ProviderOutcome::Foreign(found.tags));
    }
    let mut changed = Vec::new();
    for client_id in &wanted.client_ids {
        if !found.client_ids.contains(client_id) {
            iam.run(IamRequest::AddClientIdToOpenIdConnectProvider {
                arn: wanted.arn.clone(),
                client_id: client_id.clone(),
            })
            .await?;
            changed.push(format!("client id {client_id} added"));
        }
    }
    if !same_thumbprints(&found.thumbprints, &wanted.thumbprints) {
        iam.run(IamRequest::UpdateOpenIdConnectProviderThumbprint {
            arn: wanted.arn.clone(),
            thumbprints: wanted.thumbprints.clone(),
        })
        .await?;
        changed.push(format!(
            "thumbprints {} → {}",
            found.thumbprints.join(","),
            wanted.thumbprints.join(",")
        ));
    }
    let missing_tags: BTreeMap<String, String> = wanted
        .tags()
        .into_iter()
        .filter(|(key, value)| found.tags.get(key) != Some(value))
        .collect();
    if !missing_tags.is_empty() {
        let keys: Vec<String> = missing_tags.keys().cloned().collect();
        iam.run(IamRequest::TagOpenIdConnectProvider {
            arn: wanted.arn.clone(),
            tags: missing_tags,
        })
        .await?;
        changed.push(format!("tags {} added", keys.join(",")));
    }
    Ok(match changed.is_empty() {
        true => ProviderOutcome::InSync,
        false => ProviderOutcome::Updated(changed),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::future::BoxFuture;
    use podidentity_aws::{IamApi, IamResponse};

    use super::*;

    /// One provider in memory, at [`ARN`] (moto has no AddClientIDToOpenIDConnectProvider).
    #[derive(Default)]
    struct OneProvider {
        provider: Mutex<Option<OidcProvider>>,
        writes: Mutex<Vec<&'static str>>,
    }

    const ARN: &str = "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/ABC";

    /// The ARN a request names, if it names one.
    fn arn_of(request: &IamRequest) -> Option<&str> {
        match request {
            IamRequest::GetOpenIdConnectProvider { arn }
            | IamRequest::UpdateOpenIdConnectProviderThumbprint { arn, .. }
            | IamRequest::AddClientIdToOpenIdConnectProvider { arn, .. }
            | IamRequest::TagOpenIdConnectProvider { arn, .. } => Some(arn),
            _ => None,
        }
    }

    impl IamApi for OneProvider {
        fn call(&self, request: IamRequest) -> BoxFuture<'_, Result<IamResponse, AwsError>> {
            let op = request.operation();
            if arn_of(&request).is_some_and(|arn| arn != ARN) {
                let answer = Err(AwsError::new(ErrorKind::NotFound, op, "another ARN"));
                return Box::pin(async move { answer });
            }
            let mut slot = self.provider.lock().unwrap_or_else(|e| e.into_inner());
            if request.is_write() {
                self.writes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(op);
            }
            let answer = match (request, slot.as_mut()) {
                (IamRequest::GetOpenIdConnectProvider { .. }, Some(found)) => {
                    Ok(IamResponse::Provider(found.clone()))
                }
                (IamRequest::GetOpenIdConnectProvider { .. }, None) => {
                    Err(AwsError::new(ErrorKind::NotFound, op, "no such provider"))
                }
                (IamRequest::CreateOpenIdConnectProvider(new), None) => {
                    let url: String = new.url.trim_start_matches("https://").into();
                    let arn = format!("arn:aws:iam::111122223333:oidc-provider/{url}");
                    *slot = Some(OidcProvider {
                        url,
                        client_ids: new.client_ids,
                        thumbprints: new.thumbprints,
                        tags: new.tags,
                    });
                    Ok(IamResponse::Created(arn))
                }
                (IamRequest::AddClientIdToOpenIdConnectProvider { client_id, .. }, Some(found)) => {
                    found.client_ids.push(client_id);
                    Ok(IamResponse::Done)
                }
                (
                    IamRequest::UpdateOpenIdConnectProviderThumbprint { thumbprints, .. },
                    Some(found),
                ) => {
                    found.thumbprints = thumbprints;
                    Ok(IamResponse::Done)
                }
                (IamRequest::TagOpenIdConnectProvider { tags, .. }, Some(found)) => {
                    found.tags.extend(tags);
                    Ok(IamResponse::Done)
                }
                _ => Err(AwsError::new(ErrorKind::Other, op, "unexpected")),
            };
            Box::pin(async move { answer })
        }
    }

    fn wanted() -> WantedProvider {
        WantedProvider {
            arn: ARN.into(),
            url: "https://oidc.example.com/id/ABC".into(),
            client_ids: vec!["sts.amazonaws.com".into()],
            thumbprints: vec!["aa".repeat(20)],
            cluster: "prod".into(),
            cluster_uid: Some("uid-1".into()),
        }
    }

    async fn outcome(iam: &Iam<'_>, wanted: &WantedProvider) -> ProviderOutcome {
        ensure(iam, wanted).await.unwrap_or_else(|e| panic!("{e}"))
    }

    fn writes(iam: &OneProvider) -> Vec<&'static str> {
        std::mem::take(&mut *iam.writes.lock().unwrap_or_else(|e| e.into_inner()))
    }

    #[tokio::test]
    async fn made_once_then_left_alone() {
        let api = OneProvider::default();
        let iam = Iam::new(&api);
        assert_eq!(outcome(&iam, &wanted()).await, ProviderOutcome::Created);
        assert_eq!(writes(&api), vec!["CreateOpenIDConnectProvider"]);
        assert_eq!(outcome(&iam, &wanted()).await, ProviderOutcome::InSync);
        assert!(writes(&api).is_empty());
        let made = api
            .provider
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        assert_eq!(
            made.map(|p| p.url),
            Some("oidc.example.com/id/ABC".to_string())
        );
    }

    #[tokio::test]
    async fn client_ids_thumbprints_and_tags_are_put_right_in_place() {
        let api = OneProvider {
            provider: Mutex::new(Some(OidcProvider {
                url: "oidc.example.com/id/ABC".into(),
                client_ids: vec!["vault".into()],
                thumbprints: vec!["bb".repeat(20)],
                tags: BTreeMap::from([(TAG_CLUSTER.to_string(), "prod".to_string())]),
            })),
            ..OneProvider::default()
        };
        let iam = Iam::new(&api);
        let ProviderOutcome::Updated(changes) = outcome(&iam, &wanted()).await else {
            panic!("not updated");
        };
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert_eq!(
            writes(&api),
            vec![
                "AddClientIDToOpenIDConnectProvider",
                "UpdateOpenIDConnectProviderThumbprint",
                "TagOpenIDConnectProvider"
            ]
        );
        let now = api
            .provider
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let now = now.unwrap_or_default();
        // A client id someone added stays: a binding may use it as its audience.
        assert_eq!(now.client_ids, vec!["vault", "sts.amazonaws.com"]);
        assert_eq!(now.thumbprints, wanted().thumbprints);
        // Thumbprints in another case are the same thumbprints.
        let mut upper = wanted();
        upper.thumbprints = vec!["AA".repeat(20)];
        assert_eq!(outcome(&iam, &upper).await, ProviderOutcome::InSync);
    }

    #[tokio::test]
    async fn someone_elses_provider_is_never_changed() {
        for tags in [
            BTreeMap::from([(
                "alpha.eksctl.io/cluster-name".to_string(),
                "prod".to_string(),
            )]),
            BTreeMap::from([(TAG_CLUSTER.to_string(), "staging".to_string())]),
            BTreeMap::from([
                (TAG_CLUSTER.to_string(), "prod".to_string()),
                (TAG_CLUSTER_UID.to_string(), "another-uid".to_string()),
            ]),
        ] {
            let api = OneProvider {
                provider: Mutex::new(Some(OidcProvider {
                    url: "oidc.example.com/id/ABC".into(),
                    client_ids: vec![],
                    thumbprints: vec![],
                    tags: tags.clone(),
                })),
                ..OneProvider::default()
            };
            let iam = Iam::new(&api);
            assert_eq!(
                outcome(&iam, &wanted()).await,
                ProviderOutcome::Foreign(tags)
            );
            assert!(writes(&api).is_empty());
        }
    }
}
