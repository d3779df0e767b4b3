//! The trust policy: the operator owns the whole document. One statement per OIDC
//! provider, each trusting exactly one ServiceAccount subject and one audience, so a
//! namespace can only ever grant its own ServiceAccount.

use podidentity_api::Effect;
use serde_json::{Map, Value};

use crate::document::{OneOrMany, PolicyDocument, PolicyStatement, Principal};

pub const ASSUME_ROLE_WITH_WEB_IDENTITY: &str = "sts:AssumeRoleWithWebIdentity";

/// The subject IAM sees in the token: `system:serviceaccount:<namespace>:<name>`.
pub fn service_account_subject(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

/// The issuer host and path a provider ARN names (`oidc.example.com/id/ABC`), which
/// prefixes the `:sub` and `:aud` condition keys.
pub fn provider_host_path(provider_arn: &str) -> &str {
    provider_arn
        .split_once(":oidc-provider/")
        .map_or(provider_arn, |(_, host_path)| host_path)
}

/// The exact trust policy of the API contract.
pub fn trust_policy(
    provider_arns: &[String],
    namespace: &str,
    service_account: &str,
    audience: &str,
) -> PolicyDocument {
    trust_policy_for(
        provider_arns,
        namespace,
        &[service_account.to_string()],
        audience,
    )
}

/// The trust policy for several ServiceAccounts of one namespace (a CredentialsRequest
/// names a list): `:sub` is the one subject as a string, or the list of them.
pub fn trust_policy_for(
    provider_arns: &[String],
    namespace: &str,
    service_accounts: &[String],
    audience: &str,
) -> PolicyDocument {
    let subjects: Vec<Value> = service_accounts
        .iter()
        .map(|account| Value::String(service_account_subject(namespace, account)))
        .collect();
    let subject = match subjects.as_slice() {
        [one] => one.clone(),
        _ => Value::Array(subjects),
    };
    let statements = provider_arns
        .iter()
        .map(|provider_arn| {
            let host_path = provider_host_path(provider_arn);
            let mut string_equals = Map::new();
            string_equals.insert(format!("{host_path}:sub"), subject.clone());
            string_equals.insert(format!("{host_path}:aud"), Value::String(audience.into()));
            let mut condition = Map::new();
            condition.insert("StringEquals".into(), Value::Object(string_equals));
            PolicyStatement {
                sid: None,
                effect: Effect::Allow,
                principal: Some(Principal::federated(provider_arn.clone())),
                action: OneOrMany::One(ASSUME_ROLE_WITH_WEB_IDENTITY.into()),
                resource: None,
                condition: Some(condition),
            }
        })
        .collect();
    PolicyDocument::new(statements)
}

/// The service principal EKS Pod Identity's agent assumes roles as.
pub const POD_IDENTITY_SERVICE: &str = "pods.eks.amazonaws.com";
pub const ASSUME_ROLE: &str = "sts:AssumeRole";
/// EKS tags every Pod Identity session, so the trust must allow tagging.
pub const TAG_SESSION: &str = "sts:TagSession";

/// Who the Pod Identity statement admits.
#[derive(Clone, Copy, Debug)]
pub struct PodIdentitySubject<'a> {
    /// The cluster's account: `aws:SourceAccount`, so an association made in another
    /// account cannot use the role.
    pub account_id: &'a str,
    /// The cluster's ARN, as EKS tags it (`eks-cluster-arn`).
    pub cluster_arn: &'a str,
    pub namespace: &'a str,
    pub service_account: &'a str,
    /// Whether EKS tags the session. Without tags no tag condition can hold (a key missing
    /// from the request makes the condition false), so only the account is pinned.
    pub session_tags: bool,
}

/// The statement trusting EKS Pod Identity for one ServiceAccount of this cluster: the
/// service principal, `sts:AssumeRole` and `sts:TagSession`, and the session tags EKS
/// sets (EKS user guide, "pod-id-abac": `eks-cluster-arn`, `kubernetes-namespace`,
/// `kubernetes-service-account`) pinned to this cluster, namespace and ServiceAccount.
pub fn pod_identity_statement(subject: PodIdentitySubject<'_>) -> PolicyStatement {
    let mut string_equals = Map::new();
    string_equals.insert(
        "aws:SourceAccount".into(),
        Value::String(subject.account_id.into()),
    );
    if subject.session_tags {
        for (tag, value) in [
            ("eks-cluster-arn", subject.cluster_arn),
            ("kubernetes-namespace", subject.namespace),
            ("kubernetes-service-account", subject.service_account),
        ] {
            string_equals.insert(format!("aws:RequestTag/{tag}"), Value::String(value.into()));
        }
    }
    let mut condition = Map::new();
    condition.insert("StringEquals".into(), Value::Object(string_equals));
    PolicyStatement {
        sid: None,
        effect: Effect::Allow,
        principal: Some(Principal::service(POD_IDENTITY_SERVICE)),
        action: OneOrMany::Many(vec![ASSUME_ROLE.into(), TAG_SESSION.into()]),
        resource: None,
        condition: Some(condition),
    }
}

/// Whether a statement of a trust policy is Pod Identity's (its principal is the service).
pub fn is_pod_identity_statement(statement: &PolicyStatement) -> bool {
    statement
        .principal
        .as_ref()
        .and_then(|p| p.service.as_deref())
        == Some(POD_IDENTITY_SERVICE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_identity_statement_pins_cluster_namespace_and_service_account() {
        let statement = pod_identity_statement(PodIdentitySubject {
            account_id: "111122223333",
            cluster_arn: "arn:aws:eks:eu-west-1:111122223333:cluster/prod",
            namespace: "shop",
            service_account: "orders",
            session_tags: true,
        });
        assert_eq!(
            PolicyDocument::new(vec![statement]).minified(),
            concat!(
                r#"{"Version":"2012-10-17","Statement":[{"#,
                r#""Effect":"Allow","#,
                r#""Principal":{"Service":"pods.eks.amazonaws.com"},"#,
                r#""Action":["sts:AssumeRole","sts:TagSession"],"#,
                r#""Condition":{"StringEquals":{"#,
                r#""aws:SourceAccount":"111122223333","#,
                r#""aws:RequestTag/eks-cluster-arn":"arn:aws:eks:eu-west-1:111122223333:cluster/prod","#,
                r#""aws:RequestTag/kubernetes-namespace":"shop","#,
                r#""aws:RequestTag/kubernetes-service-account":"orders"}}}]}"#
            )
        );
    }

    #[test]
    fn without_session_tags_only_the_account_is_pinned() {
        let statement = pod_identity_statement(PodIdentitySubject {
            account_id: "111122223333",
            cluster_arn: "arn:aws:eks:eu-west-1:111122223333:cluster/prod",
            namespace: "shop",
            service_account: "orders",
            session_tags: false,
        });
        assert!(is_pod_identity_statement(&statement));
        let text = PolicyDocument::new(vec![statement]).minified();
        assert!(
            text.contains(r#""aws:SourceAccount":"111122223333""#),
            "{text}"
        );
        assert!(!text.contains("RequestTag"), "{text}");
    }

    const PROVIDER: &str = "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/ABC";

    #[test]
    fn matches_the_contract_byte_for_byte() {
        let doc = trust_policy(&[PROVIDER.into()], "shop", "orders", "sts.amazonaws.com");
        assert_eq!(
            doc.minified(),
            concat!(
                r#"{"Version":"2012-10-17","Statement":[{"#,
                r#""Effect":"Allow","#,
                r#""Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/ABC"},"#,
                r#""Action":"sts:AssumeRoleWithWebIdentity","#,
                r#""Condition":{"StringEquals":{"#,
                r#""oidc.example.com/id/ABC:sub":"system:serviceaccount:shop:orders","#,
                r#""oidc.example.com/id/ABC:aud":"sts.amazonaws.com"}}}]}"#
            )
        );
    }

    #[test]
    fn one_statement_per_provider_each_for_the_same_subject() {
        let other = "arn:aws:iam::111122223333:oidc-provider/oidc.other.example.com/id/XYZ";
        let doc = trust_policy(&[PROVIDER.into(), other.into()], "shop", "orders", "aud");
        assert_eq!(doc.statement.len(), 2);
        let text = doc.minified();
        assert!(text.contains(
            r#""oidc.other.example.com/id/XYZ:sub":"system:serviceaccount:shop:orders""#
        ));
        assert!(text.contains(r#""oidc.other.example.com/id/XYZ:aud":"aud""#));
    }
}
