//! The wrappers every IAM call goes through: the shared request budget, the call log and
//! fault injection, around an in-memory IAM that answers every call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use podidentity_aws::api::{Iam, IamApi, IamRequest, IamResponse};
use podidentity_aws::budget::Budgeted;
use podidentity_aws::counting::{CallLog, Counted};
use podidentity_aws::error::{AwsError, ErrorKind};
use podidentity_aws::faults::{Fault, Faulty};

/// Answers every call with success and counts what reached it.
#[derive(Default)]
struct Answering {
    reached: AtomicUsize,
}

impl IamApi for Answering {
    fn call(&self, request: IamRequest) -> BoxFuture<'_, Result<IamResponse, AwsError>> {
        self.reached.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            Ok(match request {
                IamRequest::ListRolePolicies { .. } => IamResponse::Names(vec![]),
                _ => IamResponse::Done,
            })
        })
    }
}

fn delete(name: &str) -> IamRequest {
    IamRequest::DeleteRole { name: name.into() }
}

#[tokio::test]
async fn the_budget_spaces_calls_out_beyond_its_burst() {
    let budgeted = Budgeted::new(Answering::default(), 20.0);
    let started = Instant::now();
    for i in 0..40 {
        Iam::new(&budgeted)
            .run(delete(&format!("r{i}")))
            .await
            .unwrap_or_else(|err| panic!("{err}"));
    }
    // 20 go at once (the burst), the next 20 at 20 per second: at least ~1 second.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_budget_tells_how_long_each_call_waited() {
    let waits = Arc::new(std::sync::Mutex::new(Vec::new()));
    let observed = waits.clone();
    let budgeted =
        Budgeted::new(Answering::default(), 10.0).observing_waits(Arc::new(move |waited| {
            if let Ok(mut waits) = observed.lock() {
                waits.push(waited);
            }
        }));
    for i in 0..12 {
        Iam::new(&budgeted)
            .run(delete(&format!("r{i}")))
            .await
            .unwrap_or_else(|err| panic!("{err}"));
    }
    let waits = waits.lock().map(|w| w.clone()).unwrap_or_default();
    assert_eq!(waits.len(), 12, "every call observed");
    // The burst (10) goes at once; beyond it, calls wait for the budget (the 12th at
    // least, whatever time the first eleven took).
    let waited = |w: &Duration| *w >= Duration::from_millis(50);
    assert!(!waits[..10].iter().any(waited), "{waits:?}");
    assert!(waited(&waits[11]), "{waits:?}");
}

#[tokio::test]
async fn one_budget_is_shared_by_every_caller() {
    let shared = Arc::new(Budgeted::new(Answering::default(), 10.0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let api = shared.clone();
            tokio::spawn(async move {
                for i in 0..5 {
                    Iam::new(&api).run(delete(&format!("t{t}-{i}"))).await.ok();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.ok();
    }
    // 20 calls from 4 tasks through one 10/s budget with a burst of 10: at least ~1 second.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_log_counts_calls_by_operation_outcome_and_writes() {
    let log = CallLog::default();
    let faulty = Faulty::new(Answering::default());
    faulty.inject("DeleteRole", Fault::Fail(ErrorKind::Throttled));
    let counted = Counted::new(faulty, log.clone());
    let iam = Iam::new(&counted);
    assert!(iam.run(delete("a")).await.is_err());
    iam.run(delete("a"))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    iam.list_role_policies("a")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let snapshot = log.snapshot();
    assert_eq!(
        snapshot.get(&("DeleteRole", "Throttled".to_string())),
        Some(&1)
    );
    assert_eq!(snapshot.get(&("DeleteRole", "ok".to_string())), Some(&1));
    assert_eq!(log.calls("ListRolePolicies"), 1);
    assert_eq!(log.writes(), 2, "reads are not writes");
    assert_eq!(log.total(), 3);
}

#[tokio::test]
async fn faults_fire_once_after_the_calls_they_let_through() {
    let inner = Arc::new(Answering::default());
    let faulty = Faulty::new(inner.clone());
    faulty.inject_after("DeleteRole", 2, Fault::Fail(ErrorKind::Unavailable));
    faulty.inject("TagRole", Fault::SucceedThenDrop);
    faulty.inject("UntagRole", Fault::Hang(Duration::from_millis(50)));
    let iam = Iam::new(&faulty);
    assert!(iam.run(delete("1")).await.is_ok());
    assert!(iam.run(delete("2")).await.is_ok());
    assert_eq!(
        iam.run(delete("3")).await.err().map(|e| e.kind),
        Some(ErrorKind::Unavailable)
    );
    assert!(iam.run(delete("4")).await.is_ok(), "a fault fires once");
    // The call reached IAM, yet the caller sees an error: the crash-after-write case.
    let before = inner.reached.load(Ordering::SeqCst);
    let dropped = iam
        .run(IamRequest::TagRole {
            name: "x".into(),
            tags: Default::default(),
        })
        .await;
    assert_eq!(dropped.err().map(|e| e.kind), Some(ErrorKind::Unavailable));
    assert_eq!(inner.reached.load(Ordering::SeqCst), before + 1);
    let started = Instant::now();
    let hung = iam
        .run(IamRequest::UntagRole {
            name: "x".into(),
            keys: vec![],
        })
        .await;
    assert_eq!(hung.err().map(|e| e.kind), Some(ErrorKind::Unavailable));
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(faulty.pending(), 0);
}
