//! A soak: minutes of random creates, updates and deletes of bindings, namespaces deleted
//! with bindings in them, IAM faults, the leader killed and the API server restarted, on a
//! real API server with moto behind the counting proxy; then the faults stop and the
//! invariants are checked: every binding Ready for its generation or gone, one role per
//! binding and none left over, no finalizer stuck, every namespace deleted gone. Prints the
//! counts; exits non-zero if an invariant does not hold. Not in CI (it takes half an hour).
//!
//! `PODIDENTITY_BIN=target/release/podidentity scripts/with-moto cargo bench -p
//! podidentity-e2e --bench soak` (KUBEBUILDER_ASSETS set as scripts/e2e sets it;
//! PODIDENTITY_SOAK_MINUTES=N for another length, PODIDENTITY_SOAK_SEED to replay).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use podidentity_api::PodIdentityBinding;
use podidentity_e2e::bench;
use podidentity_e2e::chart::OPERATOR_NAMESPACE;
use podidentity_e2e::iam_proxy::Fault;
use podidentity_e2e::operator::{Operator, Replica};
use podidentity_e2e::scenario::{Scenario, condition};
use serde_json::json;

const LEASE: &str = "podidentity-controller";
const NAMESPACES: usize = 6;
/// At most this many bindings at once: the churn keeps the world around it.
const MAX_BINDINGS: usize = 120;

fn main() {
    let minutes = bench::env_number("PODIDENTITY_SOAK_MINUTES", 30);
    let seed = bench::env_number(
        "PODIDENTITY_SOAK_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    bench::run("soak", runtime, |s| async move {
        let failures = soak(&s, Duration::from_secs(minutes * 60), seed).await;
        if failures > 0 {
            eprintln!("soak: {failures} invariants failed (seed {seed})");
            std::process::exit(1);
        }
    });
}

/// xorshift64*: enough randomness to pick steps, replayable from the seed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }
}

/// What the soak did, and what it met on the way.
#[derive(Default, Debug)]
struct Counts {
    steps: BTreeMap<&'static str, usize>,
    /// Calls the API server did not answer (restarting): retried.
    retried: usize,
}

impl Counts {
    fn did(&mut self, step: &'static str) {
        *self.steps.entry(step).or_default() += 1;
    }
}

/// Retries a call until the API server answers it; `AlreadyExists` and `NotFound` are
/// answers (a retry of a call that landed, or a namespace already going).
async fn answered<T, F, Fut>(counts: &mut Counts, mut call: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match call().await {
            Ok(_) => return true,
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                return false;
            }
            // A namespace being deleted refuses new objects: the step is void.
            Err(kube::Error::Api(status)) if status.code == 403 => return false,
            Err(err) => {
                counts.retried += 1;
                if Instant::now() > deadline {
                    panic!("the API server did not answer for 2 minutes: {err}");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

fn spec(account: &str, actions: &[&str]) -> serde_json::Value {
    json!({
        "serviceAccountName": account,
        "permissions": {"statements": [{"actions": actions, "resources": ["*"]}]},
    })
}

async fn soak(s: &Scenario, length: Duration, seed: u64) -> usize {
    let plane = s
        .cluster
        .plane
        .as_ref()
        .expect("the harness's own control plane");
    let mut dice = Dice(seed | 1);
    let mut counts = Counts::default();
    let leases: Api<Lease> = Api::namespaced(s.client(), OPERATOR_NAMESPACE);
    let _ = leases.delete(LEASE, &DeleteParams::default()).await;
    let rendered = s
        .install(
            json!({"controller": {"leaderElection": true, "replicas": 2}, "driftInterval": "2m"}),
        )
        .await;
    let mut replicas: Vec<Operator> = Vec::new();
    let mut started = 0;
    for _ in 0..2 {
        started += 1;
        replicas.push(
            s.controller(&rendered, &Replica::named(&format!("soak-{started}")))
                .await,
        );
    }
    let mut namespaces: Vec<String> = Vec::new();
    let mut made = 0;
    for _ in 0..NAMESPACES {
        made += 1;
        namespaces.push(s.namespace(&format!("soak{made}")).await);
    }
    let mut deleted_namespaces: Vec<String> = Vec::new();
    // Bindings alive by (namespace, name).
    let mut alive: BTreeSet<(String, String)> = BTreeSet::new();
    let mut next_binding = 0;
    let began = Instant::now();
    let mut last_restart = Instant::now();
    let post = PostParams::default();
    let delete = DeleteParams::default();
    eprintln!("soak: {} minutes, seed {seed}", length.as_secs() / 60);

    while began.elapsed() < length {
        let roll = dice.below(100);
        match roll {
            0..=39 if alive.len() < MAX_BINDINGS => {
                let ns = namespaces[dice.below(namespaces.len())].clone();
                next_binding += 1;
                let name = format!("b{next_binding}");
                let accounts: Api<ServiceAccount> = Api::namespaced(s.client(), &ns);
                let account: ServiceAccount =
                    serde_json::from_value(json!({"metadata": {"name": name}})).expect("account");
                answered(&mut counts, || accounts.create(&post, &account)).await;
                let binding: PodIdentityBinding = serde_json::from_value(json!({
                    "apiVersion": "podidentity.io/v1alpha1",
                    "kind": "PodIdentityBinding",
                    "metadata": {"name": name},
                    "spec": spec(&name, &["sqs:ReceiveMessage"]),
                }))
                .expect("binding");
                let bindings: Api<PodIdentityBinding> = Api::namespaced(s.client(), &ns);
                if answered(&mut counts, || bindings.create(&post, &binding)).await {
                    alive.insert((ns, name));
                    counts.did("binding created");
                }
            }
            0..=59 if !alive.is_empty() => {
                let (ns, name) = alive
                    .iter()
                    .nth(dice.below(alive.len()))
                    .cloned()
                    .expect("one");
                let actions: &[&str] = match dice.below(3) {
                    0 => &["sqs:ReceiveMessage"],
                    1 => &["sqs:ReceiveMessage", "s3:GetObject"],
                    _ => &["dynamodb:GetItem"],
                };
                let bindings: Api<PodIdentityBinding> = Api::namespaced(s.client(), &ns);
                let patch = Patch::Merge(json!({"spec": spec(&name, actions)}));
                let params = PatchParams::default();
                answered(&mut counts, || bindings.patch(&name, &params, &patch)).await;
                counts.did("binding updated");
            }
            0..=79 if !alive.is_empty() => {
                let key = alive
                    .iter()
                    .nth(dice.below(alive.len()))
                    .cloned()
                    .expect("one");
                let bindings: Api<PodIdentityBinding> = Api::namespaced(s.client(), &key.0);
                answered(&mut counts, || bindings.delete(&key.1, &delete)).await;
                alive.remove(&key);
                counts.did("binding deleted");
            }
            80..=81 => {
                let victim = namespaces.remove(dice.below(namespaces.len()));
                let api: Api<Namespace> = Api::all(s.client());
                answered(&mut counts, || api.delete(&victim, &delete)).await;
                alive.retain(|(ns, _)| ns != &victim);
                deleted_namespaces.push(victim);
                made += 1;
                namespaces.push(s.namespace(&format!("soak{made}")).await);
                counts.did("namespace deleted");
            }
            82..=91 => {
                let fault = match dice.below(4) {
                    0 => Fault::Throttle,
                    1 => Fault::Unavailable,
                    2 => Fault::DropAfter,
                    _ => Fault::DropBefore,
                };
                s.iam.inject("*", fault, 1 + dice.below(8) as u32);
                counts.did("IAM faults injected");
            }
            92..=95 => {
                let holder = leases
                    .get_opt(LEASE)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|l| l.spec)
                    .and_then(|spec| spec.holder_identity);
                if let Some(at) = replicas
                    .iter()
                    .position(|r| Some(&r.identity) == holder.as_ref())
                {
                    let mut leader = replicas.remove(at);
                    leader.process.kill();
                    started += 1;
                    replicas.push(
                        s.controller(&rendered, &Replica::named(&format!("soak-{started}")))
                            .await,
                    );
                    counts.did("leader killed");
                }
            }
            _ if last_restart.elapsed() > Duration::from_secs(240) => {
                plane
                    .restart_apiserver(&s.client())
                    .await
                    .expect("restart the API server");
                last_restart = Instant::now();
                counts.did("API server restarted");
            }
            _ => {}
        }
        // Replicas that ended by themselves (a leader that lost its lease exits) are
        // replaced, as the Deployment would.
        let before = replicas.len();
        replicas.retain_mut(|r| r.process.running());
        for _ in replicas.len()..before {
            started += 1;
            replicas.push(
                s.controller(&rendered, &Replica::named(&format!("soak-{started}")))
                    .await,
            );
            counts.did("replica exited and replaced");
        }
        tokio::time::sleep(Duration::from_millis(200 + dice.below(600) as u64)).await;
    }

    s.iam.clear_faults();
    eprintln!("soak: churn over after {:?}: {counts:?}", began.elapsed());
    eprintln!(
        "soak: {} bindings alive, checking the invariants",
        alive.len()
    );
    let settled = Instant::now();
    let failures = invariants(s, &alive, &deleted_namespaces).await;
    eprintln!(
        "soak: settled and checked in {:?}; IAM calls {} ({} faulted); replicas started {started}",
        settled.elapsed(),
        s.iam.calls().len(),
        s.iam.calls().iter().filter(|c| c.faulted).count()
    );
    for replica in &mut replicas {
        if !replica.process.running() {
            eprintln!(
                "soak: {} ended:\n{}",
                replica.identity,
                replica.process.log_tail(30)
            );
        }
    }
    failures
}

/// Waits (up to 10 minutes) for the world to settle, then counts what does not hold.
async fn invariants(
    s: &Scenario,
    alive: &BTreeSet<(String, String)>,
    deleted_namespaces: &[String],
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let problems = problems(s, alive, deleted_namespaces).await;
        if problems.is_empty() {
            eprintln!(
                "soak: invariants hold: {} bindings Ready with one role each, 0 orphan roles, 0 duplicates, 0 stuck finalizers, {} namespaces deleted and gone",
                alive.len(),
                deleted_namespaces.len()
            );
            return 0;
        }
        if Instant::now() > deadline {
            for problem in &problems {
                eprintln!("soak: invariant failed: {problem}");
            }
            return problems.len();
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

async fn problems(
    s: &Scenario,
    alive: &BTreeSet<(String, String)>,
    deleted_namespaces: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    let all: Api<PodIdentityBinding> = Api::all(s.client());
    let listed = match all.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(err) => return vec![format!("list bindings: {err}")],
    };
    let mine: Vec<&PodIdentityBinding> = listed
        .iter()
        .filter(|b| {
            b.metadata
                .namespace
                .as_deref()
                .is_some_and(|ns| ns.starts_with(&format!("{}-soak", s.tag)))
        })
        .collect();
    let mut present = BTreeSet::new();
    for binding in &mine {
        let key = (
            binding.metadata.namespace.clone().unwrap_or_default(),
            binding.metadata.name.clone().unwrap_or_default(),
        );
        if binding.metadata.deletion_timestamp.is_some() {
            problems.push(format!("{}/{}: finalizer stuck", key.0, key.1));
        } else if !alive.contains(&key) {
            problems.push(format!("{}/{}: deleted, still there", key.0, key.1));
        } else {
            let ready = condition(binding, "Ready").is_some_and(|c| {
                c.status == "True" && c.observed_generation == binding.metadata.generation
            });
            if !ready {
                problems.push(format!(
                    "{}/{}: not Ready: {:?}",
                    key.0,
                    key.1,
                    condition(binding, "Ready")
                ));
            }
        }
        present.insert(key);
    }
    for key in alive.difference(&present) {
        problems.push(format!("{}/{}: lost", key.0, key.1));
    }
    let namespaces: Api<Namespace> = Api::all(s.client());
    for ns in deleted_namespaces {
        if namespaces.get_opt(ns).await.ok().flatten().is_some() {
            problems.push(format!("namespace {ns}: not gone"));
        }
    }
    let expected: BTreeSet<String> = alive
        .iter()
        .map(|(ns, name)| s.role_name(ns, name))
        .collect();
    problems.extend(s.roles_differing_from(&expected).await);
    problems
}
