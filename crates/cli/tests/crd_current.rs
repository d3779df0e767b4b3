//! The committed CRD is exactly what `podidentity crd` prints.

mod common;

#[test]
fn committed_crd_is_what_the_binary_generates() {
    let run = common::podidentity(&["crd"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let path = common::repo_root().join("crds/podidentitybindings.podidentity.io.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == run.stdout,
        "{} is stale: regenerate it with `cargo run -q -p podidentity -- crd > crds/podidentitybindings.podidentity.io.yaml`",
        path.display()
    );
}

#[test]
fn crd_has_no_gitops_drift_traps() {
    let run = common::podidentity(&["crd"]);
    assert!(!run.stdout.contains("categories: []"));
    assert!(!run.stdout.contains("format: uint"));
    assert!(run.stdout.contains("podidentity.io/schema-revision:"));
    assert!(run.stdout.contains("x-kubernetes-list-type: map"));
}
