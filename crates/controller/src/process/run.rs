//! Wires the controller together: the health listener, the optional leader lease, the
//! binding controller (bindings, the ServiceAccounts they name, and wake-ups from the
//! sweep, from sibling bindings and from policy and namespace-label changes), the policy
//! status controller, the short-form controller, the CredentialsRequest controller, and
//! the drift loop.

use std::net::SocketAddr;
use std::sync::Arc;

use kube::runtime::reflector;

use crate::binding::memory::Memory;
use crate::caches::Watched;
use crate::context::Context;
use crate::oidc::OidcKeeper;
use crate::process::health::{self, Health};
use crate::process::leader::{Elector, Lost};
use crate::process::wiring::{self, Caches, Checks, Wakes};

pub struct RunSettings {
    pub health_listen: SocketAddr,
    /// With leader election: the elector (on an unfenced client) for the shared Lease.
    pub election: Option<Elector>,
    /// With `oidc.manage`: the provider and published keys' keeper, run by the leader.
    pub oidc: Option<OidcKeeper>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("lost the leader lease ({0}); exiting so this replica starts again as a standby")]
    LostLease(Lost),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the OIDC keeper stopped: {0}")]
    OidcKeeperEnded(String),
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
}

/// Runs until a signal, a lost lease, or a failed listener. With leader election the
/// replica is a standby (ready, reconciling nothing) until it holds the lease.
pub async fn run(ctx: Context, mut settings: RunSettings) -> Result<(), RunError> {
    let metrics = ctx.metrics.clone();
    let (bindings, bindings_writer) = reflector::store::<Watched>();
    let health = Arc::new(Health::new(
        Vec::new(),
        metrics.clone(),
        Some(bindings.clone()),
    ));
    let listen = settings.health_listen;
    let mut health_task = tokio::spawn(health::serve(listen, health.clone()));
    if let Some(elector) = settings.election.as_mut()
        && !stand_by(elector, &health).await
    {
        return Ok(());
    }
    // Ends with the process (a replica that loses the lease exits); should it end first
    // (a panic), the process ends with it rather than go on without it.
    let mut oidc_task = match settings.oidc.take() {
        Some(keeper) => tokio::spawn(keeper.keep()),
        None => tokio::spawn(futures::future::pending()),
    };

    let (checks, raises) = Checks::new(&health);
    let (caches, writers) = Caches::new(bindings, bindings_writer);
    let ctx = Arc::new(caches.serve(ctx, &checks));
    let memory = Arc::new(Memory::default());
    let wakes = Wakes::new();

    let namespaces_task = tokio::spawn(wiring::namespace_watch(
        &ctx,
        &caches,
        writers.namespaces,
        raises.namespaces,
        &wakes,
    ));
    let binding_watch =
        wiring::binding_watch(&ctx, writers.bindings, raises.bindings, &memory, &wakes);
    let policy_watch =
        wiring::policy_watch(&ctx, &caches, writers.policies, raises.policies, &wakes);
    let secret_watch = wiring::secret_watch(&ctx, writers.secrets, raises.secrets);
    let policy_controller =
        wiring::policy_controller(&ctx, &caches, policy_watch, wakes.status_asked);
    let binding_controller = checks.after_policies(wiring::binding_controller(
        &ctx,
        &caches,
        &memory,
        &metrics,
        binding_watch,
        secret_watch,
        wakes.woken,
    ));
    // CredentialsRequests are judged by the same guardrails, so they wait for them too.
    let credentials_requests = checks.after_policies(crate::credentials_request::run(ctx.clone()));
    let short_form_controller =
        wiring::short_form_controller(&ctx, &caches, &checks, raises.accounts, &wakes.wake);
    let sweep_task = tokio::spawn(crate::drift::sweep_loop(
        ctx.clone(),
        memory,
        caches.bindings.clone(),
        checks.bindings.clone(),
        wakes.wake,
    ));

    let outcome = {
        let lost = async {
            match settings.election.as_mut() {
                Some(elector) => elector.hold().await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            () = binding_controller => Ok(()),
            () = policy_controller => Ok(()),
            () = short_form_controller => Ok(()),
            () = credentials_requests => Ok(()),
            ended = &mut oidc_task => Err(RunError::OidcKeeperEnded(
                ended.err().map(|e| e.to_string()).unwrap_or_default(),
            )),
            lost = lost => Err(RunError::LostLease(lost)),
            result = &mut health_task => match result {
                Ok(Err(err)) => Err(RunError::Listen(listen, err)),
                _ => Ok(()),
            },
        }
    };
    sweep_task.abort();
    namespaces_task.abort();
    oidc_task.abort();
    // A graceful stop hands the lease over at once instead of after it runs out.
    if outcome.is_ok()
        && let Some(elector) = settings.election.as_mut()
    {
        elector.release().await;
    }
    outcome
}

/// A standby is healthy and ready; it just does not reconcile. False: a signal came first.
async fn stand_by(elector: &mut Elector, health: &Health) -> bool {
    let (standing_by, standby) = health::check("leader election");
    standing_by.raise();
    health.set_checks(vec![standby]);
    tracing::info!(lease = %elector.settings().name, holder = %elector.settings().holder, "standing by for the leader lease");
    tokio::select! {
        () = elector.acquire() => {}
        () = shutdown_signal() => return false,
    }
    tracing::info!(lease = %elector.settings().name, "leading");
    true
}
