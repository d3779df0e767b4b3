//! Runs a command beside a real control plane: etcd, kube-apiserver and
//! kube-controller-manager from `KUBEBUILDER_ASSETS`, with the CRDs of `crds/` installed.
//! The command finds the admin kubeconfig in `PODIDENTITY_TEST_KUBECONFIG`; the control plane
//! stops when it ends, and its exit status is this program's.
//!
//! The workspace's tests that need Kubernetes (whole reconcile passes, the webhook's
//! lookups, doctor's settings) run through this (scripts/test does it), each in a namespace
//! of its own. Without `KUBEBUILDER_ASSETS` the command runs alone and those tests say they
//! were skipped (or fail, with PODIDENTITY_TEST_REQUIRE_KUBERNETES set).
//!
//! Usage: with-control-plane COMMAND [ARGS...]

use std::process::ExitCode;

use podidentity_e2e::cluster::{assets_from_env, client_from, install_crds};
use podidentity_e2e::control_plane::ControlPlane;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: with-control-plane COMMAND [ARGS...]");
        return ExitCode::from(2);
    };
    #[allow(deprecated)] // ring: see Cargo.toml on rustls
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut command = tokio::process::Command::new(program);
    command.args(rest);
    // Held until the command ends (or this program is interrupted): dropping it stops the
    // control plane and removes its files.
    let _plane = match assets_from_env() {
        Some(assets) => {
            let dir = std::env::temp_dir().join(format!(
                "podidentity-test-control-plane-{}",
                std::process::id()
            ));
            match start(&assets, dir).await {
                Ok(plane) => {
                    eprintln!("with-control-plane: kube-apiserver at {}", plane.url);
                    command.env("PODIDENTITY_TEST_KUBECONFIG", &plane.admin_kubeconfig);
                    Some(plane)
                }
                Err(err) => {
                    eprintln!("with-control-plane: the control plane did not start: {err}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => {
            eprintln!(
                "with-control-plane: KUBEBUILDER_ASSETS names no kube-apiserver: the tests that need Kubernetes are skipped"
            );
            // Never one inherited from elsewhere: the tests write.
            command.env_remove("PODIDENTITY_TEST_KUBECONFIG");
            None
        }
    };
    let mut child = match command.kill_on_drop(true).spawn() {
        Ok(child) => child,
        Err(err) => {
            eprintln!("with-control-plane: {program}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("with-control-plane: cannot listen for signals");
        return ExitCode::FAILURE;
    };
    // On a signal the command is stopped, then the control plane (returning drops both).
    tokio::select! {
        status = child.wait() => match status {
            Ok(status) => ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8),
            Err(err) => {
                eprintln!("with-control-plane: {program}: {err}");
                ExitCode::FAILURE
            }
        },
        _ = interrupt.recv() => ExitCode::from(130),
        _ = terminate.recv() => ExitCode::from(143),
    }
}

async fn start(
    assets: &std::path::Path,
    dir: std::path::PathBuf,
) -> Result<ControlPlane, podidentity_e2e::HarnessError> {
    let plane = ControlPlane::start(assets, dir).await?;
    install_crds(&client_from(&plane.admin_kubeconfig).await?).await?;
    Ok(plane)
}
