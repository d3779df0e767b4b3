//! The cluster's EKS Pod Identity associations, counted: from EKS (every association of
//! the cluster, ours or not) at most once a minute while bindings ask for new ones, and
//! kept current between counts by this process's own creates and deletes. A shared handle
//! of the process (in `Context`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use podidentity_aws::AwsError;
use podidentity_aws::eks::AssociationApi;

/// How long a count from EKS stands (this process's own writes keep it current).
const RECOUNT_AFTER: Duration = Duration::from_secs(60);

/// The cluster's association count, shared by every pass of the process.
#[derive(Default)]
pub struct AssociationCount(Mutex<Option<Counted>>);

#[derive(Clone, Copy)]
struct Counted {
    associations: usize,
    at: Instant,
}

impl AssociationCount {
    /// The cluster's associations now: the last count if recent, else counted anew.
    pub async fn current(
        &self,
        api: &dyn AssociationApi,
        cluster: &str,
    ) -> Result<usize, AwsError> {
        if let Some(counted) = self.counted()
            && counted.at.elapsed() < RECOUNT_AFTER
        {
            return Ok(counted.associations);
        }
        let associations = api.count(cluster).await?;
        if let Ok(mut held) = self.0.lock() {
            *held = Some(Counted {
                associations,
                at: Instant::now(),
            });
        }
        Ok(associations)
    }

    /// The last count, if any (for the metrics).
    pub fn last(&self) -> Option<usize> {
        self.counted().map(|c| c.associations)
    }

    fn counted(&self) -> Option<Counted> {
        self.0.lock().ok().and_then(|held| *held)
    }

    /// This process made an association.
    pub fn made(&self) {
        self.adjust(|n| n.saturating_add(1));
    }

    /// This process deleted an association.
    pub fn removed(&self) {
        self.adjust(|n| n.saturating_sub(1));
    }

    fn adjust(&self, change: impl FnOnce(usize) -> usize) {
        if let Ok(mut held) = self.0.lock()
            && let Some(counted) = held.as_mut()
        {
            counted.associations = change(counted.associations);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_writes_keep_the_count_current_between_counts() {
        let count = AssociationCount::default();
        count.made();
        assert_eq!(count.last(), None, "nothing counted yet: nothing to adjust");
        if let Ok(mut held) = count.0.lock() {
            *held = Some(Counted {
                associations: 3,
                at: Instant::now(),
            });
        }
        count.made();
        count.removed();
        count.removed();
        assert_eq!(count.last(), Some(2));
    }
}
