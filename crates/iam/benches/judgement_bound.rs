//! The guardrail engine's worst cases, timed: what one judgement costs in time and
//! memory, for the patterns an adversarial pass found and for everyday bindings.
//! `cargo bench -p podidentity-iam --bench judgement_bound` prints the figures.

use std::time::{Duration, Instant};

use podidentity_api::config::OperatorConfig;
use podidentity_api::{Effect, PodIdentityBindingSpec, PodIdentityPolicy, Statement};
use podidentity_iam::Guardrails;
use podidentity_iam::effort::Effort;
use podidentity_iam::glob;
use podidentity_iam::namespace_policy::NamespacePolicy;

/// Peak resident memory of this process so far (Linux), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

fn time<T>(runs: u32, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut out = f();
    let start = Instant::now();
    for _ in 0..runs {
        out = f();
    }
    (start.elapsed() / runs, out)
}

fn spec(statements: Vec<(Vec<String>, Vec<String>)>) -> PodIdentityBindingSpec {
    let mut spec = PodIdentityBindingSpec {
        service_account_name: "app".into(),
        ..PodIdentityBindingSpec::default()
    };
    spec.permissions.statements = statements
        .into_iter()
        .map(|(actions, resources)| Statement {
            effect: Effect::Allow,
            actions,
            resources,
            ..Statement::default()
        })
        .collect();
    spec
}

fn main() {
    let config = OperatorConfig {
        cluster_name: "prod".into(),
        ..OperatorConfig::default()
    };
    let teams = NamespacePolicy::from_resource(&PodIdentityPolicy::new(
        "teams",
        serde_json::from_value(serde_json::json!({
            "namespaceSelector": {},
            "allowedActions": ["s3:*", "sqs:*"],
            "allowedResources": ["arn:aws:s3:::${namespace}.*", "arn:aws:sqs:*:*:${namespace}_*"],
        }))
        .unwrap_or_else(|err| panic!("{err}")),
    ))
    .unwrap_or_else(|problems| panic!("{problems:?}"));
    let rules = Guardrails::from_config(&config)
        .with_policies(vec![teams], Default::default())
        .rules_for("team");

    let star_one = format!("arn:aws:s3:::team.{}", "*?".repeat(400));
    let distinct: String = (0..1000u32)
        .filter_map(|n| char::from_u32(0x4e00 + n))
        .flat_map(|ch| ['*', ch])
        .collect();
    let alternating = format!("arn:aws:s3:::team.{distinct}");
    let one = |resource: &str| {
        spec(vec![(
            vec!["s3:GetObject".into()],
            vec![resource.to_string()],
        )])
    };
    let heavy: Vec<String> = (0..100)
        .map(|i| format!("arn:aws:s3:::team.{i}{}", "*a".repeat(1000)))
        .collect();
    let over_the_bound = spec(
        (0..100)
            .map(|_| (vec!["s3:GetObject".to_string()], heavy.clone()))
            .collect(),
    );
    let everyday = spec(vec![
        (
            vec!["s3:GetObject".into(), "s3:PutObject".into()],
            vec!["arn:aws:s3:::team.orders/*".into()],
        ),
        (
            vec!["sqs:SendMessage".into(), "sqs:ReceiveMessage".into()],
            vec!["arn:aws:sqs:eu-west-1:111122223333:team_events".into()],
        ),
    ]);

    println!(
        "one binding's judgement under the teams policy and the default rules (release build):"
    );
    println!("{:<48} {:>12} {:>10}", "binding", "time", "violations");
    for (name, spec, runs) in [
        ("everyday (2 statements)", &everyday, 1000),
        ("400 x *? in one resource", &one(&star_one), 100),
        ("* and 1,000 distinct characters", &one(&alternating), 100),
        (
            "100 x 100 resources of 1,000 x *a (over the bound)",
            &over_the_bound,
            3,
        ),
    ] {
        let (took, violations) = time(runs, || rules.check(spec).len());
        println!("{name:<48} {:>10.3?} {violations:>10}", took);
    }

    println!("\nsingle questions (glob::covers, one allowance each):");
    for (name, outer, inner) in [
        (
            "400 x *? within team.*",
            "arn:aws:s3:::team.*",
            star_one.as_str(),
        ),
        (
            "* and 1,000 distinct within team.*",
            "arn:aws:s3:::team.*",
            alternating.as_str(),
        ),
    ] {
        let (took, steps) = time(100, || {
            let effort = Effort::for_judgement();
            let _ = glob::covers(outer, inner, false, &effort);
            effort.steps_taken()
        });
        println!("{name:<48} {took:>10.3?} {steps:>10} steps");
    }
    // A pattern whose automaton is exponential: each place of the `?` stretch after an
    // `a` is one more set. Judging it within itself exactly would take ~2^41 sets; the
    // bound ends it.
    let exponential = format!("*a{}*", "?".repeat(40));
    let (took, (answer, steps)) = time(3, || {
        let effort = Effort::for_judgement();
        let answer = glob::covers(&exponential, &exponential, false, &effort);
        (answer, effort.steps_taken())
    });
    println!(
        "{:<48} {took:>10.3?} {steps:>10} steps ({answer:?})",
        "the worst question found: one that exhausts it"
    );
    println!(
        "\npeak resident memory of the whole run: {} KiB",
        peak_rss_kib()
    );
}
