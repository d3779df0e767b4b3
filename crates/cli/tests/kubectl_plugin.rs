//! The binary as a kubectl plugin (called as `kubectl-podidentity`) and its shell
//! completions.

mod common;

use std::process::Command;

use common::{Run, podidentity, run_as};

/// Runs the real binary under the name kubectl looks for on the PATH (a link in `dir`).
fn plugin(dir: &std::path::Path, args: &[&str]) -> Run {
    let link = dir.join("kubectl-podidentity");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_podidentity"), &link)
            .unwrap_or_else(|err| panic!("symlink: {err}"));
    }
    run_as(&link, args, None)
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("podidentity-plugin-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    dir
}

#[test]
fn called_as_kubectl_podidentity_it_answers_as_the_plugin() {
    let dir = scratch("help");
    let output = plugin(&dir, &["--help"]);
    let help = &output.stdout;
    assert!(output.code == 0, "{help}");
    assert!(help.contains("Usage: kubectl podidentity"), "{help}");
    for command in ["status", "doctor", "plan", "completions"] {
        assert!(
            help.contains(&format!("  {command} ")),
            "{command} missing:\n{help}"
        );
    }
    // The commands that run the operator are not the plugin's.
    for hidden in ["controller", "webhook", "crd"] {
        assert!(
            !help.contains(&format!("  {hidden} ")),
            "{hidden} shown:\n{help}"
        );
    }
    // Hidden, not gone: the same binary still runs them under its own name.
    let own = podidentity(&["--help"]);
    assert!(own.stdout.contains("  controller "), "{}", own.stdout);
    assert!(own.stdout.contains("Usage: podidentity"), "{}", own.stdout);
    let _ = std::fs::remove_dir_all(dir);
}

/// The README's first command.
const PLAN: &[&str] = &[
    "plan",
    "-f",
    "examples",
    "--config",
    "examples/config/operator.yaml",
];

#[test]
fn the_plugin_plans_as_the_binary_does() {
    let dir = scratch("plan");
    let output = plugin(&dir, PLAN);
    let direct = podidentity(PLAN);
    assert_eq!(output.code, direct.code);
    assert_eq!(output.stdout, direct.stdout);
    assert!(direct.stdout.contains("VALID"), "{}", direct.stdout);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bash_completions_are_a_valid_script_that_knows_the_commands() {
    let run = podidentity(&["completions", "bash"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for command in ["status", "doctor", "plan", "--all-namespaces"] {
        assert!(run.stdout.contains(command), "{command} missing");
    }
    let dir = scratch("completions");
    let script = dir.join("podidentity.bash");
    std::fs::write(&script, &run.stdout).unwrap_or_else(|err| panic!("{err}"));
    // bash parses it (-n: read, do not run).
    let checked = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap_or_else(|err| panic!("bash: {err}"));
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_unknown_shell_is_refused_with_the_ones_there_are() {
    let run = podidentity(&["completions", "tcsh"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("tcsh"), "{}", run.stderr);
    assert!(run.stderr.contains("bash"), "{}", run.stderr);
}
