//! The controller with 1,000 new bindings spread over five AWS accounts, on a real API
//! server with moto behind the counting proxy (moto acts in the account an AssumeRole
//! names); prints figures, asserts nothing.
//!
//! `scripts/with-moto cargo test -p podidentity-e2e --bench many_accounts -- --bench`
//! (KUBEBUILDER_ASSETS and PODIDENTITY_BIN set as scripts/e2e sets them).
//! PODIDENTITY_BENCH_BINDINGS=N for another N; PODIDENTITY_BENCH_ACCOUNTS=1 puts every
//! binding in the operator's own account with the five accounts' budgets summed (the
//! single-account figure the peak RSS is compared with).
//!
//! Prints: time from the first apply to all Ready against the per-account budget bound
//! (the slowest account's calls ÷ its budget), IAM calls per binding and per account,
//! GetAccountAuthorizationDetails pages per account per sweep, the controller's peak RSS,
//! and the writes of each account over an idle window holding two sweeps.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use podidentity_e2e::bench;
use podidentity_e2e::operator::Replica;
use podidentity_e2e::scenario::{ACCOUNT, Scenario};
use serde_json::{Value, json};

const NAMESPACES: usize = 20;
/// Each account's budget, calls per second (the figure).
const PER_ACCOUNT_RPS: f64 = 20.0;
/// The operator's own account first, then the four it assumes a role into.
const ACCOUNTS: [&str; 5] = [
    ACCOUNT,
    "444455556666",
    "777788889999",
    "111122223333",
    "222233334444",
];
const PLACED: &str = "podidentity-bench/account";
const DRIFT_INTERVAL_S: u64 = 30;

fn main() {
    let n = bench::env_number("PODIDENTITY_BENCH_BINDINGS", 1000) as usize;
    let accounts = bench::env_number("PODIDENTITY_BENCH_ACCOUNTS", 5).clamp(1, 5) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    bench::run("many_accounts", runtime, |s| async move {
        measure(&s, n, accounts).await
    });
}

/// The chart values: the own account's budget, and each other account with its own.
fn values(accounts: usize) -> Value {
    let others: Vec<Value> = ACCOUNTS[1..accounts]
        .iter()
        .map(|id| {
            json!({
                "id": id,
                "roleArn": format!("arn:aws:iam::{id}:role/podidentity-operator"),
                "maxRequestsPerSecond": PER_ACCOUNT_RPS,
            })
        })
        .collect();
    // One account alone gets the five accounts' budgets summed: the same pace overall.
    let own_budget = if accounts == 1 {
        PER_ACCOUNT_RPS * ACCOUNTS.len() as f64
    } else {
        PER_ACCOUNT_RPS
    };
    json!({
        "aws": {"maxRequestsPerSecond": own_budget},
        "driftInterval": format!("{DRIFT_INTERVAL_S}s"),
        "accounts": others,
    })
}

/// The account a call acted in (the proxy leaves the operator's own unnamed).
fn account_of(call: &podidentity_e2e::iam_proxy::Call) -> String {
    call.account.clone().unwrap_or_else(|| ACCOUNT.to_string())
}

async fn measure(s: &Scenario, n: usize, accounts: usize) {
    let rendered = s.install(values(accounts)).await;
    let mut controller = s
        .controller(&rendered, &Replica::named("bench-controller"))
        .await;
    controller.wait_ready(Duration::from_secs(60)).await;
    for (index, id) in ACCOUNTS.iter().enumerate().take(accounts).skip(1) {
        s.apply_policy(
            &format!("place-{index}"),
            json!({
                "namespaceSelector": {"matchLabels": {PLACED: index.to_string()}},
                "account": id,
            }),
        )
        .await;
    }
    let mut namespaces = Vec::new();
    for i in 0..NAMESPACES {
        let placed = (i % accounts).to_string();
        namespaces.push(
            s.namespace_labelled(&format!("bench{i}"), json!({PLACED: placed}))
                .await,
        );
    }
    let iam = s.iam.mark();
    let started = Instant::now();
    bench::apply_bindings(s, &namespaces, n).await;
    let applied = started.elapsed();
    bench::wait_all_ready(s, &namespaces, n).await;
    let all_ready = started.elapsed();
    // The credentials' AssumeRole calls go to STS with the operator's own identity,
    // outside every account's IAM budget.
    let calls: Vec<_> = s
        .iam
        .calls_since(iam)
        .into_iter()
        .filter(|c| c.action != "AssumeRole")
        .collect();
    let mut by_account: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_action: BTreeMap<String, usize> = BTreeMap::new();
    for call in &calls {
        *by_account.entry(account_of(call)).or_default() += 1;
        *by_action.entry(call.action.clone()).or_default() += 1;
    }
    let failed = calls.iter().filter(|c| c.status != 200).count();
    let budget = if accounts == 1 {
        PER_ACCOUNT_RPS * ACCOUNTS.len() as f64
    } else {
        PER_ACCOUNT_RPS
    };
    let slowest = by_account.values().copied().max().unwrap_or(0);
    let bound = slowest as f64 / budget;
    let per = |count: usize| count as f64 / n as f64;
    println!(
        "{n} bindings in {NAMESPACES} namespaces over {accounts} account(s) at {budget} calls/s each, real API server"
    );
    println!(
        "  applied in {:.1}s; all Ready {:.1}s after the first apply",
        applied.as_secs_f64(),
        all_ready.as_secs_f64()
    );
    println!(
        "  budget bound: the slowest account's {slowest} calls / {budget} per s = {bound:.1}s; all Ready at {:.2} x the bound (goal <= 1.1)",
        all_ready.as_secs_f64() / bound.max(f64::EPSILON)
    );
    println!(
        "  IAM calls per binding: {:.2} ({}); answers other than 200: {failed}",
        per(calls.len()),
        by_action
            .iter()
            .map(|(a, c)| format!("{a} {:.2}", per(*c)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let since = |at: std::time::Instant| at.saturating_duration_since(started).as_secs_f64();
    // When each account's credentials were first assumed (STS, the operator's own).
    let assumed: Vec<String> = s
        .iam
        .calls_since(iam)
        .into_iter()
        .filter(|c| c.action == "AssumeRole")
        .map(|c| {
            let role = c.params.get("RoleArn").cloned().unwrap_or_default();
            format!(
                "{} at {:.1}s",
                role.split(':').nth(4).unwrap_or("?"),
                since(c.at)
            )
        })
        .collect();
    println!("  AssumeRole: {}", assumed.join(", "));
    // Where the time went: each account's first and last call after the first apply,
    // and its pace in between (the budget is the ceiling).
    for id in ACCOUNTS.iter().take(accounts) {
        let times: Vec<f64> = calls
            .iter()
            .filter(|c| account_of(c) == *id)
            .map(|c| since(c.at))
            .collect();
        let (first, last) = (
            times.iter().copied().fold(f64::INFINITY, f64::min),
            times.iter().copied().fold(0.0, f64::max),
        );
        println!(
            "  account {id}: first call at {first:.1}s, last at {last:.1}s, {:.1} calls/s in between",
            times.len() as f64 / (last - first).max(f64::EPSILON)
        );
    }
    println!(
        "  IAM calls per account: {}",
        by_account
            .iter()
            .map(|(a, c)| format!("{a} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let pid = controller.process.pid();
    println!(
        "  controller peak RSS when all Ready: {:.1} MiB",
        bench::status_mib(pid, "VmHWM:")
    );

    // Idle over at least two sweeps: each account is read in pages of 1,000 roles and
    // written nothing.
    let idle = s.iam.mark();
    let window = Duration::from_secs(2 * DRIFT_INTERVAL_S + 5);
    tokio::time::sleep(window).await;
    let idle_calls = s.iam.calls_since(idle);
    let writes = s.iam.writes_since(idle);
    for id in ACCOUNTS.iter().take(accounts) {
        let in_account = |c: &&podidentity_e2e::iam_proxy::Call| account_of(c) == *id;
        let pages: Vec<_> = idle_calls
            .iter()
            .filter(in_account)
            .filter(|c| c.action == "GetAccountAuthorizationDetails")
            .collect();
        // A sweep's first page is the one asked for without a marker.
        let sweeps = pages
            .iter()
            .filter(|c| !c.params.contains_key("Marker"))
            .count();
        let reads = idle_calls
            .iter()
            .filter(in_account)
            .filter(|c| c.action != "AssumeRole")
            .count();
        let roles = by_account.get(*id).map_or(0, |_| n / accounts);
        println!(
            "  idle {}s in {id}: {} writes, {reads} reads, {} GetAccountAuthorizationDetails pages over {sweeps} sweeps ({:.1} per sweep; bound ceil({roles}/1000) + 1 = {})",
            window.as_secs(),
            writes.iter().filter(in_account).count(),
            pages.len(),
            pages.len() as f64 / sweeps.max(1) as f64,
            roles.div_ceil(1000) + 1
        );
    }
    println!(
        "  controller peak RSS: {:.1} MiB",
        bench::status_mib(pid, "VmHWM:")
    );
}
