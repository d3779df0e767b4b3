//! What the operator writes to ServiceAccounts and Secrets, and what it takes back: the
//! annotations follow the spec (an audience removed, a ServiceAccount renamed), a
//! ServiceAccount it created stays owned across applies (and goes with the binding), and
//! only its own credentials Secret is ever written, watched and put back.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use podidentity_e2e::Scenario;
use podidentity_e2e::scenario::condition;
use podidentity_e2e::wait::{check, until};
use serde_json::json;

fn spec(account: &str) -> serde_json::Value {
    json!({
        "serviceAccountName": account,
        "permissions": {"statements": [{"actions": ["s3:GetObject"], "resources": ["*"]}]},
    })
}

async fn wait_annotations(
    s: &Scenario,
    ns: &str,
    account: &str,
    what: &str,
    holds: impl Fn(&std::collections::BTreeMap<String, String>) -> bool,
) {
    until(what, Duration::from_secs(30), || async {
        let annotations = s.annotations(ns, account).await;
        check(holds(&annotations), || format!("{annotations:?}"))
    })
    .await
}

pub async fn annotations_follow_the_spec_and_the_account(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("rename").await;
    for account in ["first", "second"] {
        s.create_service_account(&ns, account, json!({"team": "keep-me"}))
            .await;
    }
    let mut with_audience = spec("first");
    with_audience["audience"] = json!("first.example.com");
    s.create_binding(&ns, "app", with_audience).await;
    s.wait_ready(&ns, "app").await;
    let arn = s.role_arn(&ns, "app");
    wait_annotations(&s, &ns, "first", "the audience annotation", |a| {
        a.get("eks.amazonaws.com/audience").map(String::as_str) == Some("first.example.com")
    })
    .await;

    // The audience goes from the spec: its annotation goes from the ServiceAccount.
    s.patch_spec(&ns, "app", json!({"audience": null})).await;
    s.wait_ready(&ns, "app").await;
    wait_annotations(&s, &ns, "first", "the audience annotation to go", |a| {
        !a.contains_key("eks.amazonaws.com/audience")
            && a.get("eks.amazonaws.com/role-arn") == Some(&arn)
    })
    .await;

    // Another ServiceAccount: the first loses every annotation the operator wrote, and
    // keeps its own.
    s.patch_spec(&ns, "app", json!({"serviceAccountName": "second"}))
        .await;
    s.wait_ready(&ns, "app").await;
    wait_annotations(&s, &ns, "second", "the role on the new account", |a| {
        a.get("eks.amazonaws.com/role-arn") == Some(&arn)
    })
    .await;
    wait_annotations(&s, &ns, "first", "the old account released", |a| {
        !a.keys().any(|k| k.starts_with("eks.amazonaws.com/"))
            && a.get("team").map(String::as_str) == Some("keep-me")
    })
    .await;
    let binding = s.wait_ready(&ns, "app").await;
    assert_eq!(
        binding
            .status
            .and_then(|st| st.service_account_name)
            .as_deref(),
        Some("second")
    );
}

pub async fn a_service_account_it_created_stays_owned(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("made").await;
    let mut made = spec("made");
    made["createServiceAccount"] = json!(true);
    let binding = s.create_binding(&ns, "app", made).await;
    s.wait_ready(&ns, "app").await;
    let owned = |account: k8s_openapi::api::core::v1::ServiceAccount| {
        account
            .metadata
            .owner_references
            .unwrap_or_default()
            .iter()
            .any(|o| Some(&o.uid) == binding.metadata.uid.as_ref())
    };
    assert!(owned(
        s.service_accounts(&ns).get("made").await.expect("created")
    ));

    // Another apply (the audience changes): the owner reference is sent again and stays.
    s.patch_spec(&ns, "app", json!({"audience": "made.example.com"}))
        .await;
    s.wait_ready(&ns, "app").await;
    wait_annotations(&s, &ns, "made", "the new audience", |a| {
        a.get("eks.amazonaws.com/audience").map(String::as_str) == Some("made.example.com")
    })
    .await;
    assert!(
        owned(
            s.service_accounts(&ns)
                .get("made")
                .await
                .expect("still there")
        ),
        "the owner reference survives the next apply"
    );

    // The binding goes: the garbage collector takes the account it made.
    s.delete_binding(&ns, "app").await;
    s.wait_gone(&ns, "app").await;
    until(
        "the ServiceAccount collected",
        Duration::from_secs(60),
        || async {
            let found = s
                .service_accounts(&ns)
                .get_opt("made")
                .await
                .map_err(|e| e.to_string())?;
            check(found.is_none(), || "still there".into())
        },
    )
    .await;
}

fn credentials(secret: &Secret) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get("credentials"))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

pub async fn only_its_own_secret(s: Scenario) {
    let (_rendered, _controller) = s.start_controller(json!({})).await;
    let ns = s.namespace("secrets").await;
    let secrets: Api<Secret> = Api::namespaced(s.client(), &ns);

    // A Secret that is someone else's is refused and left alone, also on deletion.
    let theirs: Secret = serde_json::from_value(json!({
        "metadata": {"name": "taken"},
        "stringData": {"password": "hunter2"},
    }))
    .expect("Secret");
    secrets
        .create(&PostParams::default(), &theirs)
        .await
        .expect("their Secret");
    s.create_service_account(&ns, "app", json!({})).await;
    let mut wants_taken = spec("app");
    wants_taken["credentialsSecret"] = json!({"name": "taken"});
    s.create_binding(&ns, "app", wants_taken).await;
    let binding = s
        .wait_condition(
            &ns,
            "app",
            "Ready",
            "False",
            Some("CredentialsSecretConflict"),
        )
        .await;
    assert!(
        condition(&binding, "Stalled")
            .is_some_and(|c| c.status == "True" && c.message.contains("taken"))
    );
    s.wait_event(&ns, "app", "CredentialsSecretConflict").await;
    let untouched = secrets.get("taken").await.expect("their Secret");
    assert!(untouched.metadata.owner_references.is_none(), "not adopted");
    assert!(
        untouched
            .data
            .as_ref()
            .is_some_and(|d| d.contains_key("password") && !d.contains_key("credentials"))
    );

    // Its own Secret: written, watched, put back when deleted or edited by hand.
    s.patch_spec(
        &ns,
        "app",
        json!({"credentialsSecret": {"name": "app-aws"}}),
    )
    .await;
    s.wait_ready(&ns, "app").await;
    let ours = secrets.get("app-aws").await.expect("its Secret");
    let wanted = credentials(&ours);
    assert!(wanted.contains("role_arn = "), "{wanted}");
    secrets
        .delete("app-aws", &DeleteParams::default())
        .await
        .expect("delete by hand");
    until(
        "the Secret written again",
        Duration::from_secs(30),
        || async {
            let found = secrets
                .get_opt("app-aws")
                .await
                .map_err(|e| e.to_string())?;
            check(found.is_some_and(|f| credentials(&f) == wanted), || {
                "not yet".into()
            })
        },
    )
    .await;
    secrets
        .patch(
            "app-aws",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"credentials": "[default]\nrole_arn = arn:aws:iam::999999999999:role/elsewhere\n"}})),
        )
        .await
        .expect("edit by hand");
    until("the Secret put back", Duration::from_secs(30), || async {
        let found = secrets.get("app-aws").await.map_err(|e| e.to_string())?;
        check(credentials(&found) == wanted, || credentials(&found))
    })
    .await;

    // Renamed in the spec: the old one goes.
    s.patch_spec(
        &ns,
        "app",
        json!({"credentialsSecret": {"name": "app-aws-2"}}),
    )
    .await;
    s.wait_ready(&ns, "app").await;
    until(
        "the renamed Secret, and the old one gone",
        Duration::from_secs(30),
        || async {
            let old = secrets
                .get_opt("app-aws")
                .await
                .map_err(|e| e.to_string())?;
            let new = secrets
                .get_opt("app-aws-2")
                .await
                .map_err(|e| e.to_string())?;
            check(old.is_none() && new.is_some(), || {
                format!("old {} new {}", old.is_some(), new.is_some())
            })
        },
    )
    .await;

    // The binding goes: their Secret stays.
    s.delete_binding(&ns, "app").await;
    s.wait_gone(&ns, "app").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        secrets.get_opt("taken").await.ok().flatten().is_some(),
        "garbage collection never takes a Secret that was not the binding's"
    );
}
