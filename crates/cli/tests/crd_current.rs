//! The committed CRDs (`crds/`, and the chart's copy) are exactly what `podidentity crd`
//! generates.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

const REGENERATE: &str = "regenerate them with `cargo run -q -p podidentity -- crd --out-dir crds && cp crds/*.yaml charts/pod-identity-operator/crds/`";

fn yaml_files(dir: &Path) -> BTreeMap<String, String> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, std::fs::read_to_string(&path).unwrap_or_default())
        })
        .collect()
}

#[test]
fn committed_crds_are_what_the_binary_generates() {
    let generated = std::env::temp_dir().join(format!("podidentity-crds-{}", std::process::id()));
    let out = generated.to_string_lossy().into_owned();
    let run = common::podidentity(&["crd", "--out-dir", &out]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let expected = yaml_files(&generated);
    let _ = std::fs::remove_dir_all(&generated);
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        [
            "podidentitybindings.podidentity.io.yaml",
            "podidentitypolicies.podidentity.io.yaml"
        ]
    );
    let root = common::repo_root();
    for committed in ["crds", "charts/pod-identity-operator/crds"] {
        let files = yaml_files(&root.join(committed));
        assert!(files == expected, "{committed}/ is stale: {REGENERATE}");
    }
}

#[test]
fn printed_crds_are_the_files_in_one_stream() {
    let run = common::podidentity(&["crd"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let files = yaml_files(&common::repo_root().join("crds"));
    let joined = files.into_values().collect::<Vec<_>>().join("---\n");
    assert!(run.stdout == joined, "`podidentity crd` differs from crds/");
}

#[test]
fn crds_have_no_gitops_drift_traps() {
    let run = common::podidentity(&["crd"]);
    assert!(!run.stdout.contains("categories: []"));
    assert!(!run.stdout.contains("format: uint"));
    assert_eq!(
        run.stdout
            .matches("podidentity.io/schema-revision:")
            .count(),
        2
    );
    assert!(run.stdout.contains("x-kubernetes-list-type: map"));
}
