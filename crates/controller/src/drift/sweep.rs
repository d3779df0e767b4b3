//! The drift sweep's reading: every role under the operator's path read in pages of up to
//! 1,000 (GetAccountAuthorizationDetails) and compared with what the bindings want. N roles
//! cost about N/1000 reads, not three calls per role. Putting drift back is the binding
//! reconciler's job (see the `drift` module).

use std::collections::{BTreeMap, BTreeSet};

use podidentity_aws::api::{Iam, IamApi, RoleDetails};
use podidentity_aws::error::AwsError;
use podidentity_iam::build::DesiredRole;

use crate::binding::role::{Change, RoleIdentity};

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

/// One role against what its binding wants; `None` when it is in line.
fn judge(want: &DesiredRole, actual: Option<&RoleDetails>) -> Option<Finding> {
    match actual {
        None => Some(Finding::Missing),
        Some(details) if !RoleIdentity::of(want).owns(&details.role.tags) => Some(Finding::NotOurs),
        Some(details) => {
            let changes = crate::binding::role::differences(want, details, false);
            (!changes.is_empty()).then_some(Finding::Drifted(changes))
        }
    }
}

/// Compares desired roles with what IAM holds; only roles that need attention appear.
pub fn find_drift(
    desired: &[DesiredRole],
    actual: &BTreeMap<String, RoleDetails>,
) -> Vec<(String, Finding)> {
    desired
        .iter()
        .filter_map(|want| {
            judge(want, actual.get(&want.name)).map(|finding| (want.name.clone(), finding))
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
    let wanted: BTreeMap<String, &DesiredRole> =
        desired.iter().map(|d| (d.name.clone(), d)).collect();
    survey_each(api, path_prefix, &wanted, |_, d| Some((*d).clone())).await
}

/// As [`survey`], a page at a time: each role is judged as its page arrives and then
/// dropped, and what a role should be is asked for (`desired_for`, given the role's entry
/// in `wanted`) only when IAM shows it. 10,000 roles never sit in memory at once, read or
/// wanted, and no role name is copied.
pub async fn survey_each<W>(
    api: &dyn IamApi,
    path_prefix: &str,
    wanted: &BTreeMap<String, W>,
    desired_for: impl Fn(&str, &W) -> Option<DesiredRole>,
) -> Result<Survey, AwsError> {
    let iam = Iam::new(api);
    let mut survey = Survey::default();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut marker = None;
    loop {
        let page = iam.authorization_page(marker, PAGE_SIZE).await?;
        survey.pages += 1;
        for detail in page.roles {
            if !detail.role.path.starts_with(path_prefix) {
                continue;
            }
            survey.roles_read += 1;
            let Some((name, entry)) = wanted.get_key_value(&detail.role.name) else {
                continue;
            };
            seen.insert(name);
            if let Some(want) = desired_for(name, entry)
                && let Some(finding) = judge(&want, Some(&detail))
            {
                survey.findings.insert(name.clone(), finding);
            }
        }
        marker = page.next_marker;
        if marker.is_none() {
            break;
        }
    }
    for name in wanted.keys().filter(|name| !seen.contains(name.as_str())) {
        survey.findings.insert(name.clone(), Finding::Missing);
    }
    Ok(survey)
}
