//! Passes in flight per AWS account. The binding controller runs a number of passes at
//! once for the whole process; with several accounts, a pass of an account IAM throttles
//! holds its place through the SDK's retries, so without lanes one slow account could take
//! every place and hold the others' bindings back. Each account gets a lane of
//! [`PER_ACCOUNT`] places, and the controller as many places as its lanes together; a pass
//! whose lane is full steps aside (requeued shortly) without judging or calling anything.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Passes in flight in one account. Unbounded, a start over 10,000 bindings began 10,000
/// passes together, each holding its request and buffers; IAM's budget, not this, limits
/// how fast roles are made (32 passes wait on 50 calls a second with room to spare).
pub const PER_ACCOUNT: u16 = 32;

/// How soon a pass that found its account's lane full is tried again.
pub const LANE_FULL_RETRY: Duration = Duration::from_secs(1);

/// One lane per account the operator acts in. With no other account there is no lane:
/// the controller's own limit is the one account's.
#[derive(Default)]
pub struct AccountLanes {
    /// The operator's own account's lane (`None`: no lanes at all).
    own: Option<Arc<Semaphore>>,
    others: BTreeMap<String, Arc<Semaphore>>,
}

impl AccountLanes {
    /// Lanes for the operator's own account and `others`; none when `others` is empty.
    pub fn new<'a>(others: impl IntoIterator<Item = &'a str>) -> Self {
        let lane = || Arc::new(Semaphore::new(usize::from(PER_ACCOUNT)));
        let others: BTreeMap<String, Arc<Semaphore>> = others
            .into_iter()
            .map(|id| (id.to_string(), lane()))
            .collect();
        let own = (!others.is_empty()).then(lane);
        Self { own, others }
    }

    /// Places in flight for the whole controller: every lane's.
    pub fn concurrency(&self) -> u16 {
        let lanes = u16::try_from(self.others.len() + 1).unwrap_or(u16::MAX);
        PER_ACCOUNT.saturating_mul(lanes)
    }

    /// A place in `account`'s lane (`None`: the operator's own), held for the pass;
    /// `Err` when the lane is full. Without lanes, or for an account with none (one not
    /// configured: its pass is refused before any call), always a place.
    pub fn enter(&self, account: Option<&str>) -> Result<Option<OwnedSemaphorePermit>, LaneFull> {
        let lane = match account {
            None => self.own.as_ref(),
            Some(id) => self.others.get(id),
        };
        let Some(lane) = lane else {
            return Ok(None);
        };
        lane.clone()
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| LaneFull)
    }
}

/// An account's lane has no free place.
#[derive(Debug, PartialEq, Eq)]
pub struct LaneFull;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_account_has_no_lane_and_the_controllers_own_limit() {
        let lanes = AccountLanes::new([]);
        assert_eq!(lanes.concurrency(), PER_ACCOUNT);
        let held: Vec<_> = (0..100).map(|_| lanes.enter(None)).collect();
        assert!(held.iter().all(|p| matches!(p, Ok(None))));
    }

    #[test]
    fn a_full_lane_leaves_the_other_accounts_their_places() {
        let lanes = AccountLanes::new(["444455556666", "777788889999"]);
        assert_eq!(lanes.concurrency(), 3 * PER_ACCOUNT);
        let slow: Vec<_> = (0..PER_ACCOUNT)
            .map(|_| lanes.enter(Some("444455556666")))
            .collect();
        assert!(slow.iter().all(|p| matches!(p, Ok(Some(_)))));
        assert_eq!(lanes.enter(Some("444455556666")).err(), Some(LaneFull));
        assert!(matches!(lanes.enter(Some("777788889999")), Ok(Some(_))));
        assert!(matches!(lanes.enter(None), Ok(Some(_))));
        // A place comes back when its pass ends.
        drop(slow);
        assert!(matches!(lanes.enter(Some("444455556666")), Ok(Some(_))));
    }
}
