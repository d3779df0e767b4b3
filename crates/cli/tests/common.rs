//! Helpers shared by the CLI's integration tests: run the real binary from the
//! repository root, as a user would.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn podidentity(args: &[&str]) -> Run {
    podidentity_with_stdin(args, None)
}

pub fn podidentity_with_stdin(args: &[&str], stdin: Option<&str>) -> Run {
    run_as(env!("CARGO_BIN_EXE_podidentity").as_ref(), args, stdin)
}

/// Runs `program` (the binary, or a link to it under another name) as [`podidentity`]
/// runs the binary.
pub fn run_as(program: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Run {
    use std::io::Write;
    let mut command = Command::new(program);
    command.args(args).current_dir(repo_root());
    // Configuration must come from the arguments only, whatever the developer's shell has.
    for (key, _) in std::env::vars() {
        if key.starts_with("PODIDENTITY_") {
            command.env_remove(key);
        }
    }
    command.stdin(std::process::Stdio::piped());
    command.stdout(std::process::Stdio::piped());
    command.stderr(std::process::Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start podidentity: {err}"));
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(stdin.unwrap_or_default().as_bytes());
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child
        .wait_with_output()
        .unwrap_or_else(|err| panic!("podidentity did not finish: {err}"));
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Compares with a golden file, or rewrites it when UPDATE_GOLDEN=1.
pub fn assert_golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&path, actual)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "cannot read {} ({err}); run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let first_difference = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .find(|(_, (e, a))| e != a)
            .map(|(i, (e, a))| format!("line {}:\n  expected: {e}\n  actual:   {a}", i + 1))
            .unwrap_or_else(|| "one output is a prefix of the other".into());
        panic!(
            "{name} differs from its golden file ({first_difference}); if the change is intended, rerun with UPDATE_GOLDEN=1"
        );
    }
}
