//! `plan` on OpenShift's CredentialsRequests, as `oc adm release extract
//! --credentials-requests` writes them: the roles and ccoctl Secrets the operator would
//! make, or why not, offline.

mod common;

use common::{podidentity, podidentity_with_stdin};
use serde_json::{Value, json};

const OPENSHIFT: &str = "examples/openshift/operator.yaml";

fn json_plan(args: &[&str]) -> (i32, Value) {
    let run = podidentity(args);
    let plan = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}{}", run.stdout, run.stderr));
    (run.code, plan)
}

fn entry<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {plan}"))
}

#[test]
fn the_releases_requests_are_planned_as_roles_and_ccoctl_secrets() {
    let (code, plan) = json_plan(&[
        "plan",
        "-f",
        "examples/openshift",
        "--config",
        OPENSHIFT,
        "-o",
        "json",
    ]);
    assert_eq!(code, 1, "the Machine API's request is refused");
    assert_eq!(plan["summary"]["valid"], 2);
    assert_eq!(plan["summary"]["refused"], 1);

    let registry = entry(&plan, "openshift-image-registry");
    assert_eq!(registry["kind"], "CredentialsRequest");
    assert_eq!(registry["namespace"], "openshift-cloud-credential-operator");
    let role = &registry["desired"]["role"];
    assert_eq!(
        role["name"],
        "mycluster-openshift-image-registry.installer-cloud-credentials"
    );
    let sub = &role["trustPolicy"]["Statement"][0]["Condition"]["StringEquals"]["mycluster-oidc.s3.us-east-2.amazonaws.com:sub"];
    assert_eq!(sub.as_array().map(Vec::len), Some(2), "{role}");
    let arn = role["arn"].as_str().unwrap_or_default();
    assert_eq!(
        registry["desired"]["credentialsSecret"],
        json!({
            "name": "installer-cloud-credentials",
            "credentials": format!("[default]\nsts_regional_endpoints = regional\nrole_arn = {arn}\nweb_identity_token_file = /var/run/secrets/openshift/serviceaccount/token"),
        })
    );

    let machine = entry(&plan, "openshift-machine-api-aws");
    assert_eq!(machine["valid"], false);
    let fields: Vec<&str> = machine["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"spec.providerSpec.statementEntries[0].action[19]"),
        "{fields:?}"
    );
}

#[test]
fn without_the_setting_every_request_is_refused_with_its_name() {
    let (code, plan) = json_plan(&[
        "plan",
        "-f",
        "examples/openshift/image-registry.yaml",
        "--config",
        "examples/config/operator.yaml",
        "-o",
        "json",
    ]);
    assert_eq!(code, 1);
    let problem = &entry(&plan, "openshift-image-registry")["problems"][0];
    assert_eq!(problem["field"], "metadata.namespace");
    assert!(
        problem["message"]
            .as_str()
            .unwrap_or_default()
            .contains("credentialsRequests.enabled"),
        "{problem}"
    );
}

#[test]
fn a_request_of_another_version_or_cloud_is_named_or_left_out() {
    let input = "apiVersion: cloudcredential.openshift.io/v2\nkind: CredentialsRequest\nmetadata: {name: odd, namespace: openshift-cloud-credential-operator}\nspec: {secretRef: {name: creds, namespace: registry}}\n---\napiVersion: cloudcredential.openshift.io/v1\nkind: CredentialsRequest\nmetadata: {name: gcp, namespace: openshift-cloud-credential-operator}\nspec:\n  secretRef: {name: creds, namespace: registry}\n  providerSpec: {kind: GCPProviderSpec}\n";
    let run = podidentity_with_stdin(
        &["plan", "-f", "-", "--config", OPENSHIFT, "-o", "json"],
        Some(input),
    );
    let plan: Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|err| panic!("{err}: {}", run.stderr));
    let odd = entry(&plan, "odd");
    assert_eq!(odd["problems"][0]["field"], "apiVersion");
    assert!(
        odd["problems"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cloudcredential.openshift.io/v1")
    );
    assert!(
        plan["bindings"]
            .as_array()
            .is_some_and(|b| b.iter().all(|e| e["name"] != "gcp")),
        "another cloud's request makes nothing"
    );
}
