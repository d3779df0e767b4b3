//! The image as it ships: the OCI archive `scripts/image` makes (scripts/e2e builds it and
//! names it in `PODIDENTITY_E2E_IMAGE`), unpacked as a container runtime unpacks it
//! (umoci, into a runtime bundle), and its own binary run from its root filesystem as the
//! image's user (`chroot --userspec`), with the image's environment and nothing of the
//! harness's. No kubelet or container runtime is needed, so the scenario runs where the
//! control plane does.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::error::HarnessError;

/// An unpacked image: its root filesystem and how its config says to start it.
pub struct Image {
    pub rootfs: PathBuf,
    /// `process.user` of the runtime bundle (the image config's `User`).
    pub uid: u32,
    pub gid: u32,
    /// Entrypoint and command, as the runtime would run them.
    pub args: Vec<String>,
    /// The image config's `Env` (`NAME=value`).
    pub env: Vec<String>,
    /// The image config's `WorkingDir`.
    pub cwd: String,
}

/// The archive to test: `PODIDENTITY_E2E_IMAGE`. `None` (with one line saying why) when it
/// is not set, which fails instead when the run requires the image
/// (`PODIDENTITY_E2E_REQUIRE_IMAGE`: scripts/e2e sets it as root and in CI; a developer's
/// run as themselves skips this one scenario).
pub fn archive_from_env() -> Option<PathBuf> {
    match std::env::var_os("PODIDENTITY_E2E_IMAGE") {
        Some(path) => Some(PathBuf::from(path)),
        None if std::env::var_os("PODIDENTITY_E2E_REQUIRE_IMAGE").is_some() => panic!(
            "PODIDENTITY_E2E_IMAGE is not set: scripts/e2e builds the image with scripts/image \
             (as root, with mmdebstrap and umoci) and sets it"
        ),
        None => {
            eprintln!("skipped: no image; scripts/e2e builds one (scripts/image) when run as root");
            None
        }
    }
}

fn run(command: &mut Command) -> Result<(), HarnessError> {
    let output = command
        .output()
        .map_err(|e| HarnessError::new(format!("{command:?}: {e}")))?;
    if !output.status.success() {
        return Err(HarnessError::new(format!(
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value, HarnessError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| HarnessError::new(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| HarnessError::new(format!("{}: {e}", path.display())))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

impl Image {
    /// Unpacks `archive` under `dir`: the OCI layout, then (umoci) the runtime bundle of
    /// the one image it holds.
    pub fn unpack(archive: &Path, dir: &Path) -> Result<Self, HarnessError> {
        let layout = dir.join("layout");
        let bundle = dir.join("bundle");
        std::fs::create_dir_all(&layout)
            .map_err(|e| HarnessError::new(format!("{}: {e}", layout.display())))?;
        run(Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(&layout))?;
        let index = read_json(&layout.join("index.json"))?;
        let tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .ok_or_else(|| HarnessError::new("the archive's index names no image"))?
            .to_string();
        run(Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{tag}", layout.display()))
            .arg(&bundle))?;
        let config = read_json(&bundle.join("config.json"))?;
        let process = &config["process"];
        let id = |key: &str| {
            process["user"][key]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| HarnessError::new(format!("the bundle has no process.user.{key}")))
        };
        Ok(Self {
            rootfs: bundle.join("rootfs"),
            uid: id("uid")?,
            gid: id("gid")?,
            args: strings(&process["args"]),
            env: strings(&process["env"]),
            cwd: process["cwd"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// A directory inside the root filesystem that only the image's user can read (files a
    /// pod would get mounted: its kubeconfig, its configuration): the path on this machine,
    /// and the path the image's binary sees.
    pub fn private_dir(&self, name: &str) -> Result<(PathBuf, PathBuf), HarnessError> {
        let inside = Path::new("/tmp").join(name);
        let outside = self
            .rootfs
            .join(inside.strip_prefix("/").unwrap_or(&inside));
        std::fs::create_dir_all(&outside)
            .map_err(|e| HarnessError::new(format!("{}: {e}", outside.display())))?;
        self.give(&outside)?;
        Ok((outside, inside))
    }

    /// Makes `path` (in the root filesystem) the image user's.
    pub fn give(&self, path: &Path) -> Result<(), HarnessError> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| HarnessError::new(format!("chown {}: {e}", path.display())))
    }

    /// The program and arguments that start the image's entrypoint with `args` as a
    /// runtime would: in its root filesystem, as its user, with its environment and `env`
    /// (the pod's) only.
    pub fn command(&self, env: &[(String, String)], args: &[String]) -> (PathBuf, Vec<String>) {
        let mut line = vec!["-i".to_string()];
        line.extend(self.env.iter().cloned());
        line.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        line.push("chroot".into());
        line.push(format!("--userspec={}:{}", self.uid, self.gid));
        line.push(self.rootfs.display().to_string());
        line.extend(self.args.iter().cloned());
        line.extend(args.iter().cloned());
        (PathBuf::from("env"), line)
    }
}
