//! Fault injection between IAM calls, for tests that prove convergence: scripted errors
//! (throttling, 5xx, timeouts) on chosen operations, and "crashes" that stop a pass after
//! a given call has gone through.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::api::{IamApi, IamRequest, IamResponse};
use crate::error::{AwsError, ErrorKind};

#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this error instead of calling IAM.
    Fail(ErrorKind),
    /// Wait, then answer as a timed-out call (IAM never saw it).
    Hang(Duration),
    /// Let the call through to IAM, then report a dropped connection: the change happened
    /// but the caller does not know it.
    SucceedThenDrop,
}

struct Rule {
    operation: &'static str,
    /// Calls of `operation` to let through before the fault fires.
    skip: u32,
    fault: Fault,
}

pub struct Faulty<A> {
    inner: A,
    rules: Mutex<VecDeque<Rule>>,
}

impl<A: IamApi> Faulty<A> {
    pub fn new(inner: A) -> Self {
        Self {
            inner,
            rules: Mutex::new(VecDeque::new()),
        }
    }

    /// The next call of `operation` meets `fault` (once).
    pub fn inject(&self, operation: &'static str, fault: Fault) {
        self.inject_after(operation, 0, fault);
    }

    /// After `skip` calls of `operation` succeed, the next one meets `fault` (once).
    pub fn inject_after(&self, operation: &'static str, skip: u32, fault: Fault) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.push_back(Rule {
                operation,
                skip,
                fault,
            });
        }
    }

    /// Faults that have not fired yet.
    pub fn pending(&self) -> usize {
        self.rules.lock().map(|r| r.len()).unwrap_or(0)
    }

    fn take(&self, operation: &'static str) -> Option<Fault> {
        let mut rules = self.rules.lock().ok()?;
        let index = rules.iter().position(|r| r.operation == operation)?;
        let rule = rules.get_mut(index)?;
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        rules.remove(index).map(|r| r.fault)
    }
}

impl<A: IamApi> IamApi for Faulty<A> {
    fn call(&self, request: IamRequest) -> BoxFuture<'_, Result<IamResponse, AwsError>> {
        Box::pin(async move {
            let operation = request.operation();
            match self.take(operation) {
                None => self.inner.call(request).await,
                Some(Fault::Fail(kind)) => Err(AwsError::new(kind, operation, "injected fault")),
                Some(Fault::Hang(duration)) => {
                    tokio::time::sleep(duration).await;
                    Err(AwsError::new(
                        ErrorKind::Unavailable,
                        operation,
                        "injected timeout",
                    ))
                }
                Some(Fault::SucceedThenDrop) => {
                    let _ = self.inner.call(request).await;
                    Err(AwsError::new(
                        ErrorKind::Unavailable,
                        operation,
                        "injected dropped connection after the call",
                    ))
                }
            }
        })
    }
}
