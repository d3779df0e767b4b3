//! What the rest of the cluster does to bindings: the short form's bindings collected
//! with their ServiceAccount by the garbage collector, and a namespace deleted with
//! bindings in it.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use podidentity_e2e::Scenario;
use podidentity_e2e::wait::{check, until};
use serde_json::json;

pub async fn short_form_bindings_follow_their_service_account(s: Scenario) {
    let ns = s.namespace("short").await;
    let elsewhere = s.namespace("no-short").await;
    // Off by default; on here for one namespace only.
    let (_rendered, _controller) = s
        .start_controller(json!({"shortForm": {"enabled": true, "namespaces": [ns]}}))
        .await;
    let ask = json!({
        "podidentity.io/managed-policy-arns": "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
    });

    // Where the short form is off, the annotations make nothing, and the account says why.
    let mark = s.iam.mark();
    s.create_service_account(&elsewhere, "asks", ask.clone())
        .await;
    let note = s.wait_event(&elsewhere, "asks", "ShortFormDisabled").await;
    assert!(note.contains("shortForm.namespaces"), "{note}");
    assert!(
        s.bindings(&elsewhere)
            .get_opt("asks")
            .await
            .expect("look for a binding")
            .is_none()
    );
    let touched: Vec<_> = s
        .iam
        .calls_since(mark)
        .into_iter()
        .filter(|c| c.role.as_deref().is_some_and(|r| r.contains(&elsewhere)))
        .collect();
    assert!(touched.is_empty(), "no IAM call for it: {touched:?}");

    let dns = s
        .create_service_account(&ns, "external-dns", ask.clone())
        .await;
    s.create_service_account(&ns, "reporter", ask).await;
    let binding = s.wait_ready(&ns, "external-dns").await;
    assert_eq!(
        binding
            .labels()
            .get("podidentity.io/from-service-account")
            .map(String::as_str),
        Some("true")
    );
    assert!(
        binding
            .owner_references()
            .iter()
            .any(|o| o.kind == "ServiceAccount" && Some(&o.uid) == dns.metadata.uid.as_ref())
    );
    let arn = s.role_arn(&ns, "external-dns");
    until(
        "the role ARN on the ServiceAccount",
        Duration::from_secs(30),
        || async {
            let annotations = s.annotations(&ns, "external-dns").await;
            check(
                annotations.get("eks.amazonaws.com/role-arn") == Some(&arn),
                || format!("{annotations:?}"),
            )
        },
    )
    .await;
    s.wait_ready(&ns, "reporter").await;

    // The ServiceAccount goes: the garbage collector takes its binding, whose finalizer
    // deletes the role.
    s.service_accounts(&ns)
        .delete("external-dns", &DeleteParams::default())
        .await
        .expect("delete ServiceAccount");
    s.wait_gone(&ns, "external-dns").await;
    assert!(
        s.iam_role(&s.role_name(&ns, "external-dns"))
            .await
            .is_none()
    );

    // The annotations go: the binding they made goes with its role.
    s.service_accounts(&ns)
        .patch(
            "reporter",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"podidentity.io/managed-policy-arns": null}}}),
            ),
        )
        .await
        .expect("remove the annotations");
    s.wait_gone(&ns, "reporter").await;
    assert!(s.iam_role(&s.role_name(&ns, "reporter")).await.is_none());
}

pub async fn deleting_a_namespace_cleans_up_its_roles(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("doomed").await;
    for i in 0..3 {
        let name = format!("app{i}");
        s.create_service_account(&ns, &name, json!({})).await;
        s.create_binding(
            &ns,
            &name,
            json!({"serviceAccountName": name, "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["*"]}]}}),
        )
        .await;
    }
    for i in 0..3 {
        s.wait_ready(&ns, &format!("app{i}")).await;
    }
    let namespaces: Api<Namespace> = Api::all(s.client());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
    until("the namespace to go", Duration::from_secs(90), || async {
        let found = namespaces.get_opt(&ns).await.map_err(|e| e.to_string())?;
        check(found.is_none(), || {
            format!("{:?}", found.and_then(|n| n.status))
        })
    })
    .await;
    for i in 0..3 {
        let role = s.role_name(&ns, &format!("app{i}"));
        assert!(s.iam_role(&role).await.is_none(), "{role} deleted");
    }
}
