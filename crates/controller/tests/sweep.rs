//! The drift sweep: pages through every role, finds what changed outside, puts it back;
//! against moto, and against a paging fake that proves the read cost is per page.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use podidentity_api::config::{AwsConfig, OidcConfig, OperatorConfig};
use podidentity_api::{PodIdentityBindingSpec, Statement};
use podidentity_aws::api::{
    AuthorizationPage, Iam, IamApi, IamRequest, IamResponse, RoleDetails, RoleState,
};
use podidentity_aws::counting::{CallLog, Counted};
use podidentity_aws::error::AwsError;
use podidentity_aws::sdk::SdkIam;
use podidentity_controller::binding::role::{Change, Known, ensure_role};
use podidentity_controller::drift::sweep::{Finding, find_drift, read_roles, survey};
use podidentity_iam::build::DesiredRole;
use podidentity_iam::{BindingRef, Guardrails, desired_state};

fn desired(cluster: &str, namespace: &str, name: &str) -> DesiredRole {
    let config = OperatorConfig {
        cluster_name: cluster.into(),
        oidc: OidcConfig {
            issuer_url: Some("https://oidc.example.com/id/ABC".into()),
            ..OidcConfig::default()
        },
        aws: AwsConfig {
            account_id: Some("123456789012".into()),
            ..AwsConfig::default()
        },
        ..OperatorConfig::default()
    };
    let mut spec = PodIdentityBindingSpec {
        service_account_name: "app".into(),
        ..PodIdentityBindingSpec::default()
    };
    spec.permissions.statements.push(Statement {
        actions: vec!["sqs:ReceiveMessage".into()],
        resources: vec!["*".into()],
        ..Statement::default()
    });
    desired_state(
        BindingRef::new(namespace, name),
        &spec,
        &config,
        &Guardrails::from_config(&config),
    )
    .unwrap_or_else(|err| panic!("{err}"))
    .role
}

/// An account of `count` roles served in pages of `page_size`, counting page reads.
struct PagingAccount {
    roles: Vec<RoleDetails>,
    page_size: usize,
    reads: AtomicUsize,
}

impl IamApi for PagingAccount {
    fn call(&self, request: IamRequest) -> BoxFuture<'_, Result<IamResponse, AwsError>> {
        Box::pin(async move {
            match request {
                IamRequest::GetAccountAuthorizationDetails { marker, max_items } => {
                    self.reads.fetch_add(1, Ordering::SeqCst);
                    let size = self
                        .page_size
                        .min(usize::try_from(max_items).unwrap_or(usize::MAX));
                    let start: usize = marker.and_then(|m| m.parse().ok()).unwrap_or(0);
                    let end = (start + size).min(self.roles.len());
                    Ok(IamResponse::Page(AuthorizationPage {
                        roles: self.roles[start..end].to_vec(),
                        next_marker: (end < self.roles.len()).then(|| end.to_string()),
                    }))
                }
                other => Err(AwsError::new(
                    podidentity_aws::ErrorKind::Other,
                    other.operation(),
                    "not in this fake",
                )),
            }
        })
    }
}

fn as_details(want: &DesiredRole) -> RoleDetails {
    RoleDetails {
        role: RoleState {
            name: want.name.clone(),
            path: want.path.clone(),
            trust_policy: want.trust_policy.minified(),
            permissions_boundary_arn: want.permissions_boundary_arn.clone(),
            tags: want.tags.clone(),
            ..RoleState::default()
        },
        inline_policies: want
            .inline_policy
            .iter()
            .map(|p| {
                (
                    podidentity_iam::build::INLINE_POLICY_NAME.to_string(),
                    p.minified(),
                )
            })
            .collect(),
        attached_policy_arns: want.managed_policy_arns.clone(),
    }
}

#[tokio::test]
async fn reading_n_roles_costs_one_call_per_thousand() {
    for count in [1, 999, 1000, 1001, 5000] {
        let roles: Vec<RoleDetails> = (0..count)
            .map(|i| as_details(&desired("c", "ns", &format!("b{i}"))))
            .collect();
        let account = PagingAccount {
            roles,
            page_size: 1000,
            reads: AtomicUsize::new(0),
        };
        let (found, pages) = read_roles(&account, "/podidentity/c/")
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(found.len(), count);
        let expected = count.div_ceil(1000);
        assert_eq!(
            (pages, account.reads.load(Ordering::SeqCst)),
            (expected, expected),
            "{count} roles"
        );
    }
}

#[test]
fn drift_is_found_only_where_it_is() {
    let same = desired("c", "ns", "same");
    let drifted = desired("c", "ns", "drifted");
    let gone = desired("c", "ns", "gone");
    let taken = desired("c", "ns", "taken");
    let mut actual: BTreeMap<String, RoleDetails> = [&same, &drifted, &taken]
        .iter()
        .map(|d| (d.name.clone(), as_details(d)))
        .collect();
    if let Some(d) = actual.get_mut(&drifted.name) {
        d.attached_policy_arns
            .push("arn:aws:iam::aws:policy/AdministratorAccess".into());
        d.role.permissions_boundary_arn = Some("arn:aws:iam::aws:policy/Other".into());
    }
    if let Some(d) = actual.get_mut(&taken.name) {
        d.role.tags.clear();
    }
    let findings = find_drift(
        &[same, drifted.clone(), gone.clone(), taken.clone()],
        &actual,
    );
    assert_eq!(
        findings,
        vec![
            (
                drifted.name,
                Finding::Drifted(vec![Change::ManagedPolicies, Change::PermissionsBoundary])
            ),
            (gone.name, Finding::Missing),
            (taken.name, Finding::NotOurs),
        ]
    );
}

#[tokio::test]
async fn a_sweep_against_iam_finds_what_was_changed_and_writes_nothing() {
    let Some(endpoint) = podidentity_aws::testing::emulator_endpoint() else {
        return;
    };
    let sdk = SdkIam::connect(&podidentity_aws::testing::emulator_settings(&endpoint)).await;
    let log = CallLog::default();
    let api = Counted::new(sdk, log.clone());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let cluster = format!("sweep{}", nanos % 1_000_000_000);
    let wants: Vec<DesiredRole> = (0..3)
        .map(|i| desired(&cluster, "team", &format!("b{i}")))
        .collect();
    for want in &wants {
        ensure_role(&api, want, Known::New)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
    }
    let prefix = format!("/podidentity/{cluster}/");

    log.reset();
    let quiet = survey(&api, &wants, &prefix)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(quiet.roles_read, 3);
    assert!(quiet.findings.is_empty(), "{quiet:?}");
    assert_eq!(log.writes(), 0, "a sweep over roles in line writes nothing");
    assert_eq!(
        log.total(),
        quiet.pages as u64,
        "a sweep reads pages only: {:?}",
        log.snapshot()
    );

    let iam = Iam::new(&api);
    iam.run(IamRequest::AttachRolePolicy {
        name: wants[1].name.clone(),
        arn: "arn:aws:iam::aws:policy/AmazonEC2ReadOnlyAccess".into(),
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    iam.run(IamRequest::UpdateAssumeRolePolicy {
        name: wants[2].name.clone(),
        document: wants[2]
            .trust_policy
            .minified()
            .replace(":team:app", ":team:other"),
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    log.reset();
    let found = survey(&api, &wants, &prefix)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        found.findings,
        BTreeMap::from([
            (
                wants[1].name.clone(),
                Finding::Drifted(vec![Change::ManagedPolicies])
            ),
            (
                wants[2].name.clone(),
                Finding::Drifted(vec![Change::TrustPolicy])
            ),
        ])
    );
    assert_eq!(log.writes(), 0, "finding drift changes nothing");

    // What the binding's own pass does with a flagged role: read it and converge it.
    for want in &wants[1..] {
        ensure_role(&api, want, Known::Exists)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
    }
    let after = survey(&api, &wants, &prefix)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(after.findings.is_empty(), "put back for good: {after:?}");
}
