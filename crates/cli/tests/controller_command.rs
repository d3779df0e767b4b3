//! `podidentity controller` as a user starts it: bad configuration and an unreachable
//! cluster are named clearly and stop it before anything runs.

mod common;

#[test]
fn a_missing_cluster_name_is_refused() {
    let run = common::podidentity(&["controller"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("clusterName: is required"),
        "{}",
        run.stderr
    );
}

#[test]
fn without_a_cluster_it_says_so_and_exits() {
    let missing =
        std::env::temp_dir().join(format!("podidentity-no-kubeconfig-{}", std::process::id()));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_podidentity"))
        .args([
            "controller",
            "--cluster-name",
            "prod",
            "--health-listen",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", &missing)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap_or_else(|err| panic!("{err}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach the Kubernetes API"),
        "{stderr}"
    );
}
