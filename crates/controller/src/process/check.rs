//! A readiness check: a flag its owner raises once (a watch that has listed everything, a
//! standby's lease loop that runs), and others wait on.

use tokio::sync::watch;

/// One readiness check: raised once, by its owner.
#[derive(Clone)]
pub struct Check {
    name: &'static str,
    up: watch::Receiver<bool>,
}

/// The owner's end of a check.
pub struct Raise(watch::Sender<bool>);

impl Raise {
    pub fn raise(&self) {
        self.0.send_replace(true);
    }
    pub fn lower(&self) {
        self.0.send_replace(false);
    }
}

pub fn check(name: &'static str) -> (Raise, Check) {
    let (tx, rx) = watch::channel(false);
    (Raise(tx), Check { name, up: rx })
}

impl Check {
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Waits until the check is up (false if its owner went away first).
    pub async fn wait(&mut self) -> bool {
        self.up.wait_for(|up| *up).await.is_ok()
    }
}
