//! The drift sweep's reading: every role under the operator's path read in pages of up to
//! 1,000 (GetAccountAuthorizationDetails) and compared with what the bindings want. N roles
//! cost about N/1000 reads, not three calls per role. Putting drift back is the binding
//! reconciler's job (see `drift`).

use std::collections::BTreeMap;

use podidentity_aws::api::{Iam, IamApi, RoleDetails};
use podidentity_aws::error::AwsError;
use podidentity_iam::build::DesiredRole;

use crate::role::{Change, RoleIdentity};

/// IAM's largest page.
pub const PAGE_SIZE: i32 = 1000;

/// Every role under `path_prefix`, by name, and the number of pages it took.
pub async fn read_roles(
    api: &dyn IamApi,
    path_prefix: &str,
) -> Result<(BTreeMap<String, RoleDetails>, usize), AwsError> {
    let iam = Iam::new(api);
    let mut roles = BTreeMap::new();
    let mut marker = None;
    let mut pages = 0;
    loop {
        let page = iam.authorization_page(marker, PAGE_SIZE).await?;
        pages += 1;
        for detail in page.roles {
            if detail.role.path.starts_with(path_prefix) {
                roles.insert(detail.role.name.clone(), detail);
            }
        }
        marker = page.next_marker;
        if marker.is_none() {
            return Ok((roles, pages));
        }
    }
}

/// One role's state against its desired state.
#[derive(Clone, Debug, PartialEq)]
pub enum Finding {
    /// Differs; these were (or would be) put back.
    Drifted(Vec<Change>),
    /// The role is gone: the binding's next reconcile makes it again.
    Missing,
    /// A role of that name exists but is not this binding's: left alone.
    NotOurs,
}

/// Compares desired roles with what IAM holds; only roles that need attention appear.
pub fn find_drift(
    desired: &[DesiredRole],
    actual: &BTreeMap<String, RoleDetails>,
) -> Vec<(String, Finding)> {
    desired
        .iter()
        .filter_map(|want| {
            let finding = match actual.get(&want.name) {
                None => Finding::Missing,
                Some(details) if !RoleIdentity::of(want).owns(&details.role.tags) => {
                    Finding::NotOurs
                }
                Some(details) => {
                    let changes = crate::role::differences(want, details, false);
                    if changes.is_empty() {
                        return None;
                    }
                    Finding::Drifted(changes)
                }
            };
            Some((want.name.clone(), finding))
        })
        .collect()
}

/// What one sweep found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Survey {
    pub pages: usize,
    pub roles_read: usize,
    /// Role name → what needs attention. Roles in line do not appear.
    pub findings: BTreeMap<String, Finding>,
}

/// Reads every role once and compares it with what the bindings want. It changes nothing:
/// the bindings whose roles drifted are reconciled, so that one writer (the binding's own
/// pass, serialized per binding) puts them back and reports it.
pub async fn survey(
    api: &dyn IamApi,
    desired: &[DesiredRole],
    path_prefix: &str,
) -> Result<Survey, AwsError> {
    let (actual, pages) = read_roles(api, path_prefix).await?;
    Ok(Survey {
        pages,
        roles_read: actual.len(),
        findings: find_drift(desired, &actual).into_iter().collect(),
    })
}
