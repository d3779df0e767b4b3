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

use podidentity_e2e::cluster::{Source, client_from, install_crds};
use podidentity_e2e::control_plane::ControlPlane;

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
    // Held until the command ends: dropping it stops the control plane.
    let _plane = match Source::from_env() {
        Source::Assets(assets) => {
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
        _ => {
            eprintln!(
                "with-control-plane: no KUBEBUILDER_ASSETS: the tests that need Kubernetes are skipped"
            );
            None
        }
    };
    match command.status().await {
        Ok(status) => ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(err) => {
            eprintln!("with-control-plane: {program}: {err}");
            ExitCode::FAILURE
        }
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
