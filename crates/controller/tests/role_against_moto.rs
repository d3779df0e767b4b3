//! One IAM role kept equal to its binding, against moto's IAM: create without reads,
//! changes in place, drift put back, conflicts left alone, adoption after a crash,
//! deletion and retention, and convergence through injected faults.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use podidentity_api::config::{AwsConfig, OidcConfig, OperatorConfig, RolesConfig};
use podidentity_api::{PodIdentityBindingSpec, Statement};
use podidentity_aws::api::{Iam, IamApi, IamRequest, NewRole, RoleDetails};
use podidentity_aws::counting::{CallLog, Counted};
use podidentity_aws::error::ErrorKind;
use podidentity_aws::faults::{Fault, Faulty};
use podidentity_aws::sdk::SdkIam;
use podidentity_controller::binding::role::{
    Change, Known, RoleIdentity, RoleOutcome, converge, delete_role, differences, ensure_role,
    read_details, retain_role,
};
use podidentity_iam::build::{DesiredRole, INLINE_POLICY_NAME};
use podidentity_iam::{BindingRef, Guardrails, desired_state};

fn endpoint() -> Option<String> {
    podidentity_aws::testing::emulator_endpoint()
}

async fn moto(endpoint: String) -> SdkIam {
    SdkIam::connect(&podidentity_aws::testing::emulator_settings(&endpoint)).await
}

/// A cluster name no other test uses, so tests share moto without meeting.
fn cluster() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("c{}", nanos % 10_000_000_000)
}

fn config(cluster: &str) -> OperatorConfig {
    OperatorConfig {
        cluster_name: cluster.into(),
        oidc: OidcConfig {
            issuer_url: Some("https://oidc.example.com/id/ABC".into()),
            ..OidcConfig::default()
        },
        roles: RolesConfig {
            permissions_boundary_arn: Some("arn:aws:iam::aws:policy/PowerUserAccess".into()),
            ..RolesConfig::default()
        },
        aws: AwsConfig {
            account_id: Some("123456789012".into()),
            ..AwsConfig::default()
        },
        ..OperatorConfig::default()
    }
}

fn spec() -> PodIdentityBindingSpec {
    let mut spec = PodIdentityBindingSpec {
        service_account_name: "orders".into(),
        ..PodIdentityBindingSpec::default()
    };
    spec.permissions.statements.push(Statement {
        sid: Some("Read".into()),
        actions: vec!["s3:GetObject".into()],
        resources: vec!["arn:aws:s3:::shop-orders/*".into()],
        ..Statement::default()
    });
    spec.permissions.managed_policy_arns =
        vec!["arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess".into()];
    spec.role.tags = BTreeMap::from([("team".into(), "shop".into())]);
    spec
}

fn desired(cluster: &str, spec: &PodIdentityBindingSpec) -> DesiredRole {
    desired_in(&config(cluster), spec)
}

fn desired_in(config: &OperatorConfig, spec: &PodIdentityBindingSpec) -> DesiredRole {
    let config = config.clone();
    desired_state(
        BindingRef::new("shop", "orders-s3"),
        spec,
        &config,
        &Guardrails::from_config(&config),
    )
    .unwrap_or_else(|err| panic!("{err}"))
    .role
}

async fn details(api: &dyn IamApi, name: &str) -> RoleDetails {
    let iam = Iam::new(api);
    let role = iam
        .get_role(name)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    read_details(&iam, role)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
}

#[tokio::test]
async fn create_makes_exactly_the_desired_role_without_reads() {
    let Some(endpoint) = endpoint() else { return };
    let log = CallLog::default();
    let api = Counted::new(moto(endpoint).await, log.clone());
    let want = desired(&cluster(), &spec());

    let outcome = ensure_role(&api, &want, Known::New)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(matches!(outcome, RoleOutcome::Created(_)), "{outcome:?}");
    assert_eq!(log.calls("CreateRole"), 1);
    assert_eq!(log.calls("PutRolePolicy"), 1);
    assert_eq!(log.calls("AttachRolePolicy"), 1);
    assert_eq!(
        log.total(),
        3,
        "the first pass makes no reads: {:?}",
        log.snapshot()
    );

    let actual = details(&api, &want.name).await;
    assert_eq!(
        differences(&want, &actual, true),
        vec![],
        "the role in IAM is exactly the desired one"
    );
    assert_eq!(actual.role.tags, want.tags);
    assert_eq!(
        actual.role.permissions_boundary_arn.as_deref(),
        Some("arn:aws:iam::aws:policy/PowerUserAccess")
    );
    assert_eq!(
        actual.attached_policy_arns,
        ["arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess"]
    );
    assert!(actual.inline_policies[INLINE_POLICY_NAME].contains("shop-orders"));
}

#[tokio::test]
async fn spec_changes_are_made_in_place_and_the_role_id_stays() {
    let Some(endpoint) = endpoint() else { return };
    let api = moto(endpoint).await;
    let cluster = cluster();
    let first = desired(&cluster, &spec());
    let RoleOutcome::Created(created) = ensure_role(&api, &first, Known::New)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
    else {
        panic!("expected a new role")
    };

    let mut changed = spec();
    changed.permissions.statements[0]
        .actions
        .push("s3:PutObject".into());
    changed.permissions.managed_policy_arns =
        vec!["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess".into()];
    changed.role.tags = BTreeMap::from([("team".into(), "payments".into())]);
    changed.audience = "vault".into();
    changed.role.max_session_duration_seconds = 7200;
    let second = desired(&cluster, &changed);
    let outcome = ensure_role(&api, &second, Known::Exists)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let RoleOutcome::Converged { role, changed } = outcome else {
        panic!("expected convergence, got {outcome:?}")
    };
    assert_eq!(
        role.id, created.id,
        "changed in place: the unique id is the same"
    );
    assert_eq!(
        changed,
        vec![
            Change::TrustPolicy,
            Change::InlinePolicy,
            Change::ManagedPolicies,
            Change::Tags,
            Change::DescriptionOrSession
        ]
    );
    let actual = details(&api, &second.name).await;
    assert_eq!(differences(&second, &actual, true), vec![]);
    assert_eq!(actual.role.id, created.id);
}

#[tokio::test]
async fn drift_made_outside_is_seen_and_put_back() {
    let Some(endpoint) = endpoint() else { return };
    let api = moto(endpoint).await;
    let want = desired(&cluster(), &spec());
    ensure_role(&api, &want, Known::New)
        .await
        .unwrap_or_else(|err| panic!("{err}"));

    // Someone edits the role by hand.
    let iam = Iam::new(&api);
    let widened = want.trust_policy.minified().replace(
        "system:serviceaccount:shop:orders",
        "system:serviceaccount:*",
    );
    iam.run(IamRequest::UpdateAssumeRolePolicy {
        name: want.name.clone(),
        document: widened,
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    iam.run(IamRequest::PutRolePolicy {
        name: want.name.clone(),
        policy_name: "added-by-hand".into(),
        document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#.into(),
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    iam.run(IamRequest::AttachRolePolicy {
        name: want.name.clone(),
        arn: "arn:aws:iam::aws:policy/AmazonEC2ReadOnlyAccess".into(),
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    iam.run(IamRequest::DeleteRolePermissionsBoundary {
        name: want.name.clone(),
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));

    let drifted = details(&api, &want.name).await;
    let seen = differences(&want, &drifted, false);
    assert_eq!(
        seen,
        vec![
            Change::TrustPolicy,
            Change::InlinePolicy,
            Change::ManagedPolicies,
            Change::PermissionsBoundary
        ]
    );
    let fixed = converge(&api, &want, &drifted, false)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(fixed.changed, seen, "what was put back is what was seen");
    assert!(fixed.missing_policies.is_empty());
    let actual = details(&api, &want.name).await;
    assert_eq!(differences(&want, &actual, true), vec![]);
    assert!(!actual.inline_policies.contains_key("added-by-hand"));
}

#[tokio::test]
async fn a_managed_policy_that_does_not_exist_leaves_the_rest_of_the_role_in_place() {
    let Some(endpoint) = endpoint() else { return };
    let log = CallLog::default();
    let api = Counted::new(moto(endpoint).await, log.clone());
    let mut with_typo = spec();
    let typo = "arn:aws:iam::aws:policy/AmazonSQSReadOnlyAcess".to_string();
    with_typo.permissions.managed_policy_arns = vec![
        typo.clone(),
        "arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess".into(),
    ];
    let want = desired(&cluster(), &with_typo);

    let outcome = ensure_role(&api, &want, Known::New)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let RoleOutcome::Incomplete {
        role,
        missing_policies,
    } = outcome
    else {
        panic!("expected Incomplete, got {outcome:?}");
    };
    assert_eq!(missing_policies, std::slice::from_ref(&typo));
    let actual = details(&api, &want.name).await;
    assert_eq!(actual.role.id, role.id, "the role it made is kept");
    assert_eq!(
        actual.attached_policy_arns,
        ["arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess"],
        "the policies that exist are attached"
    );
    assert!(actual.inline_policies.contains_key(INLINE_POLICY_NAME));

    // The next pass knows the role exists: no second CreateRole, and the same answer.
    log.reset();
    let again = ensure_role(&api, &want, Known::Exists)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        matches!(&again, RoleOutcome::Incomplete { missing_policies, .. } if *missing_policies == [typo.clone()]),
        "{again:?}"
    );
    assert_eq!(log.calls("CreateRole"), 0);
    assert_eq!(
        log.calls("PutRolePolicy"),
        0,
        "what succeeded is not done again"
    );
    assert_eq!(
        log.calls("AttachRolePolicy"),
        1,
        "only the missing one is tried"
    );
}

#[tokio::test]
async fn a_failure_after_create_still_tells_which_role_was_made() {
    let Some(endpoint) = endpoint() else { return };
    let faulty = Faulty::new(moto(endpoint).await);
    let want = desired(&cluster(), &spec());
    faulty.inject("PutRolePolicy", Fault::Fail(ErrorKind::AccessDenied));
    let failure = ensure_role(&faulty, &want, Known::New)
        .await
        .err()
        .unwrap_or_else(|| panic!("PutRolePolicy was denied"));
    assert_eq!(failure.error.kind, ErrorKind::AccessDenied);
    let made = failure
        .role
        .unwrap_or_else(|| panic!("the role made is reported"));
    let actual = Iam::new(&faulty)
        .get_role(&want.name)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(made.id, actual.id);
}

#[tokio::test]
async fn a_role_that_is_not_ours_is_left_byte_for_byte() {
    let Some(endpoint) = endpoint() else { return };
    let log = CallLog::default();
    let api = Counted::new(moto(endpoint).await, log.clone());
    let want = desired(&cluster(), &spec());
    let iam = Iam::new(&api);
    iam.create_role(NewRole {
        name: want.name.clone(),
        path: "/handmade/".into(),
        trust_policy: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#.into(),
        description: "made by hand".into(),
        max_session_duration_seconds: 3600,
        permissions_boundary_arn: None,
        tags: BTreeMap::from([("owner".into(), "someone-else".into())]),
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    let before = details(&api, &want.name).await;
    log.reset();

    let outcome = ensure_role(&api, &want, Known::New)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        matches!(outcome, RoleOutcome::Conflict { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        log.writes(),
        1,
        "only the refused CreateRole: {:?}",
        log.snapshot()
    );
    assert_eq!(details(&api, &want.name).await, before, "untouched");
    // Deleting the binding must not delete someone else's role either.
    delete_role(&api, &RoleIdentity::of(&want))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(details(&api, &want.name).await, before);
}

/// Two clusters given one clusterName in one account: each tags its roles with its
/// kube-system uid, and neither adopts, changes or deletes the other's.
#[tokio::test]
async fn a_cluster_with_the_same_name_never_adopts_the_others_role() {
    let Some(endpoint) = endpoint() else { return };
    let log = CallLog::default();
    let api = Counted::new(moto(endpoint).await, log.clone());
    let name = cluster();
    let mut first = config(&name);
    first.cluster_uid = Some("uid-of-the-first-cluster".into());
    let mut second = config(&name);
    second.cluster_uid = Some("uid-of-the-second-cluster".into());
    let made = desired_in(&first, &spec());
    assert_eq!(
        made.tags
            .get("podidentity.io/cluster-uid")
            .map(String::as_str),
        Some("uid-of-the-first-cluster")
    );
    ensure_role(&api, &made, Known::New)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let before = details(&api, &made.name).await;

    // The second cluster's binding of the same namespace and name: same role name.
    let mut other_spec = spec();
    other_spec.permissions.statements[0].resources = vec!["arn:aws:s3:::elsewhere/*".into()];
    let theirs = desired_in(&second, &other_spec);
    assert_eq!(theirs.name, made.name);
    log.reset();
    for known in [Known::New, Known::Exists] {
        let outcome = ensure_role(&api, &theirs, known)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        let RoleOutcome::Conflict { why, .. } = &outcome else {
            panic!("{outcome:?}")
        };
        let message = why.explain(&theirs.name);
        assert!(
            message.contains("uid-of-the-first-cluster")
                && message.contains("uid-of-the-second-cluster")
                && message.contains("clusterName"),
            "{message}"
        );
    }
    assert_eq!(
        log.writes(),
        1,
        "only the refused CreateRole: {:?}",
        log.snapshot()
    );
    delete_role(&api, &RoleIdentity::of(&theirs))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    retain_role(&api, &RoleIdentity::of(&theirs))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(details(&api, &made.name).await, before, "untouched");
}

/// A role made before the cluster-uid tag existed is adopted by the three tags it has,
/// and gets the fourth.
#[tokio::test]
async fn a_role_made_before_the_cluster_uid_tag_is_adopted_and_tagged() {
    let Some(endpoint) = endpoint() else { return };
    let api = moto(endpoint).await;
    let name = cluster();
    let before_the_tag = desired_in(&config(&name), &spec());
    assert!(
        !before_the_tag
            .tags
            .contains_key("podidentity.io/cluster-uid")
    );
    let made = ensure_role(&api, &before_the_tag, Known::New)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let RoleOutcome::Created(made) = made else {
        panic!("{made:?}")
    };
    let mut now = config(&name);
    now.cluster_uid = Some("uid-of-this-cluster".into());
    let want = desired_in(&now, &spec());
    let outcome = ensure_role(&api, &want, Known::Exists)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let RoleOutcome::Converged { role, changed } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(changed, &vec![Change::Tags]);
    assert_eq!(role.id, made.id, "adopted in place");
    let after = details(&api, &want.name).await;
    assert_eq!(
        after
            .role
            .tags
            .get("podidentity.io/cluster-uid")
            .map(String::as_str),
        Some("uid-of-this-cluster")
    );
}

#[tokio::test]
async fn a_crash_between_create_and_policies_is_finished_by_the_next_pass() {
    let Some(endpoint) = endpoint() else { return };
    let faulty = Faulty::new(moto(endpoint).await);
    let want = desired(&cluster(), &spec());
    // The process dies right after CreateRole went through.
    faulty.inject("PutRolePolicy", Fault::Fail(ErrorKind::Unavailable));
    assert!(ensure_role(&faulty, &want, Known::New).await.is_err());
    let half = details(&faulty, &want.name).await;
    assert!(half.inline_policies.is_empty() && half.attached_policy_arns.is_empty());

    // The next pass (a restart knows nothing) adopts the role by its tags and finishes it.
    let outcome = ensure_role(&faulty, &want, Known::New)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let RoleOutcome::Converged { role, changed } = outcome else {
        panic!("expected adoption, got {outcome:?}")
    };
    assert_eq!(role.id, half.role.id, "the same role, no second one");
    assert_eq!(changed, vec![Change::InlinePolicy, Change::ManagedPolicies]);
    assert_eq!(
        differences(&want, &details(&faulty, &want.name).await, true),
        vec![]
    );
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_adopted() {
    let Some(endpoint) = endpoint() else { return };
    let faulty = Faulty::new(moto(endpoint).await);
    let want = desired(&cluster(), &spec());
    faulty.inject("CreateRole", Fault::SucceedThenDrop);
    assert_eq!(
        ensure_role(&faulty, &want, Known::New)
            .await
            .err()
            .map(|e| e.error.kind),
        Some(ErrorKind::Unavailable)
    );
    let outcome = ensure_role(&faulty, &want, Known::New)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        matches!(outcome, RoleOutcome::Converged { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        differences(&want, &details(&faulty, &want.name).await, true),
        vec![]
    );
}

#[tokio::test]
async fn throttling_5xx_and_timeouts_between_calls_still_converge_to_one_role() {
    let Some(endpoint) = endpoint() else { return };
    let log = CallLog::default();
    let faulty = Arc::new(Faulty::new(moto(endpoint).await));
    let api = Counted::new(faulty.clone(), log.clone());
    let want = desired(&cluster(), &spec());
    faulty.inject("AttachRolePolicy", Fault::Fail(ErrorKind::Throttled));
    faulty.inject("GetRole", Fault::Fail(ErrorKind::Unavailable));
    faulty.inject(
        "PutRolePolicy",
        Fault::Hang(std::time::Duration::from_millis(100)),
    );
    faulty.inject("PutRolePolicy", Fault::SucceedThenDrop);

    // The controller retries a failed pass with backoff; here, immediately.
    let mut passes = 0;
    let mut known = Known::New;
    let outcome = loop {
        passes += 1;
        assert!(passes <= 10, "no convergence after 10 passes");
        match ensure_role(&api, &want, known).await {
            Ok(outcome) => break outcome,
            Err(err) => {
                assert!(err.error.kind.is_transient(), "{err}");
                known = Known::Exists;
            }
        }
    };
    assert!(!matches!(outcome, RoleOutcome::Conflict { .. }));
    assert_eq!(faulty.pending(), 0, "every fault fired");
    assert_eq!(
        log.calls("CreateRole"),
        1,
        "one role was ever created: {:?}",
        log.snapshot()
    );
    assert_eq!(
        differences(&want, &details(&api, &want.name).await, true),
        vec![]
    );
}

#[tokio::test]
async fn delete_removes_everything_and_already_gone_is_success() {
    let Some(endpoint) = endpoint() else { return };
    let api = moto(endpoint).await;
    let want = desired(&cluster(), &spec());
    ensure_role(&api, &want, Known::New)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let in_profile = put_in_instance_profile(&want.name).await;

    delete_role(&api, &RoleIdentity::of(&want))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let iam = Iam::new(&api);
    assert_eq!(
        iam.get_role(&want.name).await.err().map(|e| e.kind),
        Some(ErrorKind::NotFound)
    );
    assert!(in_profile, "the role had been in an instance profile");
    // Deleted by hand (or by a previous pass) before: still success.
    delete_role(&api, &RoleIdentity::of(&want))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
}

/// Puts the role in an instance profile, as another tool would (the operator never
/// creates instance profiles, so this talks to moto through the SDK directly).
async fn put_in_instance_profile(role: &str) -> bool {
    let Ok(endpoint) = std::env::var("PODIDENTITY_TEST_IAM_ENDPOINT") else {
        return false;
    };
    let config =
        podidentity_aws::sdk::sdk_config(&podidentity_aws::testing::emulator_settings(&endpoint))
            .await;
    let raw = aws_sdk_iam::Client::new(&config);
    let profile = format!("{role}-profile");
    raw.create_instance_profile()
        .instance_profile_name(&profile)
        .send()
        .await
        .is_ok()
        && raw
            .add_role_to_instance_profile()
            .instance_profile_name(&profile)
            .role_name(role)
            .send()
            .await
            .is_ok()
}

#[tokio::test]
async fn retain_keeps_the_role_and_drops_only_the_ownership_tags() {
    let Some(endpoint) = endpoint() else { return };
    let api = moto(endpoint).await;
    let want = desired(&cluster(), &spec());
    let RoleOutcome::Created(created) = ensure_role(&api, &want, Known::New)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
    else {
        panic!("expected a new role")
    };
    retain_role(&api, &RoleIdentity::of(&want))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let kept = details(&api, &want.name).await;
    assert_eq!(kept.role.id, created.id);
    assert_eq!(
        kept.role.tags,
        BTreeMap::from([("team".into(), "shop".into())])
    );
    assert_eq!(
        kept.attached_policy_arns, want.managed_policy_arns,
        "permissions stay"
    );
    // No longer ours: a new binding of the same name would meet a conflict, not adopt it.
    let outcome = ensure_role(&api, &want, Known::New)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        matches!(outcome, RoleOutcome::Conflict { .. }),
        "{outcome:?}"
    );
}
