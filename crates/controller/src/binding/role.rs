//! Keeps one IAM role equal to a binding's desired role. The first pass makes no reads
//! (CreateRole, then the policies); a role that exists already is read once and then
//! adopted (ownership tags match), or left alone as a conflict. Every change is made in
//! place, so the role's unique id never changes.

use std::collections::{BTreeMap, BTreeSet};

use podidentity_api::annotations::TAG_CLUSTER_UID;
use podidentity_aws::api::{Iam, IamApi, IamRequest, NewRole, RoleDetails, RoleState};
use podidentity_aws::error::{AwsError, ErrorKind};
use podidentity_iam::build::{DesiredRole, INLINE_POLICY_NAME};
use podidentity_iam::compare::text_equivalent;

/// What differs between IAM and the desired role (the words of `DriftCorrected` Events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    TrustPolicy,
    InlinePolicy,
    ManagedPolicies,
    PermissionsBoundary,
    Tags,
    DescriptionOrSession,
}

impl Change {
    pub fn describe(self) -> &'static str {
        match self {
            Change::TrustPolicy => "trust policy",
            Change::InlinePolicy => "inline policy",
            Change::ManagedPolicies => "managed policies",
            Change::PermissionsBoundary => "permissions boundary",
            Change::Tags => "tags",
            Change::DescriptionOrSession => "description or max session duration",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum RoleOutcome {
    Created(RoleState),
    /// The role existed (ours) and these were put right.
    Converged {
        role: RoleState,
        changed: Vec<Change>,
    },
    /// A role of that name exists that this binding will not touch: nothing was.
    Conflict {
        name: String,
        why: ConflictKind,
    },
    /// The role exists (made or converged) with everything but these managed policies,
    /// which IAM says do not exist: only a change of the spec can fix that.
    Incomplete {
        role: RoleState,
        missing_policies: Vec<String>,
    },
}

/// Why a role of the binding's name is not the binding's to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConflictKind {
    /// It lacks the binding's ownership tags (made by hand, another tool, cluster or
    /// namespace).
    NotOurs,
    /// It is the binding's, but at another path (`roles.path` changed). IAM cannot move a
    /// role; deleting it would change its unique id, so that is the user's call.
    OtherPath { path: String, wanted: String },
    /// It exists outside the operator's path: the operator's own IAM policy does not let
    /// it read the role (GetRole denied after CreateRole found the name taken).
    OutsidePath,
    /// Its tags name this cluster, namespace and binding, but another cluster's uid: two
    /// clusters share one `clusterName` in this account.
    OtherCluster { uid: String, ours: String },
}

impl ConflictKind {
    /// What the user is told (the condition message and the Event).
    pub fn explain(&self, name: &str) -> String {
        match self {
            ConflictKind::NotOurs => format!(
                "IAM role {name} exists and is not this binding's (its ownership tags do not \
                 match); it was left untouched: delete or retag it, or rename the binding"
            ),
            ConflictKind::OtherPath { path, wanted } => format!(
                "IAM role {name} is this binding's but lies at path {path}, not {wanted} \
                 (roles.path changed); IAM cannot move a role, so it was left untouched: delete \
                 it (the next pass makes it at {wanted}; its unique id and ARN change) or set \
                 roles.path back to {path}"
            ),
            ConflictKind::OtherCluster { uid, ours } => format!(
                "IAM role {name} belongs to another cluster with the same clusterName (its \
                 podidentity.io/cluster-uid tag is {uid}; this cluster's kube-system uid is \
                 {ours}); it was left untouched: give each cluster its own clusterName"
            ),
            ConflictKind::OutsidePath => format!(
                "IAM role {name} exists outside the operator's path (reading it was denied); it \
                 was left untouched: delete or rename it, or rename the binding"
            ),
        }
    }
}

/// What converging a role changed, and the managed policies that could not be attached
/// because they do not exist.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Convergence {
    pub changed: Vec<Change>,
    pub missing_policies: Vec<String>,
}

/// Attaches a managed policy; a policy that does not exist is reported, not an error.
async fn attach(
    iam: &Iam<'_>,
    role: &str,
    arn: &str,
    missing: &mut Vec<String>,
) -> Result<(), AwsError> {
    match iam
        .run(IamRequest::AttachRolePolicy {
            name: role.to_string(),
            arn: arn.to_string(),
        })
        .await
    {
        // The role was just made or read, so NoSuchEntity here is the policy's.
        Err(err) if err.kind == ErrorKind::NotFound => {
            missing.push(arn.to_string());
            Ok(())
        }
        other => other,
    }
}

/// What cleanup needs to find a binding's role and prove it is the binding's: its name and
/// the ownership tags. Cleanup works from this alone, so a spec that no longer validates
/// can never block deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleIdentity {
    pub name: String,
    pub ownership: BTreeMap<String, String>,
}

impl RoleIdentity {
    pub fn new(name: String, ownership: BTreeMap<String, String>) -> Self {
        Self { name, ownership }
    }

    pub fn of(desired: &DesiredRole) -> Self {
        let ownership = desired
            .tags
            .iter()
            .filter(|(key, _)| {
                OWNERSHIP_KEYS.contains(&key.as_str()) || key.as_str() == TAG_CLUSTER_UID
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Self {
            name: desired.name.clone(),
            ownership,
        }
    }

    /// Whether a role with these tags is this binding's, or why not. The three ownership
    /// tags must all match; a cluster uid, where both sides have one, must match too. A
    /// role without one was made before the tag existed (it is adopted, and gets it); a
    /// controller that does not know its cluster's uid judges by the three alone.
    pub fn ownership(&self, role_tags: &BTreeMap<String, String>) -> Result<(), ConflictKind> {
        let three_match = OWNERSHIP_KEYS.iter().all(|key| {
            self.ownership
                .get(*key)
                .is_some_and(|value| role_tags.get(*key) == Some(value))
        });
        if !three_match {
            return Err(ConflictKind::NotOurs);
        }
        match (
            self.ownership.get(TAG_CLUSTER_UID),
            role_tags.get(TAG_CLUSTER_UID),
        ) {
            (Some(ours), Some(theirs)) if ours != theirs => Err(ConflictKind::OtherCluster {
                uid: theirs.clone(),
                ours: ours.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Whether a role with these tags is this binding's.
    pub fn owns(&self, role_tags: &BTreeMap<String, String>) -> bool {
        self.ownership(role_tags).is_ok()
    }
}

const OWNERSHIP_KEYS: [&str; 3] = [
    podidentity_api::annotations::TAG_CLUSTER,
    podidentity_api::annotations::TAG_NAMESPACE,
    podidentity_api::annotations::TAG_BINDING,
];

/// What the caller knows about the role before the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    /// Never made (no role id in status): try CreateRole first, no reads.
    New,
    /// Made before: read it and converge; no CreateRole attempt.
    Exists,
}

/// A failed call, with the role if it is known to exist by then: a pass that made the
/// role and failed after must not make it again.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct RoleError {
    pub error: AwsError,
    pub role: Option<RoleState>,
}

impl From<AwsError> for RoleError {
    fn from(error: AwsError) -> Self {
        Self { error, role: None }
    }
}

fn with_role(role: &RoleState) -> impl FnOnce(AwsError) -> RoleError + '_ {
    move |error| RoleError {
        error,
        role: Some(role.clone()),
    }
}

/// Adopts an existing role; a failure part way still knows the role.
async fn adopt_known(
    api: &dyn IamApi,
    desired: &DesiredRole,
    existing: RoleState,
) -> Result<RoleOutcome, RoleError> {
    let known = existing.clone();
    adopt(api, desired, existing)
        .await
        .map_err(with_role(&known))
}

/// Creates the role, or adopts and converges it, or reports a conflict.
pub async fn ensure_role(
    api: &dyn IamApi,
    desired: &DesiredRole,
    known: Known,
) -> Result<RoleOutcome, RoleError> {
    let iam = Iam::new(api);
    if known == Known::Exists {
        match iam.get_role(&desired.name).await {
            Ok(existing) => return adopt_known(api, desired, existing).await,
            // Deleted by hand: make it again.
            Err(err) if err.kind == ErrorKind::NotFound => {}
            Err(err) => return Err(err.into()),
        }
    }
    let created = iam
        .create_role(NewRole {
            name: desired.name.clone(),
            path: desired.path.clone(),
            trust_policy: desired.trust_policy.minified(),
            description: desired.description.clone(),
            max_session_duration_seconds: desired.max_session_duration_seconds,
            permissions_boundary_arn: desired.permissions_boundary_arn.clone(),
            tags: desired.tags.clone(),
        })
        .await;
    match created {
        Ok(role) => {
            if let Some(policy) = &desired.inline_policy {
                iam.run(IamRequest::PutRolePolicy {
                    name: desired.name.clone(),
                    policy_name: INLINE_POLICY_NAME.into(),
                    document: policy.minified(),
                })
                .await
                .map_err(with_role(&role))?;
            }
            let mut missing_policies = Vec::new();
            for arn in &desired.managed_policy_arns {
                attach(&iam, &desired.name, arn, &mut missing_policies)
                    .await
                    .map_err(with_role(&role))?;
            }
            if missing_policies.is_empty() {
                Ok(RoleOutcome::Created(role))
            } else {
                Ok(RoleOutcome::Incomplete {
                    role,
                    missing_policies,
                })
            }
        }
        Err(err) if err.kind == ErrorKind::AlreadyExists => {
            match iam.get_role(&desired.name).await {
                Ok(existing) => adopt_known(api, desired, existing).await,
                // The operator's policy lets it read roles under its path only.
                Err(err) if err.kind == ErrorKind::AccessDenied => Ok(RoleOutcome::Conflict {
                    name: desired.name.clone(),
                    why: ConflictKind::OutsidePath,
                }),
                Err(err) => Err(err.into()),
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// A role of the desired name exists: converge it if it is ours, else report a conflict.
async fn adopt(
    api: &dyn IamApi,
    desired: &DesiredRole,
    existing: RoleState,
) -> Result<RoleOutcome, AwsError> {
    if let Err(why) = RoleIdentity::of(desired).ownership(&existing.tags) {
        return Ok(RoleOutcome::Conflict {
            name: existing.name,
            why,
        });
    }
    if existing.path != desired.path {
        return Ok(RoleOutcome::Conflict {
            name: existing.name,
            why: ConflictKind::OtherPath {
                path: existing.path,
                wanted: desired.path.clone(),
            },
        });
    }
    let details = read_details(&Iam::new(api), existing).await?;
    let convergence = converge(api, desired, &details, true).await?;
    if !convergence.missing_policies.is_empty() {
        return Ok(RoleOutcome::Incomplete {
            role: details.role,
            missing_policies: convergence.missing_policies,
        });
    }
    Ok(RoleOutcome::Converged {
        role: details.role,
        changed: convergence.changed,
    })
}

/// Reads what the authorization sweep would return for one role.
pub async fn read_details(iam: &Iam<'_>, role: RoleState) -> Result<RoleDetails, AwsError> {
    let mut inline_policies = BTreeMap::new();
    for policy_name in iam.list_role_policies(&role.name).await? {
        let document = iam.get_role_policy(&role.name, &policy_name).await?;
        inline_policies.insert(policy_name, document);
    }
    let attached_policy_arns = iam.list_attached_role_policies(&role.name).await?;
    Ok(RoleDetails {
        role,
        inline_policies,
        attached_policy_arns,
    })
}

/// What differs between IAM's role and the desired one. `full` also compares description
/// and session length, which GetAccountAuthorizationDetails does not return.
pub fn differences(desired: &DesiredRole, actual: &RoleDetails, full: bool) -> Vec<Change> {
    let mut changes = BTreeSet::new();
    let role = &actual.role;
    if text_equivalent(&role.trust_policy, &desired.trust_policy.to_value()) != Ok(true) {
        changes.insert(Change::TrustPolicy);
    }
    let inline_ok = match &desired.inline_policy {
        Some(policy) => {
            actual.inline_policies.len() == 1
                && actual
                    .inline_policies
                    .get(INLINE_POLICY_NAME)
                    .is_some_and(|document| {
                        text_equivalent(document, &policy.to_value()) == Ok(true)
                    })
        }
        None => actual.inline_policies.is_empty(),
    };
    if !inline_ok {
        changes.insert(Change::InlinePolicy);
    }
    let wanted: BTreeSet<&String> = desired.managed_policy_arns.iter().collect();
    let attached: BTreeSet<&String> = actual.attached_policy_arns.iter().collect();
    if wanted != attached {
        changes.insert(Change::ManagedPolicies);
    }
    if role.permissions_boundary_arn != desired.permissions_boundary_arn {
        changes.insert(Change::PermissionsBoundary);
    }
    if role.tags != desired.tags {
        changes.insert(Change::Tags);
    }
    if full
        && (role.description != desired.description
            || role.max_session_duration_seconds != desired.max_session_duration_seconds)
    {
        changes.insert(Change::DescriptionOrSession);
    }
    changes.into_iter().collect()
}

/// Puts right every difference, in place, and says what it changed.
pub async fn converge(
    api: &dyn IamApi,
    desired: &DesiredRole,
    actual: &RoleDetails,
    full: bool,
) -> Result<Convergence, AwsError> {
    let iam = Iam::new(api);
    let name = || desired.name.clone();
    let changes = differences(desired, actual, full);
    let mut missing_policies = Vec::new();
    for change in &changes {
        match change {
            Change::TrustPolicy => {
                iam.run(IamRequest::UpdateAssumeRolePolicy {
                    name: name(),
                    document: desired.trust_policy.minified(),
                })
                .await?;
            }
            Change::InlinePolicy => {
                for policy_name in actual.inline_policies.keys() {
                    let keep = policy_name == INLINE_POLICY_NAME && desired.inline_policy.is_some();
                    if !keep {
                        ignore_missing(
                            iam.run(IamRequest::DeleteRolePolicy {
                                name: name(),
                                policy_name: policy_name.clone(),
                            })
                            .await,
                        )?;
                    }
                }
                if let Some(policy) = &desired.inline_policy {
                    iam.run(IamRequest::PutRolePolicy {
                        name: name(),
                        policy_name: INLINE_POLICY_NAME.into(),
                        document: policy.minified(),
                    })
                    .await?;
                }
            }
            Change::ManagedPolicies => {
                for arn in &desired.managed_policy_arns {
                    if !actual.attached_policy_arns.contains(arn) {
                        attach(&iam, &desired.name, arn, &mut missing_policies).await?;
                    }
                }
                for arn in &actual.attached_policy_arns {
                    if !desired.managed_policy_arns.contains(arn) {
                        ignore_missing(
                            iam.run(IamRequest::DetachRolePolicy {
                                name: name(),
                                arn: arn.clone(),
                            })
                            .await,
                        )?;
                    }
                }
            }
            Change::PermissionsBoundary => match &desired.permissions_boundary_arn {
                Some(arn) => {
                    iam.run(IamRequest::PutRolePermissionsBoundary {
                        name: name(),
                        arn: arn.clone(),
                    })
                    .await?
                }
                None => ignore_missing(
                    iam.run(IamRequest::DeleteRolePermissionsBoundary { name: name() })
                        .await,
                )?,
            },
            Change::Tags => {
                let stale: Vec<String> = actual
                    .role
                    .tags
                    .keys()
                    .filter(|key| !desired.tags.contains_key(*key) && !key.starts_with("aws:"))
                    .cloned()
                    .collect();
                if !stale.is_empty() {
                    iam.run(IamRequest::UntagRole {
                        name: name(),
                        keys: stale,
                    })
                    .await?;
                }
                let missing: BTreeMap<String, String> = desired
                    .tags
                    .iter()
                    .filter(|(key, value)| actual.role.tags.get(*key) != Some(value))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !missing.is_empty() {
                    iam.run(IamRequest::TagRole {
                        name: name(),
                        tags: missing,
                    })
                    .await?;
                }
            }
            Change::DescriptionOrSession => {
                iam.run(IamRequest::UpdateRole {
                    name: name(),
                    description: desired.description.clone(),
                    max_session_duration_seconds: desired.max_session_duration_seconds,
                })
                .await?;
            }
        }
    }
    Ok(Convergence {
        changed: changes,
        missing_policies,
    })
}

/// "Already gone" is success for every cleanup call.
fn ignore_missing(result: Result<(), AwsError>) -> Result<(), AwsError> {
    match result {
        Err(err) if err.kind == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Deletion with `Delete`: detach, delete inline policies, leave instance profiles,
/// delete. A role already gone is success; a role that is not ours is never touched.
pub async fn delete_role(api: &dyn IamApi, role: &RoleIdentity) -> Result<(), AwsError> {
    let iam = Iam::new(api);
    let Some(_) = owned_role(&iam, role).await? else {
        return Ok(());
    };
    let name = || role.name.clone();
    strip_permissions(&iam, &role.name).await?;
    for instance_profile in absent_is_empty(iam.list_instance_profiles_for_role(&role.name).await)?
    {
        ignore_missing(
            iam.run(IamRequest::RemoveRoleFromInstanceProfile {
                name: name(),
                instance_profile,
            })
            .await,
        )?;
    }
    ignore_missing(iam.run(IamRequest::DeleteRole { name: name() }).await)
}

/// Detaches every managed policy and deletes every inline policy; says how many it took
/// away.
async fn strip_permissions(iam: &Iam<'_>, role: &str) -> Result<usize, AwsError> {
    let mut taken = 0;
    for arn in absent_is_empty(iam.list_attached_role_policies(role).await)? {
        ignore_missing(
            iam.run(IamRequest::DetachRolePolicy {
                name: role.to_string(),
                arn,
            })
            .await,
        )?;
        taken += 1;
    }
    for policy_name in absent_is_empty(iam.list_role_policies(role).await)? {
        ignore_missing(
            iam.run(IamRequest::DeleteRolePolicy {
                name: role.to_string(),
                policy_name,
            })
            .await,
        )?;
        taken += 1;
    }
    Ok(taken)
}

/// `onViolation: Revoke`: the role keeps its trust policy (pods still assume it) but loses
/// every permission. A role that is gone or not ours is left alone. Says how many policies
/// it took away.
pub async fn revoke_permissions(api: &dyn IamApi, role: &RoleIdentity) -> Result<usize, AwsError> {
    let iam = Iam::new(api);
    let Some(_) = owned_role(&iam, role).await? else {
        return Ok(0);
    };
    strip_permissions(&iam, &role.name).await
}

/// Deletion with `Retain`: the role stays; only the ownership tags go.
pub async fn retain_role(api: &dyn IamApi, role: &RoleIdentity) -> Result<(), AwsError> {
    let iam = Iam::new(api);
    let Some(_) = owned_role(&iam, role).await? else {
        return Ok(());
    };
    let keys = role.ownership.keys().cloned().collect();
    ignore_missing(
        iam.run(IamRequest::UntagRole {
            name: role.name.clone(),
            keys,
        })
        .await,
    )
}

/// The role, if it exists and is ours.
async fn owned_role(iam: &Iam<'_>, role: &RoleIdentity) -> Result<Option<RoleState>, AwsError> {
    match iam.get_role(&role.name).await {
        Ok(found) if role.owns(&found.tags) => Ok(Some(found)),
        Ok(_) => Ok(None),
        Err(err) if err.kind == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

fn absent_is_empty(result: Result<Vec<String>, AwsError>) -> Result<Vec<String>, AwsError> {
    match result {
        Err(err) if err.kind == ErrorKind::NotFound => Ok(Vec::new()),
        other => other,
    }
}
