//! Counts IAM calls by operation and outcome: for metrics, for tests that must prove "no
//! IAM call was made", and for the benchmark's calls per binding.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use crate::api::{IamApi, IamRequest, IamResponse};
use crate::error::AwsError;

/// Call counts keyed by (operation, outcome), outcome being `ok` or the error kind.
#[derive(Clone, Default)]
pub struct CallLog {
    counts: Arc<Mutex<BTreeMap<(&'static str, String), u64>>>,
    writes: Arc<std::sync::atomic::AtomicU64>,
}

impl CallLog {
    fn record(&self, operation: &'static str, outcome: String, is_write: bool) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry((operation, outcome)).or_default() += 1;
        }
        if is_write {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Every count so far.
    pub fn snapshot(&self) -> BTreeMap<(&'static str, String), u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Calls of one operation, any outcome.
    pub fn calls(&self, operation: &str) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((op, _), _)| *op == operation)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    /// Calls that change IAM, attempted (whatever their outcome).
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn reset(&self) {
        if let Ok(mut counts) = self.counts.lock() {
            counts.clear();
        }
        self.writes.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

pub struct Counted<A> {
    inner: A,
    log: CallLog,
}

impl<A: IamApi> Counted<A> {
    pub fn new(inner: A, log: CallLog) -> Self {
        Self { inner, log }
    }
}

impl<A: IamApi> IamApi for Counted<A> {
    fn call(&self, request: IamRequest) -> BoxFuture<'_, Result<IamResponse, AwsError>> {
        Box::pin(async move {
            let operation = request.operation();
            let is_write = request.is_write();
            let result = self.inner.call(request).await;
            let outcome = match &result {
                Ok(_) => "ok".to_string(),
                Err(err) => format!("{:?}", err.kind),
            };
            self.log.record(operation, outcome, is_write);
            result
        })
    }
}
