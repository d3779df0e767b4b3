//! EKS Pod Identity from a binding: the role trusts `pods.eks.amazonaws.com` for this
//! cluster, namespace and ServiceAccount, the association is made and kept in line
//! (moto's EKS, extended by scripts/moto_server.py, stands in for EKS), a ServiceAccount
//! whose association names another role is a conflict the operator never writes to, and
//! deletion takes the association (or, with Retain, keeps it); back under IRSA, the
//! association goes.

use std::collections::BTreeSet;
use std::time::Duration;

use podidentity_aws::api::{Iam, NewRole};
use podidentity_aws::eks::{AssociationApi, AssociationKey, AssociationOptions, NewAssociation};
use podidentity_e2e::Scenario;
use podidentity_e2e::scenario::ACCOUNT;
use podidentity_e2e::wait::{check, until};
use serde_json::{Value, json};

fn pod_identity_spec(account: &str, identity: Value) -> Value {
    json!({
        "serviceAccountName": account,
        "identity": identity,
        "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::reports/*"]}]},
    })
}

/// The role's trust policy as moto holds it.
async fn trust_of(s: &Scenario, role: &str) -> Value {
    let state = s.iam_role(role).await.expect("the role exists in IAM");
    serde_json::from_str(&state.trust_policy).expect("the trust policy is JSON")
}

/// The EKS calls through the proxy (the operator's), by operation.
fn eks_calls(s: &Scenario) -> Vec<(String, String)> {
    s.iam
        .calls()
        .into_iter()
        .filter(|c| c.action.starts_with("EKS:"))
        .map(|c| (c.action, c.params.get("Path").cloned().unwrap_or_default()))
        .collect()
}

pub async fn a_binding_gets_its_association_trust_and_no_irsa_annotation(s: Scenario) {
    let cluster = s.eks_cluster().await;
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("podid").await;
    s.create_service_account(&ns, "reports", json!({})).await;
    s.create_binding(
        &ns,
        "reports",
        pod_identity_spec("reports", json!({"mechanism": "PodIdentity"})),
    )
    .await;
    let binding = s.wait_ready(&ns, "reports").await;
    let made = s.iam.calls().len();
    let status = binding.status.clone().unwrap_or_default();
    let arn = s.role_arn(&ns, "reports");
    assert_eq!(status.role_arn.as_deref(), Some(arn.as_str()));
    assert_eq!(
        status.mechanism,
        Some(podidentity_api::Mechanism::PodIdentity)
    );

    // The association: for this ServiceAccount, naming the role, tagged as ours.
    let association = s
        .association(&ns, "reports")
        .await
        .expect("the association exists in EKS");
    assert_eq!(association.options.role_arn, arn);
    assert!(!association.options.disable_session_tags);
    assert_eq!(
        association.tags.get("podidentity.io/cluster"),
        Some(&s.cluster_name)
    );
    let recorded = status.association.clone().expect("status.association");
    assert_eq!(recorded.id, association.id);
    assert_eq!(recorded.arn, association.arn);

    // The trust: EKS's service principal, pinned to this cluster, namespace and account.
    let role = s.role_name(&ns, "reports");
    let trust = trust_of(&s, &role).await;
    let statement = &trust["Statement"][0];
    assert_eq!(
        statement["Principal"]["Service"],
        json!("pods.eks.amazonaws.com")
    );
    assert_eq!(
        statement["Action"],
        json!(["sts:AssumeRole", "sts:TagSession"])
    );
    let pinned = &statement["Condition"]["StringEquals"];
    assert_eq!(pinned["aws:SourceAccount"], json!(ACCOUNT));
    assert_eq!(
        pinned["aws:RequestTag/eks-cluster-arn"],
        json!(format!("arn:aws:eks:us-east-1:{ACCOUNT}:cluster/{cluster}"))
    );
    assert_eq!(pinned["aws:RequestTag/kubernetes-namespace"], json!(ns));
    assert_eq!(
        pinned["aws:RequestTag/kubernetes-service-account"],
        json!("reports")
    );

    // No IRSA annotation: the IRSA webhook would inject variables the SDKs prefer.
    let annotations = s.annotations(&ns, "reports").await;
    assert!(
        !annotations.contains_key("eks.amazonaws.com/role-arn"),
        "{annotations:?}"
    );

    // Options changed in place: the same association, updated; the trust drops the tag
    // conditions no untagged session could meet.
    s.patch_spec(
        &ns,
        "reports",
        json!({"identity": {
            "mechanism": "PodIdentity",
            "disableSessionTags": true,
            "policy": {"statements": [{"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::reports/2026/*"]}]},
        }}),
    )
    .await;
    let updated = until(
        "the association updated in place",
        Duration::from_secs(60),
        || async {
            let now = s.association(&ns, "reports").await;
            let done = now.as_ref().is_some_and(|a| {
                a.options.disable_session_tags
                    && a.options
                        .policy
                        .as_deref()
                        .is_some_and(|p| p.contains("reports/2026/*"))
            });
            check(done, || format!("{now:?}"))?;
            Ok(now)
        },
    )
    .await
    .expect("the association");
    assert_eq!(updated.id, association.id, "updated, not made again");
    s.wait_ready(&ns, "reports").await;
    let updated_at = s.iam.calls().len();
    let trust = trust_of(&s, &role).await;
    let pinned = &trust["Statement"][0]["Condition"]["StringEquals"];
    assert_eq!(pinned["aws:SourceAccount"], json!(ACCOUNT));
    assert!(
        pinned.get("aws:RequestTag/kubernetes-namespace").is_none(),
        "{trust}"
    );
    let creates = eks_calls(&s)
        .iter()
        .filter(|(op, _)| op == "EKS:CreatePodIdentityAssociation")
        .count();
    assert_eq!(creates, 1, "one association made: {:?}", eks_calls(&s));

    // Idle: nothing written, to IAM or to EKS.
    let before = s.iam.calls().len();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let writes: Vec<String> = s.iam.calls()[before..]
        .iter()
        .filter(|c| !c.is_read())
        .map(|c| c.action.clone())
        .collect();
    assert!(writes.is_empty(), "idle writes: {writes:?}");
    let calls = s.iam.calls();
    let (create, update) = (&calls[..made], &calls[made..updated_at]);
    let tally = |calls: &[podidentity_e2e::iam_proxy::Call]| {
        let writes = calls.iter().filter(|c| !c.is_read()).count();
        let names: Vec<&str> = calls.iter().map(|c| c.action.as_str()).collect();
        format!("{writes} writes, {} reads: {names:?}", calls.len() - writes)
    };
    eprintln!(
        "    pod identity: create {}; options update {}; idle 15 s: 0 writes",
        tally(create),
        tally(update)
    );

    // Another ServiceAccount: its association is made, the old one's taken away (it would
    // go on giving the old ServiceAccount's pods the role).
    s.create_service_account(&ns, "reports-v2", json!({})).await;
    s.patch_spec(&ns, "reports", json!({"serviceAccountName": "reports-v2"}))
        .await;
    s.wait_ready(&ns, "reports").await;
    until(
        "the association follows the ServiceAccount",
        Duration::from_secs(60),
        || async {
            let old = s.association(&ns, "reports").await;
            let new = s.association(&ns, "reports-v2").await;
            check(old.is_none() && new.is_some(), || {
                format!("{old:?} {new:?}")
            })
        },
    )
    .await;

    // Back to IRSA (a migration: no pod uses Pod Identity, so it finishes at once): the
    // association goes, the annotation and the OIDC trust come.
    s.patch_spec(&ns, "reports", json!({"identity": null}))
        .await;
    s.wait_ready(&ns, "reports").await;
    until(
        "the association taken away and the migration over",
        Duration::from_secs(60),
        || async {
            let now = s.association(&ns, "reports-v2").await;
            let binding = s
                .bindings(&ns)
                .get("reports")
                .await
                .map_err(|e| e.to_string())?;
            let over = binding
                .status
                .as_ref()
                .is_some_and(|s| s.migration.is_none());
            check(now.is_none() && over, || {
                format!("{now:?} {:?}", binding.status)
            })
        },
    )
    .await;
    assert_eq!(
        s.annotations(&ns, "reports-v2")
            .await
            .get("eks.amazonaws.com/role-arn"),
        Some(&arn)
    );
    let trust = trust_of(&s, &role).await;
    assert!(
        trust["Statement"][0]["Principal"]["Federated"].is_string(),
        "{trust}"
    );
    let status = s
        .bindings(&ns)
        .get("reports")
        .await
        .expect("binding")
        .status
        .unwrap_or_default();
    assert_eq!(status.association, None);
    assert_eq!(status.mechanism, Some(podidentity_api::Mechanism::Irsa));

    // Deleted: the role goes.
    s.delete_binding(&ns, "reports").await;
    s.wait_gone(&ns, "reports").await;
    assert!(s.association(&ns, "reports").await.is_none());
    assert!(s.iam_role(&role).await.is_none());
}

pub async fn a_foreign_association_is_refused_and_retain_keeps_ours(s: Scenario) {
    s.eks_cluster().await;
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("podidforeign").await;
    s.create_service_account(&ns, "shared", json!({})).await;

    // Someone else's role, associated with the ServiceAccount outside the operator.
    let foreign = format!("{}-someone-else", s.tag);
    Iam::new(&s.moto)
        .create_role(NewRole {
            name: foreign.clone(),
            path: "/".into(),
            trust_policy: json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"]}]})
            .to_string(),
            description: String::new(),
            max_session_duration_seconds: 3600,
            permissions_boundary_arn: None,
            tags: Default::default(),
        })
        .await
        .expect("a role made outside the operator");
    let foreign_arn = format!("arn:aws:iam::{ACCOUNT}:role/{foreign}");
    let eks = podidentity_aws::eks::SdkEks::connect(&podidentity_aws::testing::emulator_settings(
        &s.cluster.moto,
    ))
    .await;
    let theirs = eks
        .create(&NewAssociation {
            key: AssociationKey {
                cluster: s.cluster_name.clone(),
                namespace: ns.clone(),
                service_account: "shared".into(),
            },
            options: AssociationOptions {
                role_arn: foreign_arn.clone(),
                ..Default::default()
            },
            tags: Default::default(),
        })
        .await
        .expect("an association made outside the operator");

    s.create_binding(
        &ns,
        "shared",
        pod_identity_spec("shared", json!({"mechanism": "PodIdentity"})),
    )
    .await;
    let binding = s
        .wait_condition(&ns, "shared", "Ready", "False", Some("AssociationConflict"))
        .await;
    let message = podidentity_e2e::scenario::condition(&binding, "Ready")
        .map(|c| c.message.to_string())
        .unwrap_or_default();
    assert!(
        message.contains(&theirs.id) && message.contains(&foreign),
        "{message}"
    );
    // Not one write to it: it still names their role.
    let touched: Vec<(String, String)> = eks_calls(&s)
        .into_iter()
        .filter(|(op, path)| {
            path.contains(&theirs.id) && (op.contains("Update") || op.contains("Delete"))
        })
        .collect();
    assert!(
        touched.is_empty(),
        "writes to their association: {touched:?}"
    );
    let still = s.association(&ns, "shared").await.expect("theirs stays");
    assert_eq!(still.options.role_arn, foreign_arn);
    s.delete_binding(&ns, "shared").await;
    s.wait_gone(&ns, "shared").await;
    assert!(
        s.association(&ns, "shared").await.is_some(),
        "deleting the binding leaves their association"
    );

    // Retain: the role and its association stay when the binding goes.
    s.create_service_account(&ns, "kept", json!({})).await;
    let mut spec = pod_identity_spec("kept", json!({"mechanism": "PodIdentity"}));
    spec["deletionPolicy"] = json!("Retain");
    s.create_binding(&ns, "kept", spec).await;
    s.wait_ready(&ns, "kept").await;
    let kept = s.association(&ns, "kept").await.expect("ours exists");
    s.delete_binding(&ns, "kept").await;
    s.wait_gone(&ns, "kept").await;
    let after = s.association(&ns, "kept").await.expect("kept by Retain");
    assert_eq!(after.id, kept.id);
    assert!(s.iam_role(&s.role_name(&ns, "kept")).await.is_some());
    let ops: BTreeSet<String> = eks_calls(&s).into_iter().map(|(op, _)| op).collect();
    assert!(!ops.contains("EKS:DeletePodIdentityAssociation"), "{ops:?}");
}

pub async fn a_policy_requiring_pod_identity_refuses_irsa_with_no_write(s: Scenario) {
    s.eks_cluster().await;
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s
        .namespace_labelled("podidpolicy", json!({"podid-e2e": s.tag}))
        .await;
    s.apply_policy(
        "podid-only",
        json!({
            "namespaceSelector": {"matchLabels": {"podid-e2e": s.tag}},
            "mechanisms": ["PodIdentity"],
        }),
    )
    .await;
    s.create_service_account(&ns, "app", json!({})).await;
    // No mechanism: the configuration's default, IRSA, which the policy forbids here.
    s.create_binding(&ns, "app", pod_identity_spec("app", json!({})))
        .await;
    let binding = s
        .wait_condition(&ns, "app", "Ready", "False", Some("GuardrailViolation"))
        .await;
    let message = podidentity_e2e::scenario::condition(&binding, "Ready")
        .map(|c| c.message.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("spec.identity.mechanism") && message.contains("PodIdentity"),
        "{message}"
    );
    let role = s.role_name(&ns, "app");
    assert!(s.calls_for(&role).is_empty(), "{:?}", s.calls_for(&role));
    assert!(s.association(&ns, "app").await.is_none());

    // As the policy asks: made.
    s.patch_spec(
        &ns,
        "app",
        json!({"identity": {"mechanism": "PodIdentity"}}),
    )
    .await;
    s.wait_ready(&ns, "app").await;
    assert!(s.association(&ns, "app").await.is_some());
}

pub async fn the_association_quota_refuses_before_any_call(s: Scenario) {
    s.eks_cluster().await;
    // The chart's value, lowered from EKS's 5,000 so the test reaches it.
    let (_rendered, controller) = s
        .start_controller(json!({"eks": {"maxAssociations": 2}}))
        .await;
    let ns = s.namespace("podidquota").await;
    for name in ["one", "two", "three"] {
        s.create_service_account(&ns, name, json!({})).await;
    }
    for name in ["one", "two"] {
        s.create_binding(
            &ns,
            name,
            pod_identity_spec(name, json!({"mechanism": "PodIdentity"})),
        )
        .await;
        s.wait_ready(&ns, name).await;
    }
    let creates_before = eks_calls(&s)
        .iter()
        .filter(|(op, _)| op == "EKS:CreatePodIdentityAssociation")
        .count();
    s.create_binding(
        &ns,
        "three",
        pod_identity_spec("three", json!({"mechanism": "PodIdentity"})),
    )
    .await;
    let refused = s
        .wait_condition(
            &ns,
            "three",
            "Ready",
            "False",
            Some("AssociationQuotaExceeded"),
        )
        .await;
    let message = podidentity_e2e::scenario::condition(&refused, "Ready")
        .map(|c| c.message.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("has 2 Pod Identity associations")
            && message.contains("eks.maxAssociations"),
        "{message}"
    );
    // Nothing was made for it: no IAM call for its role, no association.
    let role = s.role_name(&ns, "three");
    assert!(s.calls_for(&role).is_empty(), "{:?}", s.calls_for(&role));
    assert!(s.association(&ns, "three").await.is_none());
    let creates_after = eks_calls(&s)
        .iter()
        .filter(|(op, _)| op == "EKS:CreatePodIdentityAssociation")
        .count();
    assert_eq!(creates_after, creates_before);

    // One goes: there is room, and the refused binding gets its association.
    s.delete_binding(&ns, "one").await;
    s.wait_gone(&ns, "one").await;
    s.wait_ready(&ns, "three").await;
    assert!(s.association(&ns, "three").await.is_some());

    // /metrics: the quota, the count, and the EKS calls by operation.
    let metrics = controller.metrics().await;
    let sample = |series: &str| podidentity_e2e::operator::sample(&metrics, series);
    assert_eq!(
        sample("podidentity_eks_pod_identity_association_quota"),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        sample("podidentity_eks_pod_identity_associations"),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&format!(
            r#"podidentity_iam_calls_total{{operation="EKS:CreatePodIdentityAssociation",outcome="ok",account="{ACCOUNT}"}}"#
        )),
        3.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&format!(
            r#"podidentity_iam_calls_total{{operation="EKS:DeletePodIdentityAssociation",outcome="ok",account="{ACCOUNT}"}}"#
        )),
        1.0,
        "{metrics}"
    );
}

pub async fn an_association_deleted_by_hand_is_made_again(s: Scenario) {
    s.eks_cluster().await;
    let (_rendered, _controller) = s.start_controller(json!({"driftInterval": "10s"})).await;
    let ns = s.namespace("podiddrift").await;
    s.create_service_account(&ns, "app", json!({})).await;
    s.create_binding(
        &ns,
        "app",
        pod_identity_spec("app", json!({"mechanism": "PodIdentity"})),
    )
    .await;
    s.wait_ready(&ns, "app").await;
    let first = s.association(&ns, "app").await.expect("the association");
    let eks = podidentity_aws::eks::SdkEks::connect(&podidentity_aws::testing::emulator_settings(
        &s.cluster.moto,
    ))
    .await;
    eks.delete(&s.cluster_name, &first.id)
        .await
        .expect("delete the association by hand");
    let again = until(
        "the association made again by the sweep",
        Duration::from_secs(60),
        || async {
            let now = s.association(&ns, "app").await;
            check(now.as_ref().is_some_and(|a| a.id != first.id), || {
                format!("{now:?}")
            })?;
            Ok(now)
        },
    )
    .await
    .expect("the association");
    assert_eq!(again.options.role_arn, s.role_arn(&ns, "app"));
    until("the status records it", Duration::from_secs(30), || async {
        let binding = s
            .bindings(&ns)
            .get("app")
            .await
            .map_err(|e| e.to_string())?;
        let id = binding.status.and_then(|s| s.association).map(|a| a.id);
        check(id.as_deref() == Some(again.id.as_str()), || {
            format!("{id:?}")
        })
    })
    .await;
}
