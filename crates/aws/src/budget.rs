//! One request budget for the whole process: every reconcile draws from it, so a burst of
//! bindings cannot push IAM into throttling everyone (IAM's own limits are per account).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::api::{IamApi, IamRequest, IamResponse};
use crate::error::AwsError;

/// Told how long each call waited for the budget (zero when it had room).
pub type WaitObserver = Arc<dyn Fn(Duration) + Send + Sync>;

pub struct Budgeted<A> {
    inner: A,
    limiter: Arc<DefaultDirectRateLimiter>,
    on_wait: Option<WaitObserver>,
}

impl<A: IamApi> Budgeted<A> {
    /// At most `per_second` calls per second on average, bursts of up to one second's worth.
    pub fn new(inner: A, per_second: f64) -> Self {
        let per_second = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else {
            1.0
        };
        let period = Duration::from_secs_f64(1.0 / per_second);
        let burst = NonZeroU32::new(per_second.ceil().clamp(1.0, f64::from(u32::MAX)) as u32)
            .unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .map_or(Quota::per_second(NonZeroU32::MIN), |q| q.allow_burst(burst));
        Self {
            inner,
            limiter: Arc::new(RateLimiter::direct(quota)),
            on_wait: None,
        }
    }

    /// Tells `observer` how long each call waited for the budget (the metrics' budget
    /// waits: a budget set too low shows as calls waiting, not as IAM throttling).
    pub fn observing_waits(mut self, observer: WaitObserver) -> Self {
        self.on_wait = Some(observer);
        self
    }
}

impl<A: IamApi> IamApi for Budgeted<A> {
    fn call(&self, request: IamRequest) -> BoxFuture<'_, Result<IamResponse, AwsError>> {
        Box::pin(async move {
            let asked = tokio::time::Instant::now();
            self.limiter.until_ready().await;
            if let Some(observer) = &self.on_wait {
                observer(asked.elapsed());
            }
            self.inner.call(request).await
        })
    }
}
