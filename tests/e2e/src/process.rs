//! Child processes the harness starts: output to a log file, killed when dropped, and
//! (through `setpriv --pdeathsig`) killed by the kernel if the harness itself dies, so a
//! failed or interrupted run leaves no API server behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::error::HarnessError;

pub struct Process {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

fn has_setpriv() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        Command::new("setpriv")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

impl Process {
    /// Starts `program args` with output to `log`. `env` is added to the harness's own.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: PathBuf,
    ) -> Result<Self, HarnessError> {
        Self::start_on(name, program, args, env, log, None)
    }

    /// As `start`, pinned to one CPU (through `taskset`) when `cpu` is given, so that the
    /// process sees one core from its first instruction (its runtime sizes itself to it).
    pub fn start_on(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: PathBuf,
        cpu: Option<usize>,
    ) -> Result<Self, HarnessError> {
        let out = std::fs::File::create(&log)
            .map_err(|e| HarnessError::new(format!("{name}: log {}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| HarnessError::new(format!("{name}: log: {e}")))?;
        let mut line: Vec<std::ffi::OsString> = Vec::new();
        if has_setpriv() {
            line.extend(["setpriv", "--pdeathsig", "KILL", "--"].map(Into::into));
        }
        if let Some(cpu) = cpu {
            line.extend(["taskset".into(), "-c".into(), cpu.to_string().into()]);
        }
        line.push(program.into());
        let mut command = Command::new(&line[0]);
        command.args(&line[1..]);
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = command.spawn().map_err(|e| {
            HarnessError::new(format!("{name}: cannot start {}: {e}", program.display()))
        })?;
        Ok(Self {
            name: name.to_string(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The exit code, once it has exited.
    pub fn exit_code(&mut self) -> Option<i32> {
        self.child.try_wait().ok().flatten().and_then(|s| s.code())
    }

    /// Sends a signal by name (KILL, STOP, CONT, TERM).
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// kill -9, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last `lines` lines of its output.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a file, without terminal colours.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

/// A free TCP port on loopback (bound and released; the caller binds it right away).
pub fn free_port() -> Result<u16, HarnessError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| HarnessError::new(format!("no free port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| HarnessError::new(format!("no free port: {e}")))
}
