//! `oidc.manage`: the cluster's IAM OIDC provider and, with `oidc.publish.s3Bucket`, the
//! issuer's discovery document and keys in S3, kept in line by the leader on a timer.
//! `documents` works out what the bucket should hold, `provider` puts the provider right,
//! `fetch` reaches the issuer's host (the thumbprint), `status_map` reports in a ConfigMap.
//! With `accounts`, the provider is kept too in each other account a PodIdentityPolicy
//! places namespaces in (the roles there trust that account's provider).

pub mod documents;
pub mod fetch;
pub mod provider;
pub mod status_map;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use podidentity_api::PodIdentityPolicy;
use podidentity_api::config::OperatorConfig;
use podidentity_aws::s3::{ObjectKey, ObjectStore};
use podidentity_aws::{Iam, IamApi};

use documents::Publication;
use fetch::Fetcher;
use provider::{ProviderOutcome, WantedProvider};
use status_map::{Finding, Report};

use crate::process::startup::api_server_document;

/// The leader's OIDC keeper: everything one pass needs, settings parsed once.
pub struct OidcKeeper {
    client: kube::Client,
    iam: Arc<dyn IamApi>,
    /// Where the documents are published, when the configuration names a bucket.
    bucket: Option<(Arc<dyn ObjectStore>, String)>,
    /// The issuer, without a trailing `/`.
    issuer: String,
    /// The provider as it should be, but for its thumbprints (found each pass).
    wanted: WantedProvider,
    interval: Duration,
    retention: Duration,
    /// Where the status ConfigMap lives (the controller's own namespace).
    namespace: String,
    fetcher: Fetcher,
    /// Each other account: its id, its provider's ARN, its IAM client.
    accounts: Vec<AccountProvider>,
}

/// The provider as another account holds it.
struct AccountProvider {
    id: String,
    arn: String,
    iam: Arc<dyn IamApi>,
}

const JSON: &str = "application/json";

fn seconds_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn failed(reason: &'static str, message: String) -> Finding {
    Finding {
        ok: false,
        reason,
        message,
    }
}

impl OidcKeeper {
    /// `config` is complete (the issuer and the account are known) and its problems were
    /// refused at start; a setting that does not parse is named here.
    pub fn new(
        client: kube::Client,
        iam: Arc<dyn IamApi>,
        bucket: Option<(Arc<dyn ObjectStore>, String)>,
        config: &OperatorConfig,
        namespace: String,
        fetcher: Fetcher,
    ) -> Result<Self, String> {
        let interval = config.oidc_check_interval().map_err(|p| p.to_string())?;
        let retention = config.key_retention().map_err(|p| p.to_string())?;
        let issuer = config
            .oidc
            .issuer_url
            .clone()
            .ok_or("oidc.manage needs the issuer: set oidc.issuerUrl")?
            .trim_end_matches('/')
            .to_string();
        let wanted = WantedProvider {
            arn: config.provider_arn(),
            url: issuer.clone(),
            client_ids: config.provider_client_ids(),
            thumbprints: config.oidc.thumbprints.clone(),
            cluster: config.cluster_name.clone(),
            cluster_uid: config.cluster_uid.clone(),
        };
        Ok(Self {
            client,
            iam,
            bucket,
            issuer,
            wanted,
            interval,
            retention,
            namespace,
            fetcher,
            accounts: Vec::new(),
        })
    }

    /// Keeps the provider in another account too, through `iam` (credentials assumed into
    /// it), whenever a PodIdentityPolicy places namespaces there.
    pub fn with_account(mut self, id: &str, iam: Arc<dyn IamApi>, config: &OperatorConfig) -> Self {
        self.accounts.push(AccountProvider {
            id: id.to_string(),
            arn: config.in_account(Some(id)).provider_arn(),
            iam,
        });
        self
    }

    /// Passes forever, `oidc.checkInterval` apart; each logs what went wrong and reports
    /// it in the ConfigMap, and the next one tries again.
    pub async fn keep(self) {
        loop {
            if let Err(err) = self.pass().await {
                tracing::warn!(error = %err, "the OIDC status ConfigMap could not be written");
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    /// One pass: publish (so STS finds the keys before anything trusts the provider),
    /// then the provider, then the report. Errors are the report's; only writing the
    /// report itself can fail the pass.
    pub async fn pass(&self) -> Result<(), kube::Error> {
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let existing = maps.get_opt(status_map::STATUS_CONFIG_MAP).await?;
        let mut report = Report::default();
        report.facts.insert("issuer", self.issuer.clone());
        report.facts.insert("providerArn", self.wanted.arn.clone());
        report.retired_keys = status_map::retired_keys(existing.as_ref());
        if let Some((store, bucket)) = &self.bucket {
            report.publication = Some(self.publish(store.as_ref(), bucket, &mut report).await);
        }
        report.provider = Some(self.provider(&mut report).await);
        let data = status_map::data(
            &report,
            existing.as_ref(),
            &Time(k8s_openapi::jiff::Timestamp::now()),
        );
        status_map::write(&maps, existing.as_ref(), data).await
    }

    async fn served(&self, path: &str) -> Result<Vec<u8>, String> {
        api_server_document(&self.client, path)
            .await
            .map(String::into_bytes)
    }

    async fn publish(&self, store: &dyn ObjectStore, bucket: &str, report: &mut Report) -> Finding {
        let served = async {
            Ok::<_, String>((
                self.served("/.well-known/openid-configuration").await?,
                self.served("/openid/v1/jwks").await?,
            ))
        };
        let (served_discovery, served_keys) = match served.await {
            Ok(served) => served,
            Err(message) => return failed("ApiServerUnreadable", message),
        };
        let (discovery_key, key_set_key) = documents::object_keys(&self.issuer);
        let object = |key: String| ObjectKey {
            bucket: bucket.to_string(),
            key,
        };
        let (discovery_object, key_set_object) = (object(discovery_key), object(key_set_key));
        report
            .facts
            .insert("discoveryObject", discovery_object.to_string());
        report
            .facts
            .insert("keySetObject", key_set_object.to_string());
        let published = async {
            Ok::<_, podidentity_aws::AwsError>((
                store.get(&discovery_object).await?,
                store.get(&key_set_object).await?,
            ))
        };
        let (published_discovery, published_keys) = match published.await {
            Ok(found) => found,
            Err(err) => return failed("BucketUnreadable", format!("{bucket}: {err}")),
        };
        let planned = match documents::plan(
            &self.issuer,
            &served_discovery,
            &served_keys,
            published_keys.as_deref(),
            &report.retired_keys,
            seconds_now(),
            self.retention,
        ) {
            Ok(planned) => planned,
            Err(err) => return failed("IssuerMismatch", err.0),
        };
        report.facts.insert("keyIds", planned.key_ids.join(","));
        report.retired_keys = planned.retired.clone();
        match self
            .put_changed(
                store,
                &planned,
                &discovery_object,
                &key_set_object,
                published_discovery,
                published_keys,
            )
            .await
        {
            Ok(0) => Finding {
                ok: true,
                reason: "InSync",
                message: published_message(&planned, &key_set_object),
            },
            Ok(_) => {
                tracing::info!(keys = %planned.key_ids.join(","), bucket, "published the issuer's discovery document and keys");
                Finding {
                    ok: true,
                    reason: "Published",
                    message: published_message(&planned, &key_set_object),
                }
            }
            Err(err) => failed("BucketUnwritable", format!("{bucket}: {err}")),
        }
    }

    /// Puts each document that differs from the bucket's; how many were put.
    async fn put_changed(
        &self,
        store: &dyn ObjectStore,
        planned: &Publication,
        discovery_object: &ObjectKey,
        key_set_object: &ObjectKey,
        published_discovery: Option<Vec<u8>>,
        published_keys: Option<Vec<u8>>,
    ) -> Result<usize, podidentity_aws::AwsError> {
        let mut put = 0;
        for (object, wanted, found) in [
            (discovery_object, &planned.discovery, published_discovery),
            (key_set_object, &planned.key_set, published_keys),
        ] {
            if found.as_ref() != Some(wanted) {
                store.put(object, wanted.clone(), JSON).await?;
                put += 1;
            }
        }
        Ok(put)
    }

    async fn provider(&self, report: &mut Report) -> Finding {
        let thumbprints = match self.wanted.thumbprints.is_empty() {
            false => self.wanted.thumbprints.clone(),
            true => match self.fetcher.thumbprint(&self.issuer).await {
                Ok(thumbprint) => vec![thumbprint],
                Err(message) => {
                    return failed(
                        "ThumbprintUnavailable",
                        format!(
                            "{message}; the provider is left as it is. Make the issuer's host \
                             reachable from the controller (oidc.connectTo; oidc.issuerCa for a \
                             private CA) or set oidc.thumbprints"
                        ),
                    );
                }
            },
        };
        report.facts.insert("thumbprints", thumbprints.join(","));
        let wanted = WantedProvider {
            thumbprints,
            ..self.wanted.clone()
        };
        report
            .facts
            .insert("clientIds", wanted.client_ids.join(","));
        let own = keep_provider(self.iam.as_ref(), &wanted).await;
        if self.accounts.is_empty() {
            return own;
        }
        let placed = match self.placed_accounts().await {
            Ok(placed) => placed,
            Err(message) => return failed("PoliciesUnreadable", message),
        };
        let mut findings = BTreeMap::new();
        for account in self.accounts.iter().filter(|a| placed.contains(&a.id)) {
            let theirs = WantedProvider {
                arn: account.arn.clone(),
                ..wanted.clone()
            };
            let finding = keep_provider(account.iam.as_ref(), &theirs).await;
            findings.insert(account.id.clone(), finding);
        }
        report.facts.insert(
            "accountProviders",
            findings
                .iter()
                .map(|(id, f)| format!("{id}: {} ({})", f.reason, f.message))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        combined(own, &findings)
    }

    /// The accounts PodIdentityPolicies place namespaces in.
    async fn placed_accounts(&self) -> Result<BTreeSet<String>, String> {
        let policies: Api<PodIdentityPolicy> = Api::all(self.client.clone());
        let list = policies.list(&ListParams::default()).await.map_err(|e| {
            format!("cannot list PodIdentityPolicies to find the placed accounts: {e}")
        })?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|p| p.spec.account)
            .collect())
    }
}

/// The own account's finding, and each other account's: ready only when all are, the
/// first that is not saying why.
fn combined(own: Finding, others: &BTreeMap<String, Finding>) -> Finding {
    let failing = std::iter::once(&own)
        .chain(others.values())
        .find(|f| !f.ok)
        .map(|f| f.reason);
    let mut message = own.message.clone();
    for (id, finding) in others {
        message.push_str(&format!("; account {id}: {}", finding.message));
    }
    Finding {
        ok: failing.is_none(),
        reason: failing.unwrap_or(own.reason),
        message,
    }
}

/// Puts one account's provider right, and says what it found.
async fn keep_provider(iam: &dyn IamApi, wanted: &WantedProvider) -> Finding {
    let iam = Iam::new(iam);
    match provider::ensure(&iam, wanted).await {
        Ok(ProviderOutcome::Created) => {
            tracing::info!(arn = %wanted.arn, "created the IAM OIDC provider");
            Finding {
                ok: true,
                reason: "Created",
                message: format!("created {}", wanted.arn),
            }
        }
        Ok(ProviderOutcome::Updated(changes)) => {
            tracing::info!(arn = %wanted.arn, changes = %changes.join("; "), "put the IAM OIDC provider right");
            Finding {
                ok: true,
                reason: "Updated",
                message: format!("{}: {}", wanted.arn, changes.join("; ")),
            }
        }
        Ok(ProviderOutcome::InSync) => Finding {
            ok: true,
            reason: "InSync",
            message: format!("{} matches", wanted.arn),
        },
        Ok(ProviderOutcome::Foreign(tags)) => failed(
            "ForeignProvider",
            format!(
                "{} exists but is not this cluster's (tags {tags:?}); it is left as it is. \
                     Tag it {}={} to hand it to the operator, or set oidc.manage: false",
                wanted.arn,
                podidentity_api::annotations::TAG_CLUSTER,
                wanted.cluster
            ),
        ),
        Err(err) => failed("AwsError", format!("{}: {err}", wanted.arn)),
    }
}

fn published_message(planned: &Publication, key_set: &ObjectKey) -> String {
    let mut message = format!("{} key(s) at {key_set}", planned.key_ids.len());
    if !planned.retired.is_empty() {
        let retired: Vec<&str> = planned.retired.keys().map(String::as_str).collect();
        message.push_str(&format!(
            "; kept though the API server no longer serves them: {}",
            retired.join(",")
        ));
    }
    message
}
