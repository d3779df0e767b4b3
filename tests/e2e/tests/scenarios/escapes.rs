//! What an adversarial pass over the guardrails found, tried against the running
//! controller as a namespace owner would: every secret through `arn:*`, another
//! namespace's role taken by letter case, a `${namespace}` template another namespace's
//! name continues (refused by the API server, and failing closed where an older CRD let it
//! in, without revoking), and patterns that kept the old engine busy for minutes judged
//! at once. Every refusal is counted: no IAM write.

use podidentity_e2e::Scenario;
use podidentity_e2e::scenario::condition;
use serde_json::{Value, json};

async fn refused_for(s: &Scenario, ns: &str, name: &str) -> String {
    let binding = s
        .wait_condition(ns, name, "Ready", "False", Some("GuardrailViolation"))
        .await;
    condition(&binding, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn reads(resources: &[&str], actions: &[&str]) -> Value {
    json!({"statements": [{"actions": actions, "resources": resources}]})
}

pub async fn what_the_adversarial_pass_found_is_refused(s: Scenario) {
    let (_rendered, _controller) = s
        .start_controller(json!({"roles": {"allowNameOverride": true}}))
        .await;
    let victim = s.namespace("victim").await;
    let attacker = s.namespace("attacker").await;
    s.create_service_account(&victim, "api", json!({})).await;
    s.create_binding(&victim, "api", json!({"serviceAccountName": "api"}))
        .await;
    s.wait_ready(&victim, "api").await;
    let mark = s.iam.mark();

    // Every secret of the account, "everything" spelled otherwise than "*".
    s.create_service_account(&attacker, "reader", json!({}))
        .await;
    s.create_binding(
        &attacker,
        "secrets",
        json!({"serviceAccountName": "reader", "permissions": reads(
            &["arn:*", "arn:aws:kms:*:*:key/*"],
            &["secretsmanager:GetSecretValue", "kms:Decrypt"],
        )}),
    )
    .await;
    // The victim's role, its name in capitals: one role to IAM.
    let taken = s.role_name(&victim, "api").to_ascii_uppercase();
    s.create_service_account(&attacker, "squat", json!({}))
        .await;
    s.create_binding(
        &attacker,
        "squat",
        json!({"serviceAccountName": "squat", "role": {"name": taken}}),
    )
    .await;
    let message = refused_for(&s, &attacker, "secrets").await;
    assert!(
        message.contains("\"arn:*\"")
            && message.contains("arn:aws:kms:*:*:key/*")
            && message.contains("guardrails.actionsNeedingNamedResources"),
        "{message}"
    );
    let message = refused_for(&s, &attacker, "squat").await;
    assert!(
        message.contains("spec.role.name") && message.contains(&taken),
        "{message}"
    );
    let victim_role = s
        .iam_role(&s.role_name(&victim, "api"))
        .await
        .expect("the victim's role");
    assert!(
        victim_role.tags.values().any(|v| v == &victim),
        "the victim's role stays the victim's: {:?}",
        victim_role.tags
    );
    let writes = s.iam.writes_since(mark);
    assert!(
        writes.is_empty(),
        "a refusal writes nothing to IAM: {writes:?}"
    );

    // A template another namespace's name continues: the API server refuses it.
    let open = json!({
        "namespaceSelector": {"matchLabels": {"podidentity-e2e/open": s.tag}},
        "allowedResources": ["arn:aws:s3:::${namespace}-*"],
        "onViolation": "Revoke",
    });
    let policies: kube::Api<podidentity_api::PodIdentityPolicy> = kube::Api::all(s.client());
    let name = format!("{}-open", s.tag);
    let refusal = policies
        .patch(
            &name,
            &kube::api::PatchParams::apply("platform-team"),
            &kube::api::Patch::Apply(&json!({
                "apiVersion": "podidentity.io/v1alpha1",
                "kind": "PodIdentityPolicy",
                "metadata": {"name": name},
                "spec": open,
            })),
        )
        .await
        .expect_err("the API server refuses an open template");
    assert!(
        refusal
            .to_string()
            .contains("must end where no other namespace's name can go on"),
        "{refusal}"
    );

    // An older CRD without that rule lets it in: the policy fails closed, and revokes
    // nothing (the role a namespace had keeps what it had).
    let team = s.namespace("team").await;
    s.create_service_account(&team, "app", json!({})).await;
    s.create_binding(
        &team,
        "app",
        json!({"serviceAccountName": "app", "permissions": reads(&[&format!("arn:aws:s3:::{team}-orders/*")], &["s3:GetObject"])}),
    )
    .await;
    s.wait_ready(&team, "app").await;
    let role = s.role_name(&team, "app");
    let iam = podidentity_aws::api::Iam::new(&s.moto);
    assert_eq!(
        iam.list_role_policies(&role)
            .await
            .unwrap_or_default()
            .len(),
        1
    );
    s.change_crd_named("podidentitypolicies.podidentity.io", |crd| {
        let properties = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
            ["spec"]["properties"];
        for field in ["allowedResources", "roleNameOverride"] {
            if let Some(rules) = properties[field]["x-kubernetes-validations"].as_array_mut() {
                rules.retain(|r| {
                    !r["rule"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("[A-Za-z0-9*?$-]")
                });
            }
        }
    })
    .await;
    let mark = s.iam.mark();
    let policy = s.apply_policy("open", open).await;
    s.label_namespace(&team, json!({"podidentity-e2e/open": s.tag}))
        .await;
    let status = s
        .wait_policy_status(&policy, "refused as written", |st| {
            st.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == "InvalidSpec")
        })
        .await;
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    assert!(
        ready.is_some_and(|c| c.message.contains("spec.allowedResources[0]")
            && c.message.contains("'.', '_', '/' or ':'")),
        "{ready:?}"
    );
    let message = refused_for(&s, &team, "app").await;
    assert!(
        message.contains(&format!(
            "PodIdentityPolicy {policy} selects this namespace but cannot be applied"
        )),
        "{message}"
    );
    assert_eq!(
        iam.list_role_policies(&role)
            .await
            .unwrap_or_default()
            .len(),
        1,
        "an unusable policy never revokes"
    );
    let writes = s.iam.writes_since(mark);
    assert!(writes.is_empty(), "{writes:?}");

    // The patterns that kept the old engine busy for minutes (157 s and 6.9 GB for the
    // second) are judged at once: Ready as soon as any binding.
    let bounded = s.namespace("bounded").await;
    let closed = s
        .apply_policy(
            "closed",
            json!({
                "namespaceSelector": {"matchLabels": {"podidentity-e2e/closed": s.tag}},
                "allowedResources": ["arn:aws:s3:::${namespace}.*"],
            }),
        )
        .await;
    s.label_namespace(&bounded, json!({"podidentity-e2e/closed": s.tag}))
        .await;
    s.wait_policy_status(&closed, "selects the namespace", |st| {
        st.selected_namespaces == 1
    })
    .await;
    let distinct: String = (0..900u32)
        .filter_map(|n| char::from_u32(0x4e00 + n))
        .flat_map(|ch| ['*', ch])
        .collect();
    for (name, tail) in [("star-one", "*?".repeat(400)), ("alternating", distinct)] {
        s.create_service_account(&bounded, name, json!({})).await;
        let resource = format!("arn:aws:s3:::{bounded}.{tail}");
        s.create_binding(
            &bounded,
            name,
            json!({"serviceAccountName": name, "permissions": reads(&[&resource], &["s3:GetObject"])}),
        )
        .await;
    }
    for name in ["star-one", "alternating"] {
        s.wait_ready(&bounded, name).await;
    }
}
