//! Validation happens twice on purpose: in the CRD (so `kubectl apply` refuses at once)
//! and in Rust (schemas can be bypassed, and `plan` has no API server). Here the shipped
//! CRD's OpenAPI schema (by a JSON Schema validator) and its CEL rules (by kube-cel, the
//! kube-rs CEL engine) judge the same objects as the operator's own validation.

mod common;

use podidentity_api::PodIdentityBindingSpec;
use podidentity_api::config::OperatorConfig;
use serde_json::{Value, json};

struct Judges {
    schema: Value,
    structural: jsonschema::Validator,
    cel: kube_cel::Validator,
}

impl Judges {
    fn from_shipped_crd() -> Self {
        Self::from_crd_file("podidentitybindings.podidentity.io.yaml")
    }

    fn from_crd_file(name: &str) -> Self {
        let path = common::repo_root().join("crds").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{err}"));
        let crd: Value = serde_saphyr::from_str(&text).unwrap_or_else(|err| panic!("{err}"));
        let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
        let structural = jsonschema::validator_for(&schema)
            .unwrap_or_else(|err| panic!("schema does not compile: {err}"));
        Self {
            schema,
            structural,
            cel: kube_cel::Validator::new(),
        }
    }

    fn schema_errors(&self, object: &Value) -> Vec<String> {
        self.structural
            .iter_errors(object)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    fn cel_errors(&self, object: &Value) -> Vec<String> {
        match self.cel.validate(&self.schema, object, None) {
            Ok(()) => Vec::new(),
            Err(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.field_path, e.message))
                .collect(),
        }
    }
}

/// What the operator's own validation says (deserialization, then the spec rules).
fn operator_errors(spec: &Value) -> Vec<String> {
    let config = OperatorConfig {
        cluster_name: "prod".into(),
        ..OperatorConfig::default()
    };
    match serde_json::from_value::<PodIdentityBindingSpec>(spec.clone()) {
        Err(err) => vec![err.to_string()],
        Ok(spec) => podidentity_iam::validate::check_spec(&spec, &config)
            .iter()
            .map(ToString::to_string)
            .collect(),
    }
}

fn object(spec: Value) -> Value {
    json!({
        "apiVersion": "podidentity.io/v1alpha1",
        "kind": "PodIdentityBinding",
        "metadata": {"name": "b", "namespace": "shop"},
        "spec": spec,
    })
}

fn base() -> Value {
    json!({
        "serviceAccountName": "orders",
        "permissions": {
            "statements": [{"sid": "Read", "effect": "Allow", "actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::b/*"],
                            "conditions": {"StringEquals": {"aws:RequestedRegion": ["eu-west-1"]}}}],
            "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess"]
        },
        "role": {"maxSessionDurationSeconds": 7200, "tags": {"team": "shop"}},
        "injection": {"tokenExpirationSeconds": 3600},
        "credentialsSecret": {"name": "orders-aws"}
    })
}

/// Sets `value` at a `/`-separated path inside the spec.
fn with(path: &str, value: Value) -> Value {
    let mut spec = base();
    let mut node = &mut spec;
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        node = match part.parse::<usize>() {
            Ok(index) => &mut node[index],
            Err(_) => &mut node[*part],
        };
    }
    node[parts[parts.len() - 1]] = value;
    spec
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Accepted,
    /// The OpenAPI schema refuses it (type, enum, range, length, pattern).
    Schema,
    /// A CEL rule refuses it.
    Cel,
    /// Only the operator refuses it: checks a schema cannot express cheaply.
    OperatorOnly,
}

#[test]
fn schema_cel_and_operator_agree() {
    let judges = Judges::from_shipped_crd();
    let long = |n: usize| "a".repeat(n);
    let many_tags: serde_json::Map<String, Value> =
        (0..48).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases: Vec<(&str, Value, Expect)> = vec![
        ("the base binding", base(), Expect::Accepted),
        (
            "a minimal binding",
            json!({"serviceAccountName": "orders"}),
            Expect::Accepted,
        ),
        (
            "uppercase ServiceAccount",
            with("serviceAccountName", json!("Orders")),
            Expect::Schema,
        ),
        (
            "action without a colon",
            with("permissions/statements/0/actions", json!(["s3 GetObject"])),
            Expect::Schema,
        ),
        (
            "no resources",
            with("permissions/statements/0/resources", json!([])),
            Expect::Schema,
        ),
        (
            "relative resource",
            with("permissions/statements/0/resources", json!(["b/*"])),
            Expect::Schema,
        ),
        (
            "unknown effect",
            with("permissions/statements/0/effect", json!("Allowed")),
            Expect::Schema,
        ),
        (
            "sid with a dash",
            with("permissions/statements/0/sid", json!("read-all")),
            Expect::Schema,
        ),
        (
            "session too long",
            with("role/maxSessionDurationSeconds", json!(50_000)),
            Expect::Schema,
        ),
        (
            "session as text",
            with("role/maxSessionDurationSeconds", json!("1h")),
            Expect::Schema,
        ),
        (
            "token too short",
            with("injection/tokenExpirationSeconds", json!(60)),
            Expect::Schema,
        ),
        (
            "role name too long",
            with("role/name", json!(long(65))),
            Expect::Schema,
        ),
        (
            "role name with a slash",
            with("role/name", json!("a/b")),
            Expect::Schema,
        ),
        (
            "description too long",
            with("role/description", json!(long(1001))),
            Expect::Schema,
        ),
        (
            "managed policy not an ARN",
            with(
                "permissions/managedPolicyArns",
                json!(["AmazonS3ReadOnlyAccess"]),
            ),
            Expect::Schema,
        ),
        (
            "tag value too long",
            with("role/tags", json!({"team": long(257)})),
            Expect::Schema,
        ),
        (
            "48 user tags",
            with("role/tags", Value::Object(many_tags)),
            Expect::Schema,
        ),
        (
            "condition operator without keys",
            with(
                "permissions/statements/0/conditions",
                json!({"StringEquals": {}}),
            ),
            Expect::Schema,
        ),
        (
            "condition key without values",
            with(
                "permissions/statements/0/conditions",
                json!({"StringEquals": {"aws:SourceVpc": []}}),
            ),
            Expect::Schema,
        ),
        (
            "relative token path",
            with("credentialsSecret/tokenPath", json!("token")),
            Expect::Schema,
        ),
        (
            "a resource of 2,000 characters, 6,000 bytes (lengths count characters)",
            with(
                "permissions/statements/0/resources",
                json!([format!("arn:aws:s3:::shop.{}", "一".repeat(2000))]),
            ),
            Expect::Accepted,
        ),
        (
            "a resource of 2,049 characters",
            with(
                "permissions/statements/0/resources",
                json!([format!("arn:aws:s3:::shop.{}", "一".repeat(2031))]),
            ),
            Expect::Schema,
        ),
        (
            "token path with a line break (a second line in the credentials file)",
            with(
                "credentialsSecret/tokenPath",
                json!("/var/run/token\n[profile evil]"),
            ),
            Expect::Schema,
        ),
        (
            "token path ending in a line break",
            with("credentialsSecret/tokenPath", json!("/var/run/token\n")),
            Expect::Schema,
        ),
        (
            "secret name with capitals",
            with("credentialsSecret/name", json!("Orders")),
            Expect::Schema,
        ),
        (
            "deletion policy typo",
            with("deletionPolicy", json!("Keep")),
            Expect::Schema,
        ),
        (
            "reserved aws: tag",
            with("role/tags", json!({"aws:team": "x"})),
            Expect::Cel,
        ),
        (
            "reserved AWS: tag in capitals",
            with("role/tags", json!({"AWS:team": "x"})),
            Expect::Cel,
        ),
        (
            "reserved operator tag",
            with("role/tags", json!({"podidentity.io/cluster": "x"})),
            Expect::Cel,
        ),
        (
            "reserved operator tag in another case (IAM tag keys are case-insensitive)",
            with("role/tags", json!({"PodIdentity.IO/cluster": "x"})),
            Expect::Cel,
        ),
        (
            "tag key too long",
            with("role/tags", json!({long(129): "x"})),
            Expect::Cel,
        ),
        (
            "duplicate sids",
            with(
                "permissions/statements",
                json!([
                    {"sid": "A", "actions": ["s3:GetObject"], "resources": ["*"]},
                    {"sid": "A", "actions": ["s3:PutObject"], "resources": ["*"]}
                ]),
            ),
            // A CEL rule for it needs nested comprehensions, which 1.24 fails under load.
            Expect::OperatorOnly,
        ),
        (
            "two statements without sids",
            with(
                "permissions/statements",
                json!([
                    {"actions": ["s3:GetObject"], "resources": ["*"]},
                    {"actions": ["s3:PutObject"], "resources": ["*"]}
                ]),
            ),
            Expect::Accepted,
        ),
        // The key charset would need a regex over unbounded map keys in CEL, which the API
        // server's cost estimator refuses; IAM would refuse it too.
        (
            "tag key with '#'",
            with("role/tags", json!({"a#b": "x"})),
            Expect::OperatorOnly,
        ),
        // `x-kubernetes-list-type: set` makes the API server refuse duplicates; a plain
        // JSON Schema validator does not know that keyword.
        (
            "managed policy twice",
            with(
                "permissions/managedPolicyArns",
                json!([
                    "arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess",
                    "arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess"
                ]),
            ),
            Expect::OperatorOnly,
        ),
    ];

    let mut disagreements = Vec::new();
    for (name, spec, expected) in cases {
        let object = object(spec.clone());
        let schema = judges.schema_errors(&object);
        let cel = judges.cel_errors(&object);
        let operator = operator_errors(&spec);
        let ok = match expected {
            Expect::Accepted => schema.is_empty() && cel.is_empty() && operator.is_empty(),
            Expect::Schema => !schema.is_empty() && !operator.is_empty(),
            Expect::Cel => schema.is_empty() && !cel.is_empty() && !operator.is_empty(),
            Expect::OperatorOnly => schema.is_empty() && cel.is_empty() && !operator.is_empty(),
        };
        if !ok {
            disagreements.push(format!("{name} (expected {expected:?}): schema {schema:?}, CEL {cel:?}, operator {operator:?}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "disagreements:\n{}",
        disagreements.join("\n")
    );
}

#[test]
fn every_example_binding_passes_the_schema_and_its_rules() {
    let judges = Judges::from_shipped_crd();
    let dir = common::repo_root().join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{err}"))
        .flatten()
    {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|err| panic!("{err}"));
        for document in documents
            .into_iter()
            .filter(|d| d["kind"] == "PodIdentityBinding")
        {
            assert_eq!(
                judges.schema_errors(&document),
                Vec::<String>::new(),
                "{}",
                path.display()
            );
            assert_eq!(
                judges.cel_errors(&document),
                Vec::<String>::new(),
                "{}",
                path.display()
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6, "the six example bindings");
}

#[test]
fn cel_messages_tell_what_to_change() {
    let judges = Judges::from_shipped_crd();
    let errors = judges.cel_errors(&object(with("role/tags", json!({"aws:team": "x"}))));
    assert!(
        errors.iter().any(|e| e.contains(
            "tag keys starting with podidentity.io/ or aws: (in any case: IAM tag keys are \
             case-insensitive) are reserved: rename the tag"
        )),
        "{errors:?}"
    );
}

/// The policy CRD's rules (template variables, selector operators) refuse what the
/// operator's reading of a policy refuses, and pass what it passes.
#[test]
fn policy_schema_cel_and_operator_agree() {
    let judges = Judges::from_crd_file("podidentitypolicies.podidentity.io.yaml");
    let policy = |spec: Value| {
        json!({
            "apiVersion": "podidentity.io/v1alpha1",
            "kind": "PodIdentityPolicy",
            "metadata": {"name": "teams"},
            "spec": spec,
        })
    };
    let operator_refuses = |spec: &Value| {
        let parsed: Result<podidentity_api::PodIdentityPolicy, _> =
            serde_json::from_value(policy(spec.clone()));
        match parsed {
            Err(_) => true,
            Ok(parsed) => {
                podidentity_iam::namespace_policy::NamespacePolicy::from_resource(&parsed).is_err()
            }
        }
    };
    let cases: Vec<(&str, Value, bool)> = vec![
        (
            "a templated resource",
            json!({"namespaceSelector": {}, "allowedResources": ["arn:aws:s3:::${namespace}.*"]}),
            true,
        ),
        (
            "every variable",
            json!({"allowedResources": ["arn:${partition}:sqs:${region}:${account}:${cluster}-${namespace}_*"]}),
            true,
        ),
        (
            "the namespace as a path",
            json!({"allowedResources": ["arn:aws:s3:::shared/${namespace}/*", "arn:aws:s3:::shared/${namespace}"]}),
            true,
        ),
        (
            "a namespace another namespace's name continues",
            json!({"allowedResources": ["arn:aws:s3:::${namespace}-*"]}),
            false,
        ),
        (
            "a role name another namespace's name continues",
            json!({"roleNameOverride": ["${namespace}-*"]}),
            false,
        ),
        (
            "a namespace followed by a wildcard",
            json!({"allowedResources": ["arn:aws:s3:::${namespace}*"]}),
            false,
        ),
        (
            "a namespace followed by another variable",
            json!({"allowedResources": ["arn:aws:s3:::${namespace}${cluster}.x"]}),
            false,
        ),
        (
            "a wildcard before the namespace in its field",
            json!({"allowedResources": ["arn:aws:s3:::*-${namespace}.*"]}),
            false,
        ),
        (
            "a wildcard before the namespace in another field",
            json!({"allowedResources": ["arn:aws:sqs:*:*:${namespace}_*"]}),
            true,
        ),
        (
            "a dollar not opening a variable",
            json!({"allowedResources": ["arn:aws:s3:::cost$-a", "trailing$"]}),
            true,
        ),
        (
            "dollars before a variable",
            json!({"roleNameOverride": ["$${namespace}.*"]}),
            true,
        ),
        (
            "an unknown variable",
            json!({"allowedResources": ["arn:aws:s3:::${team}-*"]}),
            false,
        ),
        (
            "an unknown variable after dollars",
            json!({"allowedResources": ["$${team}"]}),
            false,
        ),
        (
            "an unclosed variable",
            json!({"roleNameOverride": ["${namespace"]}),
            false,
        ),
        (
            "In with values",
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}}),
            true,
        ),
        (
            "Exists alone",
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]}}),
            true,
        ),
        (
            "In without values",
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}}),
            false,
        ),
        (
            "Exists with values",
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists", "values": ["a"]}]}}),
            false,
        ),
        (
            "an unknown operator",
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Gt", "values": ["1"]}]}}),
            false,
        ),
    ];
    let mut disagreements = Vec::new();
    for (case, spec, accepted) in cases {
        let object = policy(spec.clone());
        let api_server_refuses =
            !judges.schema_errors(&object).is_empty() || !judges.cel_errors(&object).is_empty();
        let operator = operator_refuses(&spec);
        if api_server_refuses == accepted || operator == accepted {
            disagreements.push(format!(
                "{case}: expected {}, API server refuses: {api_server_refuses}, operator refuses: {operator}",
                if accepted { "accepted" } else { "refused" }
            ));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}
