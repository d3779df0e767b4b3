//! `podidentity webhook` as a user starts it: bad flags and an unreachable cluster are
//! named clearly and stop it.

mod common;

#[test]
fn a_token_expiration_under_ten_minutes_is_refused() {
    let run = common::podidentity(&["webhook", "--token-expiration", "300"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--token-expiration"), "{}", run.stderr);
    assert!(run.stderr.contains("300 is not in 600.."), "{}", run.stderr);
}

#[test]
fn a_bad_operator_configuration_is_refused_before_anything_starts() {
    let run = common::podidentity(&[
        "webhook",
        "--cluster-name",
        "prod",
        "--trust-policy-max-bytes",
        "1",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("trustPolicy.maxBytes: 1 is out of range"),
        "{}",
        run.stderr
    );
}

#[test]
fn without_a_cluster_it_says_so_and_exits() {
    let dir = std::env::temp_dir().join(format!("podidentity-no-cluster-{}", std::process::id()));
    let missing = dir.join("kubeconfig");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_podidentity"));
    command
        .args([
            "webhook",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", &missing)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT");
    let output = command.output().unwrap_or_else(|err| panic!("{err}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach the Kubernetes API"),
        "{stderr}"
    );
}
