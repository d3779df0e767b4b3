//! `plan` on the shipped examples: golden output for the valid ones, and for every file in
//! examples/refused/ the exact problems its header promises, with exit code 1.

mod common;

use common::{assert_golden, podidentity, repo_root};

const CONFIG: &str = "examples/config/operator.yaml";

#[test]
fn table_output_of_the_examples() {
    let run = podidentity(&["plan", "-f", "examples", "--config", CONFIG]);
    assert_eq!(
        run.code, 0,
        "stderr: {}\nstdout: {}",
        run.stderr, run.stdout
    );
    assert!(
        run.stdout
            .ends_with("7 binding(s): 7 valid, 0 refused; 1 other document(s) ignored\n")
    );
    assert_golden("plan-examples.txt", &run.stdout);
}

#[test]
fn json_output_of_the_examples() {
    let run = podidentity(&["plan", "-f", "examples", "--config", CONFIG, "-o", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let plan: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|err| panic!("not JSON: {err}"));
    assert_eq!(plan["summary"]["valid"], 7);
    let shop = plan["bindings"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["name"] == "orders-s3"))
        .unwrap_or_else(|| panic!("orders-s3 missing"));
    assert_eq!(
        shop["desired"]["role"]["arn"],
        "arn:aws:iam::111122223333:role/podidentity/prod/prod-shop.orders-s3"
    );
    assert_eq!(
        shop["desired"]["role"]["trustPolicy"]["Statement"][0]["Condition"]["StringEquals"]["oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE:sub"],
        "system:serviceaccount:shop:orders"
    );
    assert_golden("plan-examples.json", &run.stdout);
}

#[test]
fn recursive_reading_includes_the_refused_examples() {
    let run = podidentity(&[
        "plan", "-R", "-f", "examples", "--config", CONFIG, "-o", "json",
    ]);
    assert_eq!(run.code, 1);
    let plan: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|err| panic!("{err}"));
    // 7 examples, the two bindings whose names met in the legacy format, two refused
    // only with the five-cluster config they name (the long trust policy, and a short form,
    // off there), and the team binding of examples/policies/.
    assert_eq!(plan["summary"]["valid"], 12);
    assert!(plan["summary"]["refused"].as_u64().unwrap_or(0) >= 10);
}

fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn every_refused_example_prints_the_problems_it_documents() {
    let dir = repo_root().join("examples/refused");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{err}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "expected the refused examples, found {files:?}"
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let relative = format!(
            "examples/refused/{}",
            file.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
        );
        let config = text
            .lines()
            .find_map(|l| l.strip_prefix("# config: "))
            .unwrap_or(CONFIG);
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# refused: "))
            .collect();
        assert!(!expected.is_empty(), "{relative} documents no refusal");
        // The cluster's PodIdentityPolicies (and Namespaces) the example is judged by.
        let mut args = vec!["plan", "-f", &relative, "--config", config];
        for policies in text.lines().filter_map(|l| l.strip_prefix("# policies: ")) {
            args.extend(["-f", policies]);
        }
        let run = podidentity(&args);
        assert_eq!(
            run.code, 1,
            "{relative} should be refused with exit 1:\n{}{}",
            run.stdout, run.stderr
        );
        let printed: Vec<String> = run
            .stdout
            .lines()
            .filter(|l| l.starts_with("  ") && l.trim_start().starts_with(char::is_uppercase))
            .map(normalize)
            .collect();
        let expected: Vec<String> = expected.into_iter().map(normalize).collect();
        assert_eq!(
            printed, expected,
            "{relative}: printed problems differ from its header"
        );
    }
}

#[test]
fn refused_bindings_produce_no_role() {
    let run = podidentity(&[
        "plan",
        "-f",
        "examples/refused/denied-action.yaml",
        "--config",
        CONFIG,
        "-o",
        "json",
    ]);
    assert_eq!(run.code, 1);
    let plan: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|err| panic!("{err}"));
    let binding = &plan["bindings"][0];
    assert_eq!(binding["valid"], false);
    assert!(
        binding.get("desired").is_none(),
        "a refused binding must not show a role: {binding}"
    );
    assert_eq!(binding["problems"][0]["reason"], "GuardrailViolation");
    assert_eq!(
        binding["problems"][0]["field"],
        "spec.permissions.statements[0].actions[1]"
    );
    assert_eq!(binding["file"], "examples/refused/denied-action.yaml");
    assert_eq!(binding["document"], 1);
}
