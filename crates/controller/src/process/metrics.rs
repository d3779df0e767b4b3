//! Controller metrics: reconciles, errors by reason, IAM and EKS calls by operation and
//! outcome, drift corrections, bindings by Ready status, reconcile duration, the cluster's
//! Pod Identity associations against their quota.

use futures::future::BoxFuture;
use podidentity_aws::api::{IamApi, IamRequest, IamResponse};
use podidentity_aws::eks::{
    Association, AssociationApi, AssociationKey, AssociationOptions, NewAssociation,
};
use podidentity_aws::error::AwsError;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub operation: &'static str,
    pub outcome: String,
    /// The AWS account the call acted in.
    pub account: String,
}

/// The account a client's calls are counted under: another account's id from the start;
/// the operator's own once start-up has it (from the configuration or STS), since that
/// client is what asks STS.
#[derive(Clone, Debug, Default)]
pub struct AccountLabel(std::sync::Arc<std::sync::OnceLock<String>>);

impl AccountLabel {
    pub fn of(account: &str) -> Self {
        let label = Self::default();
        label.set(account);
        label
    }

    /// Names the account (once; later calls change nothing).
    pub fn set(&self, account: &str) {
        let _ = self.0.set(account.to_string());
    }

    fn value(&self) -> String {
        self.0.get().cloned().unwrap_or_default()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    /// The IAM role's name: only roles found out of line get a series, so alerts can
    /// tell one role put back again and again (something fights the operator over it).
    pub role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountOnly {
    pub account: String,
}

/// Budget waits from 1 ms to about 33 s.
fn budget_wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabel {
    pub ready: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ResultLabel, Counter>,
    pub errors: Family<ReasonLabel, Counter>,
    pub iam_calls: Family<CallLabels, Counter>,
    pub drift_corrections: Family<RoleLabel, Counter>,
    /// How long IAM calls waited for the request budget, by account.
    pub budget_waits: Family<AccountOnly, Histogram, fn() -> Histogram>,
    pub bindings: Family<ReadyLabel, Gauge>,
    pub reconcile_duration: Histogram,
    /// The cluster's EKS Pod Identity associations, as last counted (with this process's
    /// own writes since).
    pub eks_associations: Gauge,
    /// How many it may have (`eks.maxAssociations`).
    pub eks_association_quota: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("podidentity");
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Binding reconcile passes by result",
            reconciles.clone(),
        );
        let errors = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed passes by reason",
            errors.clone(),
        );
        let iam_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "iam_calls",
            "IAM, STS and EKS calls by operation (EKS's prefixed EKS:) and outcome",
            iam_calls.clone(),
        );
        let drift_corrections = Family::<RoleLabel, Counter>::default();
        registry.register(
            "drift_corrections",
            "Roles (and associations, by their role) found changed or deleted outside the operator, and put back",
            drift_corrections.clone(),
        );
        let budget_waits: Family<AccountOnly, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(budget_wait_histogram);
        registry.register(
            "iam_budget_wait_seconds",
            "How long each IAM call waited for the request budget (aws.maxRequestsPerSecond), by account",
            budget_waits.clone(),
        );
        let bindings = Family::<ReadyLabel, Gauge>::default();
        registry.register("bindings", "Bindings by Ready status", bindings.clone());
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Time of one reconcile pass",
            reconcile_duration.clone(),
        );
        let eks_associations = Gauge::default();
        registry.register(
            "eks_pod_identity_associations",
            "The cluster's EKS Pod Identity associations, as last counted",
            eks_associations.clone(),
        );
        let eks_association_quota = Gauge::default();
        registry.register(
            "eks_pod_identity_association_quota",
            "How many EKS Pod Identity associations the cluster may have (eks.maxAssociations)",
            eks_association_quota.clone(),
        );
        Self {
            budget_waits,
            eks_associations,
            eks_association_quota,
            registry,
            reconciles,
            errors,
            iam_calls,
            drift_corrections,
            bindings,
            reconcile_duration,
        }
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// A role found out of line (and flagged for its binding's pass to put back).
    pub fn drift_found(&self, role: &str) {
        self.drift_corrections
            .get_or_create(&RoleLabel {
                role: role.to_string(),
            })
            .inc();
    }

    /// What a request budget tells of its waits, into `account`'s histogram.
    pub fn budget_wait_observer(
        &self,
        account: AccountLabel,
    ) -> podidentity_aws::budget::WaitObserver {
        let waits = self.budget_waits.clone();
        std::sync::Arc::new(move |waited: std::time::Duration| {
            waits
                .get_or_create(&AccountOnly {
                    account: account.value(),
                })
                .observe(waited.as_secs_f64());
        })
    }
}

/// Counts every IAM call into the metrics.
pub struct Metered<A> {
    inner: A,
    metrics: std::sync::Arc<Metrics>,
    account: AccountLabel,
}

impl<A: IamApi> Metered<A> {
    pub fn new(inner: A, metrics: std::sync::Arc<Metrics>, account: AccountLabel) -> Self {
        Self {
            inner,
            metrics,
            account,
        }
    }
}

impl<A: IamApi> IamApi for Metered<A> {
    fn call(&self, request: IamRequest) -> BoxFuture<'_, Result<IamResponse, AwsError>> {
        Box::pin(async move {
            let operation = request.operation();
            let result = self.inner.call(request).await;
            let outcome = match &result {
                Ok(_) => "ok".to_string(),
                Err(err) => format!("{:?}", err.kind),
            };
            let account = self.account.value();
            self.metrics
                .iam_calls
                .get_or_create(&CallLabels {
                    operation,
                    outcome,
                    account,
                })
                .inc();
            result
        })
    }
}

/// Counts every EKS call into the metrics (`iam_calls`, operations `EKS:...`).
pub struct MeteredEks<A> {
    inner: A,
    metrics: std::sync::Arc<Metrics>,
    account: AccountLabel,
}

impl<A: AssociationApi> MeteredEks<A> {
    pub fn new(inner: A, metrics: std::sync::Arc<Metrics>, account: AccountLabel) -> Self {
        Self {
            inner,
            metrics,
            account,
        }
    }

    fn count<T>(&self, operation: &'static str, result: &Result<T, AwsError>) {
        let outcome = match result {
            Ok(_) => "ok".to_string(),
            Err(err) => format!("{:?}", err.kind),
        };
        self.metrics
            .iam_calls
            .get_or_create(&CallLabels {
                operation,
                outcome,
                account: self.account.value(),
            })
            .inc();
    }
}

impl<A: AssociationApi> AssociationApi for MeteredEks<A> {
    fn create<'a>(
        &'a self,
        new: &'a NewAssociation,
    ) -> BoxFuture<'a, Result<Association, AwsError>> {
        Box::pin(async move {
            let result = self.inner.create(new).await;
            self.count("EKS:CreatePodIdentityAssociation", &result);
            result
        })
    }
    fn describe<'a>(
        &'a self,
        cluster: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Association>, AwsError>> {
        Box::pin(async move {
            let result = self.inner.describe(cluster, id).await;
            self.count("EKS:DescribePodIdentityAssociation", &result);
            result
        })
    }
    fn update<'a>(
        &'a self,
        cluster: &'a str,
        id: &'a str,
        options: &'a AssociationOptions,
    ) -> BoxFuture<'a, Result<Association, AwsError>> {
        Box::pin(async move {
            let result = self.inner.update(cluster, id, options).await;
            self.count("EKS:UpdatePodIdentityAssociation", &result);
            result
        })
    }
    fn delete<'a>(&'a self, cluster: &'a str, id: &'a str) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let result = self.inner.delete(cluster, id).await;
            self.count("EKS:DeletePodIdentityAssociation", &result);
            result
        })
    }
    fn find<'a>(&'a self, key: &'a AssociationKey) -> BoxFuture<'a, Result<Vec<String>, AwsError>> {
        Box::pin(async move {
            let result = self.inner.find(key).await;
            self.count("EKS:ListPodIdentityAssociations", &result);
            result
        })
    }
    fn count<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<usize, AwsError>> {
        Box::pin(async move {
            let result = self.inner.count(cluster).await;
            MeteredEks::count(self, "EKS:ListPodIdentityAssociations", &result);
            result
        })
    }
    fn ids<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<Vec<String>, AwsError>> {
        Box::pin(async move {
            let result = self.inner.ids(cluster).await;
            self.count("EKS:ListPodIdentityAssociations", &result);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exported() {
        let metrics = Metrics::new();
        metrics
            .reconciles
            .get_or_create(&ResultLabel { result: "ok" })
            .inc();
        metrics
            .errors
            .get_or_create(&ReasonLabel {
                reason: "AwsThrottled",
            })
            .inc();
        metrics
            .iam_calls
            .get_or_create(&CallLabels {
                operation: "CreateRole",
                outcome: "ok".into(),
                account: "444455556666".into(),
            })
            .inc();
        metrics.drift_found("app-role");
        (metrics.budget_wait_observer(AccountLabel::of("444455556666")))(
            std::time::Duration::from_millis(250),
        );
        metrics
            .bindings
            .get_or_create(&ReadyLabel { ready: "true" })
            .set(3);
        metrics.reconcile_duration.observe(0.01);
        let text = metrics.encode();
        for line in [
            "podidentity_reconciles_total{result=\"ok\"} 1",
            "podidentity_reconcile_errors_total{reason=\"AwsThrottled\"} 1",
            "podidentity_iam_calls_total{operation=\"CreateRole\",outcome=\"ok\",account=\"444455556666\"} 1",
            "podidentity_drift_corrections_total{role=\"app-role\"} 1",
            "podidentity_iam_budget_wait_seconds_count{account=\"444455556666\"} 1",
            "podidentity_bindings{ready=\"true\"} 3",
            "podidentity_reconcile_duration_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
