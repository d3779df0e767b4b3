//! The chain of EKS Pod Identity, judged when the ServiceAccount's binding uses it: no
//! IRSA annotation (its variables would win), the binding Ready, the association naming
//! the binding's role, the role and its trust of `pods.eks.amazonaws.com` with
//! `sts:TagSession`, the agent's DaemonSet, and the pod's variables and token mount. Pure,
//! like the IRSA chain: every fact comes in.

use k8s_openapi::api::core::v1::Pod;
use podidentity_api::annotations::ROLE_ARN;
use podidentity_aws::ErrorKind;
use podidentity_iam::trust::{ASSUME_ROLE, POD_IDENTITY_SERVICE, TAG_SESSION};
use podidentity_webhook::pod_credentials::{
    CONTAINER_CREDENTIALS_FULL_URI_ENV, DEFAULT_ANNOTATION_PREFIX, POD_IDENTITY_TOKEN_VOLUME,
    containers,
};
use serde_json::Value;

use super::chain::{
    Health, Link, binding, broken, link, service_account_unread, skipped, target_pod,
};
use super::gather::{AGENT_DAEMON_SET, Facts, PodIdentityFacts};

/// Every link of the Pod Identity chain, in the order credentials travel.
pub fn judge(facts: &Facts, pi: &PodIdentityFacts) -> Vec<Link> {
    vec![
        service_account(facts),
        binding(facts),
        association(facts, pi),
        role(pi),
        trust_policy(facts, pi),
        agent(pi),
        pod(facts),
    ]
}

fn qualified(facts: &Facts) -> String {
    format!("{}/{}", facts.namespace, facts.service_account_name)
}

fn service_account(facts: &Facts) -> Link {
    const NAME: &str = "serviceAccount";
    let account = qualified(facts);
    if let Some(unread) = service_account_unread(facts) {
        return unread;
    }
    match &facts.service_account {
        Err(_) | Ok(None) => skipped(NAME, "unread"),
        Ok(Some(_)) => match facts.role_arn() {
            Some(arn) => broken(
                NAME,
                "IrsaAnnotated",
                format!(
                    "{account} carries {ROLE_ARN}={arn}: the IRSA webhook gives its pods IRSA's \
                     variables, which the SDKs prefer over Pod Identity's"
                ),
                "remove the annotation (the binding uses Pod Identity; whoever wrote it, \
                 kubectl annotate sa ... eks.amazonaws.com/role-arn-), then restart the pods"
                    .into(),
            ),
            None => link(
                NAME,
                Health::Ok,
                "NoIrsaAnnotation",
                format!("{account} exists, with no IRSA annotation"),
            ),
        },
    }
}

fn association(facts: &Facts, pi: &PodIdentityFacts) -> Link {
    const NAME: &str = "association";
    let account = qualified(facts);
    match &pi.association {
        Err(err) => broken(
            NAME,
            "Unreadable",
            format!(
                "cannot read the associations of EKS cluster {}: {err}",
                pi.cluster
            ),
            "doctor needs eks:ListPodIdentityAssociations and eks:DescribePodIdentityAssociation \
             (AWS credentials and region as for the controller)"
                .into(),
        ),
        Ok(None) => broken(
            NAME,
            "NotFound",
            format!(
                "EKS cluster {} has no Pod Identity association for {account}",
                pi.cluster
            ),
            "the binding's Ready condition says why it made none; check eks.clusterName names \
             this cluster"
                .into(),
        ),
        Ok(Some(found)) => match &pi.role_arn {
            Some(arn) if &found.options.role_arn != arn => broken(
                NAME,
                "OtherRole",
                format!(
                    "association {} names {}, not the binding's role {arn}",
                    found.id, found.options.role_arn
                ),
                format!(
                    "delete association {} (aws eks delete-pod-identity-association); the \
                     operator then makes its own",
                    found.id
                ),
            ),
            _ => link(
                NAME,
                Health::Ok,
                "Associated",
                format!(
                    "{} in cluster {} names {}{}",
                    found.id,
                    pi.cluster,
                    found.options.role_arn,
                    if found.options.disable_session_tags {
                        " (session tags off)"
                    } else {
                        ""
                    }
                ),
            ),
        },
    }
}

fn role(pi: &PodIdentityFacts) -> Link {
    const NAME: &str = "role";
    let (Some(arn), Some(found)) = (&pi.role_arn, &pi.role) else {
        return skipped(NAME, "the binding records no role yet");
    };
    match found {
        Ok(role) => link(
            NAME,
            Health::Ok,
            "Exists",
            format!("{} exists (path {})", role.name, role.path),
        ),
        Err(err) if err.kind == ErrorKind::NotFound => broken(
            NAME,
            "NotFound",
            format!("{arn} does not exist in IAM ({err})"),
            "the operator makes it again within its drift interval".into(),
        ),
        Err(err) => broken(
            NAME,
            "Unreadable",
            format!("cannot read {arn}: {err}"),
            "doctor needs iam:GetRole on it".into(),
        ),
    }
}

fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether a trust statement admits Pod Identity's agent for this ServiceAccount: the
/// service, both actions, and (if it pins them) this namespace's and account's tags.
fn admits(statement: &Value, namespace: &str, account: &str) -> Result<(), String> {
    let services = strings(&statement["Principal"]["Service"]);
    if statement["Effect"] != "Allow" || !services.contains(&POD_IDENTITY_SERVICE) {
        return Err("not Pod Identity's".into());
    }
    let actions = strings(&statement["Action"]);
    for wanted in [ASSUME_ROLE, TAG_SESSION] {
        if !actions.contains(&wanted) {
            return Err(format!("it lacks {wanted} (EKS tags every session)"));
        }
    }
    let equals = &statement["Condition"]["StringEquals"];
    for (tag, value) in [
        ("kubernetes-namespace", namespace),
        ("kubernetes-service-account", account),
    ] {
        let pinned = strings(&equals[format!("aws:RequestTag/{tag}")]);
        if !pinned.is_empty() && !pinned.contains(&value) {
            return Err(format!("it pins {tag} to {pinned:?}, not {value:?}"));
        }
    }
    Ok(())
}

fn trust_policy(facts: &Facts, pi: &PodIdentityFacts) -> Link {
    const NAME: &str = "trustPolicy";
    let Some(Ok(role)) = &pi.role else {
        return skipped(NAME, "no role to read");
    };
    let document: Value = match serde_json::from_str(&role.trust_policy) {
        Ok(document) => document,
        Err(err) => {
            return broken(
                NAME,
                "Unreadable",
                format!("the trust policy of {} is not JSON: {err}", role.name),
                "the operator rewrites it within its drift interval".into(),
            );
        }
    };
    let statements = match &document["Statement"] {
        Value::Array(many) => many.clone(),
        one @ Value::Object(_) => vec![one.clone()],
        _ => Vec::new(),
    };
    let verdicts: Vec<Result<(), String>> = statements
        .iter()
        .map(|s| admits(s, &facts.namespace, &facts.service_account_name))
        .collect();
    if verdicts.iter().any(Result::is_ok) {
        return link(
            NAME,
            Health::Ok,
            "AdmitsPodIdentity",
            format!(
                "{} trusts {POD_IDENTITY_SERVICE} with {ASSUME_ROLE} and {TAG_SESSION} for {}",
                role.name,
                qualified(facts)
            ),
        );
    }
    let why: Vec<String> = verdicts
        .into_iter()
        .filter_map(Result::err)
        .filter(|why| why != "not Pod Identity's")
        .collect();
    broken(
        NAME,
        "NoPodIdentityStatement",
        if why.is_empty() {
            format!(
                "{} does not trust {POD_IDENTITY_SERVICE}: EKS cannot give its pods the role",
                role.name
            )
        } else {
            format!(
                "{}'s Pod Identity statement does not admit {}: {}",
                role.name,
                qualified(facts),
                why.join("; ")
            )
        },
        "the operator writes it within its drift interval; if it does not, see the binding's \
         conditions"
            .into(),
    )
}

fn agent(pi: &PodIdentityFacts) -> Link {
    const NAME: &str = "agent";
    let (namespace, name) = AGENT_DAEMON_SET;
    match &pi.agent {
        Err(err) => link(
            NAME,
            Health::Warning,
            "Unreadable",
            format!("cannot read DaemonSet {namespace}/{name}: {err}"),
        ),
        Ok(None) => broken(
            NAME,
            "NotInstalled",
            format!("DaemonSet {namespace}/{name} does not exist: nothing serves Pod Identity's credentials on the nodes"),
            "install the EKS add-on: aws eks create-addon --cluster-name CLUSTER --addon-name eks-pod-identity-agent".into(),
        ),
        Ok(Some((desired, ready))) if ready < desired => link(
            NAME,
            Health::Warning,
            "NotAllReady",
            format!("DaemonSet {namespace}/{name}: {ready} of {desired} pods ready"),
        ),
        Ok(Some((desired, ready))) => link(
            NAME,
            Health::Ok,
            "Installed",
            format!("DaemonSet {namespace}/{name}: {ready} of {desired} pods ready"),
        ),
    }
}

fn pod(facts: &Facts) -> Link {
    let pod = match target_pod(facts) {
        Ok(pod) => pod,
        Err(link) => return link,
    };
    judge_pod(pod)
}

/// A pod's containers against what Pod Identity's webhook gives: the agent's URI and the
/// token mount, and no IRSA variables that the SDKs would take first.
pub fn judge_pod(pod: &Pod) -> Link {
    const NAME: &str = "pod";
    let name = pod.metadata.name.clone().unwrap_or_default();
    let listed = containers(pod, DEFAULT_ANNOTATION_PREFIX);
    let reached: Vec<_> = listed.iter().filter(|c| !c.skipped).collect();
    let irsa: Vec<&str> = reached
        .iter()
        .filter(|c| c.uses_web_identity())
        .map(|c| c.name.as_str())
        .collect();
    if !irsa.is_empty() {
        return broken(
            NAME,
            "IrsaVariablesWin",
            format!(
                "pod {name}: containers {} carry AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, \
                 which the SDKs take before Pod Identity's credentials",
                irsa.join(", ")
            ),
            "the pod started while the ServiceAccount was annotated for IRSA: restart it (the \
             binding's spec.injection.restartPods does it during a migration)"
                .into(),
        );
    }
    let without: Vec<&str> = reached
        .iter()
        .filter(|c| c.container_credentials_uri.is_none() || c.pod_identity_token_mount.is_none())
        .map(|c| c.name.as_str())
        .collect();
    if !without.is_empty() {
        return broken(
            NAME,
            "NoPodIdentityVariables",
            format!(
                "pod {name}: containers {} lack {CONTAINER_CREDENTIALS_FULL_URI_ENV} or the \
                 {POD_IDENTITY_TOKEN_VOLUME} mount",
                without.join(", ")
            ),
            "EKS's Pod Identity webhook gives them at admission once the association exists: \
             restart the pod"
                .into(),
        );
    }
    link(
        NAME,
        Health::Ok,
        "PodIdentityInjected",
        format!(
            "pod {name}: {} container(s) reach the agent with the {POD_IDENTITY_TOKEN_VOLUME} token",
            reached.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_trust_statement_admits_pod_identity_only_with_both_actions_and_its_own_tags() {
        let statement = |actions: Value, sa: &str| {
            json!({"Effect": "Allow", "Principal": {"Service": POD_IDENTITY_SERVICE},
                "Action": actions,
                "Condition": {"StringEquals": {"aws:SourceAccount": "111122223333",
                    "aws:RequestTag/kubernetes-namespace": "shop",
                    "aws:RequestTag/kubernetes-service-account": sa}}})
        };
        let both = json!([ASSUME_ROLE, TAG_SESSION]);
        assert_eq!(
            admits(&statement(both.clone(), "orders"), "shop", "orders"),
            Ok(())
        );
        let no_tags = admits(&statement(json!(ASSUME_ROLE), "orders"), "shop", "orders");
        assert!(no_tags.is_err_and(|why| why.contains(TAG_SESSION)));
        let other = admits(&statement(both, "billing"), "shop", "orders");
        assert!(other.is_err_and(|why| why.contains("kubernetes-service-account")));
        let irsa = json!({"Effect": "Allow", "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/x"},
            "Action": "sts:AssumeRoleWithWebIdentity"});
        assert!(admits(&irsa, "shop", "orders").is_err());
    }

    #[test]
    fn a_pod_needs_the_agents_variables_and_no_irsa_ones() {
        let pod = |env: Value, mounts: Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"},
                "spec": {"containers": [{"name": "app", "image": "x", "env": env, "volumeMounts": mounts}]}}))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let agent = json!([{"name": CONTAINER_CREDENTIALS_FULL_URI_ENV, "value": "http://169.254.170.23/v1/credentials"}]);
        let mount = json!([{"name": POD_IDENTITY_TOKEN_VOLUME, "mountPath": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"}]);
        assert_eq!(
            judge_pod(&pod(agent.clone(), mount.clone())).reason,
            "PodIdentityInjected"
        );
        assert_eq!(
            judge_pod(&pod(json!([]), json!([]))).reason,
            "NoPodIdentityVariables"
        );
        assert_eq!(
            judge_pod(&pod(agent.clone(), json!([]))).reason,
            "NoPodIdentityVariables"
        );
        let mut both = agent.as_array().cloned().unwrap_or_default();
        both.push(json!({"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::111122223333:role/r"}));
        both.push(json!({"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/t"}));
        let judged = judge_pod(&pod(Value::Array(both), mount));
        assert_eq!(judged.reason, "IrsaVariablesWin");
        assert_eq!(judged.health, Health::Broken);
    }
}
