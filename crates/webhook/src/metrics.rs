//! Webhook metrics: admissions by outcome and their latency.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::admission::Outcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    admissions: Family<OutcomeLabel, Counter>,
    latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("podidentity_webhook");
        let admissions = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "admissions",
            "Pod admissions by outcome",
            admissions.clone(),
        );
        // 50µs .. ~1.6s: cache hits take microseconds, a live GET up to its timeout.
        let latency = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.000_05, 2.0, 16,
        ));
        registry.register(
            "admission_duration_seconds",
            "Time to answer one admission",
            latency.clone(),
        );
        Self {
            registry,
            admissions,
            latency,
        }
    }

    pub fn record(&self, outcome: Outcome, seconds: f64) {
        self.admissions
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .inc();
        self.latency.observe(seconds);
    }

    pub fn admissions(&self, outcome: Outcome) -> u64 {
        self.admissions
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .get()
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
