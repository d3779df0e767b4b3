//! Table tests of the policy engine, field by field and merged, and the property that a
//! statement it allows never reaches outside its namespace's allowed resources.

use std::collections::BTreeMap;

use podidentity_api::config::{AwsConfig, OperatorConfig};
use podidentity_api::{
    PodIdentityBindingSpec, PodIdentityPolicy, PodIdentityPolicySpec, Statement,
};
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::guardrails::Guardrails;

fn config() -> OperatorConfig {
    OperatorConfig {
        cluster_name: "prod".into(),
        aws: AwsConfig {
            account_id: Some("111122223333".into()),
            region: Some("eu-west-1".into()),
            ..AwsConfig::default()
        },
        ..OperatorConfig::default()
    }
}

fn policy(name: &str, spec: serde_json::Value) -> NamespacePolicy {
    let spec: PodIdentityPolicySpec =
        serde_json::from_value(spec).unwrap_or_else(|err| panic!("{err}"));
    NamespacePolicy::from_resource(&PodIdentityPolicy::new(name, spec))
        .unwrap_or_else(|problems| panic!("{problems:?}"))
}

/// The teams' policy: each namespace labelled `team` reads and writes its own buckets and
/// queues, and may have three bindings.
fn teams() -> NamespacePolicy {
    policy(
        "teams",
        json!({
            "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]},
            "allowedActions": ["s3:*", "sqs:*"],
            "allowedResources": [
                "arn:${partition}:s3:::${namespace}.*",
                "arn:${partition}:sqs:${region}:${account}:${namespace}_*",
            ],
            "maxBindingsPerNamespace": 3,
        }),
    )
}

fn labelled() -> BTreeMap<String, BTreeMap<String, String>> {
    [("shop", "shop"), ("blog", "blog")]
        .into_iter()
        .map(|(ns, team)| {
            (
                ns.to_string(),
                BTreeMap::from([("team".to_string(), team.to_string())]),
            )
        })
        .collect()
}

fn guardrails(policies: Vec<NamespacePolicy>) -> Guardrails {
    Guardrails::from_config(&config()).with_policies(policies, labelled())
}

fn statement(actions: &[&str], resources: &[&str]) -> PodIdentityBindingSpec {
    let mut spec = PodIdentityBindingSpec {
        service_account_name: "app".into(),
        ..PodIdentityBindingSpec::default()
    };
    spec.permissions.statements.push(Statement {
        actions: actions.iter().map(ToString::to_string).collect(),
        resources: resources.iter().map(ToString::to_string).collect(),
        ..Statement::default()
    });
    spec
}

fn fields(guardrails: &Guardrails, namespace: &str, spec: &PodIdentityBindingSpec) -> Vec<String> {
    guardrails
        .rules_for(namespace)
        .check(spec)
        .into_iter()
        .map(|v| v.field)
        .collect()
}

#[test]
fn a_teams_own_resources_pass_in_its_namespace_and_nowhere_else() {
    let g = guardrails(vec![teams()]);
    let shop_buckets = statement(
        &["s3:GetObject", "s3:PutObject"],
        &["arn:aws:s3:::shop.orders/*"],
    );
    assert_eq!(fields(&g, "shop", &shop_buckets), Vec::<String>::new());
    // The same binding in namespace blog: the bucket is shop's.
    let refused = g.rules_for("blog").check(&shop_buckets);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        refused[0].field,
        "spec.permissions.statements[0].resources[0]"
    );
    assert!(
        refused[0]
            .message
            .contains("PodIdentityPolicy teams (allowedResources)")
            && refused[0].message.contains("arn:aws:s3:::blog.*"),
        "{}",
        refused[0].message
    );
    // A queue of its own, with the account and region filled in.
    let queue = statement(
        &["sqs:SendMessage"],
        &["arn:aws:sqs:eu-west-1:111122223333:shop_events"],
    );
    assert_eq!(fields(&g, "shop", &queue), Vec::<String>::new());
}

#[test]
fn resource_patterns_that_could_reach_outside_are_refused() {
    let g = guardrails(vec![teams()]);
    for reaching in [
        "*",
        "arn:aws:s3:::shop*",                     // shopping-list is not shop's
        "arn:aws:s3:::*-orders",                  // anyone's orders
        "arn:aws:sqs:*:111122223333:shop_events", // another region
        "arn:aws:s3:::sho?-orders",
    ] {
        assert_eq!(
            fields(&g, "shop", &statement(&["s3:GetObject"], &[reaching])),
            ["spec.permissions.statements[0].resources[0]"],
            "{reaching}"
        );
    }
}

#[test]
fn actions_must_lie_within_every_policys_allowed_actions() {
    let g = guardrails(vec![teams()]);
    assert_eq!(
        fields(
            &g,
            "shop",
            &statement(&["dynamodb:GetItem"], &["arn:aws:s3:::shop.x"])
        ),
        ["spec.permissions.statements[0].actions[0]"]
    );
    // `s3:*` lies within; `s*:*` could reach sns (beyond the policy) and sts (denied by
    // the configuration): both say so.
    assert_eq!(
        fields(
            &g,
            "shop",
            &statement(&["S3:Get*"], &["arn:aws:s3:::shop.x"])
        ),
        Vec::<String>::new()
    );
    let messages: Vec<String> = g
        .rules_for("shop")
        .check(&statement(&["s*:*"], &["arn:aws:s3:::shop.x"]))
        .into_iter()
        .map(|v| v.message)
        .collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].contains("guardrails.deniedActions"));
    assert!(messages[1].contains("PodIdentityPolicy teams (allowedActions)"));
}

#[test]
fn several_policies_all_apply_and_the_most_restrictive_wins() {
    let no_deletes = policy(
        "no-deletes",
        json!({
            "namespaceSelector": {},
            "deniedActions": ["s3:Delete*"],
            "allowedActions": ["s3:*"],
            "maxBindingsPerNamespace": 2,
        }),
    );
    let g = guardrails(vec![teams(), no_deletes]);
    let rules = g.rules_for("shop");
    assert_eq!(rules.policies.len(), 2);
    // Allows intersect: sqs is in teams' list, not in no-deletes'.
    assert_eq!(
        fields(
            &g,
            "shop",
            &statement(
                &["sqs:SendMessage"],
                &["arn:aws:sqs:eu-west-1:111122223333:shop_q"]
            )
        ),
        ["spec.permissions.statements[0].actions[0]"]
    );
    // Denies unite.
    let deleting = rules.check(&statement(&["s3:DeleteObject"], &["arn:aws:s3:::shop.x/*"]));
    assert_eq!(deleting.len(), 1, "{deleting:?}");
    assert!(
        deleting[0]
            .message
            .contains("PodIdentityPolicy no-deletes (deniedActions)")
    );
    // The lowest quota counts.
    assert!(over_quota(&rules.policies, 1).is_none());
    let over = over_quota(&rules.policies, 2)
        .map(|v| v.message)
        .unwrap_or_default();
    assert!(
        over.contains("may have 2 binding(s)") && over.contains("no-deletes"),
        "{over}"
    );
    // An unlabelled namespace: only the `{}` policy selects it.
    assert_eq!(g.rules_for("tools").policies.len(), 1);
}

#[test]
fn an_absent_selector_selects_none_and_braces_select_all() {
    let none = policy("none", json!({"deniedActions": ["s3:*"]}));
    let all = policy(
        "all",
        json!({"namespaceSelector": {}, "deniedActions": ["sqs:*"]}),
    );
    let g = guardrails(vec![none, all]);
    let names: Vec<String> = g
        .rules_for("anything")
        .policies
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["all"]);
}

#[test]
fn managed_policies_boundaries_and_role_names() {
    let strict = policy(
        "strict",
        json!({
            "namespaceSelector": {"matchLabels": {"team": "shop"}},
            "allowedManagedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"],
            "deniedManagedPolicyArns": ["arn:aws:iam::aws:policy/AmazonSQS*"],
            "permissionsBoundaryArn": "arn:aws:iam::111122223333:policy/shop-boundary",
            "roleNameOverride": ["${namespace}.legacy-*"],
        }),
    );
    let g = guardrails(vec![strict]);
    let mut spec = statement(&["s3:GetObject"], &["arn:aws:s3:::x"]);
    spec.permissions.managed_policy_arns = vec![
        "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess".into(),
        "arn:aws:iam::aws:policy/AmazonSQSFullAccess".into(),
        "arn:aws:iam::aws:policy/AmazonDynamoDBReadOnlyAccess".into(),
    ];
    spec.role.name = Some("shop.legacy-reports".into());
    assert_eq!(
        fields(&g, "shop", &spec),
        [
            "spec.permissions.managedPolicyArns[1]",
            "spec.permissions.managedPolicyArns[2]"
        ],
        "the name passes: the policy lets this namespace name roles within its pattern"
    );
    spec.role.name = Some("blog.legacy-reports".into());
    assert!(fields(&g, "shop", &spec).contains(&"spec.role.name".to_string()));
    assert_eq!(
        g.rules_for("shop").permissions_boundary(),
        Ok(Some(
            "arn:aws:iam::111122223333:policy/shop-boundary".to_string()
        ))
    );
    assert_eq!(
        g.rules_for("blog").permissions_boundary(),
        Ok(None),
        "the configuration's"
    );
}

#[test]
fn two_different_required_boundaries_refuse_every_binding_there() {
    let a = policy(
        "a",
        json!({"namespaceSelector": {}, "permissionsBoundaryArn": "arn:aws:iam::1:policy/a"}),
    );
    let b = policy(
        "b",
        json!({"namespaceSelector": {}, "permissionsBoundaryArn": "arn:aws:iam::1:policy/b"}),
    );
    let g = guardrails(vec![a, b]);
    let rules = g.rules_for("shop");
    assert!(rules.permissions_boundary().is_err());
    let refused = rules.check(&statement(&["s3:GetObject"], &["arn:aws:s3:::x"]));
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0]
            .message
            .contains("a: arn:aws:iam::1:policy/a, b: arn:aws:iam::1:policy/b")
    );
}

#[test]
fn require_policy_refuses_namespaces_no_policy_selects() {
    let mut config = config();
    config.guardrails.require_policy = true;
    let g = Guardrails::from_config(&config).with_policies(vec![teams()], labelled());
    let spec = statement(&["s3:GetObject"], &["arn:aws:s3:::tools-x"]);
    let refused = g.rules_for("tools").check(&spec);
    assert_eq!(refused.len(), 1);
    assert!(refused[0].message.contains("guardrails.requirePolicy"));
    assert_eq!(
        fields(
            &g,
            "shop",
            &statement(&["s3:GetObject"], &["arn:aws:s3:::shop.x"])
        ),
        Vec::<String>::new()
    );
}

#[test]
fn a_bad_policy_names_its_own_fields() {
    let spec: PodIdentityPolicySpec = serde_json::from_value(json!({
        "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Near", "values": ["x"]}]},
        "allowedResources": ["arn:aws:s3:::${team}-*"],
    }))
    .unwrap_or_else(|err| panic!("{err}"));
    let problems = NamespacePolicy::from_resource(&PodIdentityPolicy::new("bad", spec))
        .err()
        .unwrap_or_default();
    let fields: Vec<&str> = problems.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        ["spec.namespaceSelector", "spec.allowedResources[0]"]
    );
    assert!(
        problems[1].message.contains("${team}") && problems[1].message.contains("${namespace}")
    );
}

#[test]
fn an_unusable_policy_refuses_what_it_selects_and_an_unreadable_selector_selects_all() {
    let read = |spec: serde_json::Value| {
        let spec: PodIdentityPolicySpec =
            serde_json::from_value(spec).unwrap_or_else(|err| panic!("{err}"));
        NamespacePolicy::read(&PodIdentityPolicy::new("broken", spec))
    };
    let bad_template = read(json!({
        "namespaceSelector": {"matchLabels": {"team": "shop"}},
        "allowedResources": ["arn:aws:s3:::${team}-*"],
    }));
    assert_eq!(bad_template.problems().len(), 1);
    let spec = statement(&["s3:GetObject"], &["arn:aws:s3:::shop.data/*"]);
    let rules = guardrails(vec![bad_template]);
    let refused = rules.rules_for("shop").check(&spec);
    assert_eq!(
        refused.iter().map(|v| v.field.as_str()).collect::<Vec<_>>(),
        ["metadata.namespace"]
    );
    assert!(
        refused[0].message.contains("PodIdentityPolicy broken")
            && refused[0].message.contains("${team}"),
        "{}",
        refused[0].message
    );
    assert_eq!(
        fields(&rules, "blog", &spec),
        Vec::<String>::new(),
        "not selected"
    );

    let bad_selector = read(json!({
        "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Near", "values": ["x"]}]},
    }));
    let rules = guardrails(vec![bad_selector]);
    for namespace in ["shop", "blog", "unlabelled"] {
        assert_eq!(
            fields(&rules, namespace, &spec),
            ["metadata.namespace"],
            "{namespace}"
        );
    }
}

#[test]
fn in_and_exists_take_values_as_kubernetes_says() {
    let problems = |expression: serde_json::Value| {
        let spec: PodIdentityPolicySpec = serde_json::from_value(
            json!({"namespaceSelector": {"matchExpressions": [expression]}}),
        )
        .unwrap_or_else(|err| panic!("{err}"));
        NamespacePolicy::read(&PodIdentityPolicy::new("p", spec))
            .problems()
            .iter()
            .map(|v| v.field.clone())
            .collect::<Vec<_>>()
    };
    let values = "spec.namespaceSelector.matchExpressions[0].values";
    assert_eq!(problems(json!({"key": "team", "operator": "In"})), [values]);
    assert_eq!(
        problems(json!({"key": "team", "operator": "Exists", "values": ["a"]})),
        [values]
    );
    assert!(problems(json!({"key": "team", "operator": "NotIn", "values": ["a"]})).is_empty());
    assert!(problems(json!({"key": "team", "operator": "DoesNotExist"})).is_empty());
}

fn namespace() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-c]{1,3}(-[a-c]{1,2})?").expect("regex")
}

/// ARN-ish patterns over a small alphabet, so that near misses are common.
fn resource_pattern() -> impl Strategy<Value = String> {
    (
        proptest::string::string_regex("[a-c.*?-]{0,6}").expect("regex"),
        namespace(),
    )
        .prop_map(|(tail, ns)| format!("arn:aws:s3:::{ns}{tail}"))
}

proptest! {
    /// Whatever resource pattern the engine lets a namespace write, every bucket it could
    /// name lies within that namespace's allowed resources.
    #[test]
    fn an_allowed_statement_never_reaches_outside_its_namespace(
        ns in namespace(),
        written in prop_oneof![resource_pattern(), Just("*".to_string())],
        bucket in proptest::string::string_regex("[a-c.-]{1,8}").expect("regex"),
    ) {
        let g = guardrails(vec![policy(
            "teams",
            json!({"namespaceSelector": {}, "allowedResources": ["arn:aws:s3:::${namespace}.*"]}),
        )]);
        let spec = statement(&["s3:GetObject"], &[&written]);
        let allowed = g.rules_for(&ns).check(&spec).is_empty();
        let arn = format!("arn:aws:s3:::{bucket}");
        if allowed && glob::matches(&written, &arn, false, &crate::effort::Effort::for_judgement()) == Ok(true) {
            let own = format!("{ns}.");
            prop_assert!(bucket.starts_with(&own), "{} allowed in {} reaches {}", written, ns, arn);
        }
    }
}

/// The finding of the adversarial pass: under `arn:aws:s3:::${namespace}-*`, namespace
/// `team` reached `team-a`'s buckets and could take its role names. Such a template is now
/// refused, with the field and what to write instead.
#[test]
fn a_template_another_namespace_can_continue_is_refused() {
    for (field, open) in [
        ("allowedResources", "arn:aws:s3:::${namespace}-*"),
        ("allowedResources", "arn:aws:s3:::${namespace}*"),
        ("allowedResources", "arn:aws:s3:::${namespace}?x"),
        ("allowedResources", "arn:aws:s3:::${namespace}${cluster}.*"),
        ("allowedResources", "arn:aws:s3:::*-${namespace}.*"),
        (
            "allowedResources",
            "arn:aws:s3:::x-${namespace}.y/${namespace}0",
        ),
        ("roleNameOverride", "${namespace}-*"),
        ("roleNameOverride", "${namespace}A*"),
    ] {
        let key = if field == "allowedResources" {
            "allowedResources"
        } else {
            "roleNameOverride"
        };
        let spec: PodIdentityPolicySpec =
            serde_json::from_value(json!({"namespaceSelector": {}, key: [open]}))
                .unwrap_or_else(|err| panic!("{err}"));
        let problems = NamespacePolicy::from_resource(&PodIdentityPolicy::new("teams", spec))
            .err()
            .unwrap_or_else(|| panic!("{open} must be refused"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, format!("spec.{field}[0]"));
        assert!(
            problems[0]
                .message
                .contains("no other namespace's name can go on")
                && (problems[0].message.contains("'.', '_', '/' or ':'")
                    || problems[0]
                        .message
                        .contains("start the field with ${namespace}")),
            "{}",
            problems[0].message
        );
    }
    for closed in [
        "arn:aws:s3:::${namespace}.*",
        "arn:aws:s3:::${namespace}",
        "arn:aws:s3:::shared/${namespace}/*",
        "arn:aws:sqs:*:*:${namespace}_*",
        "arn:aws:s3:::x-${namespace}.y",
        "arn:aws:s3:::??-${namespace}.*",
        "arn:aws:secretsmanager:*:*:secret:${namespace}/*",
    ] {
        let spec: PodIdentityPolicySpec =
            serde_json::from_value(json!({"namespaceSelector": {}, "allowedResources": [closed]}))
                .unwrap_or_else(|err| panic!("{err}"));
        assert!(
            NamespacePolicy::from_resource(&PodIdentityPolicy::new("teams", spec)).is_ok(),
            "{closed}"
        );
    }
    // What the open template allowed is refused under the closed one.
    let g = Guardrails::from_config(&config()).with_policies(
        vec![policy(
            "teams",
            json!({"namespaceSelector": {}, "allowedResources": ["arn:aws:s3:::${namespace}.*"],
                   "roleNameOverride": ["${namespace}.*"]}),
        )],
        BTreeMap::new(),
    );
    let mut spec = statement(&["s3:GetObject"], &["arn:aws:s3:::team-a.orders/*"]);
    spec.role.name = Some("team-a.billing".into());
    assert_eq!(
        fields(&g, "team", &spec),
        [
            "spec.permissions.statements[0].resources[0]",
            "spec.role.name"
        ]
    );
    // Letter case does not make another namespace's name: IAM names ignore it.
    spec.role.name = Some("TEAM-A.billing".into());
    assert_eq!(fields(&g, "team", &spec)[1], "spec.role.name");
    let mut own = statement(&["s3:GetObject"], &["arn:aws:s3:::team-a.orders/*"]);
    own.role.name = Some("TEAM-A.billing".into());
    assert_eq!(fields(&g, "team-a", &own), Vec::<String>::new());
}

fn template_around_namespace() -> impl Strategy<Value = String> {
    (
        proptest::string::string_regex("[a-c?./-]{0,3}").expect("regex"),
        proptest::string::string_regex("[a-c*?./_-]{0,4}").expect("regex"),
    )
        .prop_map(|(before, after)| format!("{before}${{namespace}}{after}"))
}

proptest! {
    /// A template the engine accepts (within one field) never lets two namespaces match one
    /// text, however their names share beginnings (`a`, `a-b`, `ab`): the boundary rule
    /// is what makes `${namespace}` a namespace's own.
    #[test]
    fn no_accepted_template_lets_two_namespaces_meet(
        template in template_around_namespace(),
        one in namespace(),
        other in namespace(),
    ) {
        prop_assume!(one != other);
        if open_namespace(&template).is_none() {
            let values = |namespace| TemplateValues {
                namespace,
                cluster: "prod",
                account: "111122223333",
                partition: "aws",
                region: "eu-west-1",
            };
            let (mine, theirs) = (expand(&template, &values(&one)), expand(&template, &values(&other)));
            let effort = crate::effort::Effort::for_judgement();
            prop_assert_eq!(
                crate::glob::intersects(&mine, &theirs, true, &effort),
                Ok(false),
                "{} and {} meet under {}", one, other, template
            );
        }
    }
}

/// Finding 5 of the second adversarial pass: each pattern closed on its own, two of one
/// list gave two namespaces one name (`${namespace}/*` beside `shared/${namespace}/*`: namespace
/// `shared` got every team's folder). Refused, naming both.
#[test]
fn two_patterns_that_give_two_namespaces_one_name_are_refused() {
    for (open, field) in [
        (
            json!([
                "arn:aws:s3:::${namespace}/*",
                "arn:aws:s3:::shared/${namespace}/*"
            ]),
            "allowedResources",
        ),
        (
            json!([
                "arn:aws:s3:::${namespace}.*",
                "arn:aws:s3:::logs.${namespace}"
            ]),
            "allowedResources",
        ),
        (
            json!(["${namespace}.*", "x.${namespace}.*"]),
            "roleNameOverride",
        ),
    ] {
        let spec: PodIdentityPolicySpec =
            serde_json::from_value(json!({"namespaceSelector": {}, field: open}))
                .unwrap_or_else(|err| panic!("{err}"));
        let problems = NamespacePolicy::from_resource(&PodIdentityPolicy::new("teams", spec))
            .err()
            .unwrap_or_else(|| panic!("{open} must be refused"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, format!("spec.{field}[1]"));
        assert!(
            problems[0].message.contains(&format!("spec.{field}[0]")),
            "{}",
            problems[0].message
        );
    }
    // The same text before ${namespace}, or patterns that never meet: fine.
    for closed in [
        json!([
            "arn:aws:s3:::shared/${namespace}/*",
            "arn:aws:s3:::shared/${namespace}.*"
        ]),
        json!([
            "arn:${partition}:s3:::${namespace}.*",
            "arn:${partition}:sqs:${region}:${account}:${namespace}_*"
        ]),
        json!([
            "arn:aws:s3:::${namespace}.*",
            "arn:aws:sqs:*:*:${namespace}_*",
            "arn:aws:s3:::shared-data/*"
        ]),
    ] {
        let spec: PodIdentityPolicySpec =
            serde_json::from_value(json!({"namespaceSelector": {}, "allowedResources": closed}))
                .unwrap_or_else(|err| panic!("{err}"));
        assert!(
            NamespacePolicy::from_resource(&PodIdentityPolicy::new("teams", spec)).is_ok(),
            "{closed}"
        );
    }
}

proptest! {
    /// Two templates a policy accepts together never let two namespaces meet either.
    #[test]
    fn no_accepted_pair_of_templates_lets_two_namespaces_meet(
        first in template_around_namespace(),
        second in template_around_namespace(),
        one in namespace(),
        other in namespace(),
    ) {
        prop_assume!(one != other);
        let spec: PodIdentityPolicySpec = serde_json::from_value(
            json!({"namespaceSelector": {}, "allowedResources": [first, second]}),
        )
        .unwrap_or_else(|err| panic!("{err}"));
        if NamespacePolicy::from_resource(&PodIdentityPolicy::new("p", spec)).is_ok() {
            let values = |namespace| TemplateValues {
                namespace,
                cluster: "prod",
                account: "111122223333",
                partition: "aws",
                region: "eu-west-1",
            };
            let effort = crate::effort::Effort::for_judgement();
            for (a, b) in [(&first, &second), (&second, &first), (&first, &first)] {
                let (mine, theirs) = (expand(a, &values(&one)), expand(b, &values(&other)));
                prop_assert_eq!(
                    crate::glob::intersects(&mine, &theirs, true, &effort),
                    Ok(false),
                    "{} under {} meets {} under {}", one, a, other, b
                );
            }
        }
    }
}

/// A policy that requires Pod Identity in its namespaces and lets them chain only into
/// their own roles of the data account.
fn pod_identity_only() -> NamespacePolicy {
    policy(
        "pod-identity-only",
        json!({
            "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]},
            "mechanisms": ["PodIdentity"],
            "allowedTargetRoleArns": ["arn:aws:iam::444455556666:role/${namespace}.*"],
        }),
    )
}

fn identity(spec: &mut PodIdentityBindingSpec, value: serde_json::Value) {
    spec.identity = serde_json::from_value(value).unwrap_or_else(|err| panic!("{err}"));
}

fn refused_fields(violations: &[Violation]) -> Vec<&str> {
    violations.iter().map(|v| v.field.as_str()).collect()
}

#[test]
fn a_policy_requires_a_mechanism_and_confines_target_roles_to_the_namespace() {
    let guardrails = guardrails(vec![pod_identity_only()]);
    let rules = guardrails.rules_for("shop");
    // The configuration's default (IRSA) is not what the policy allows.
    let mut spec = statement(&["s3:GetObject"], &["arn:aws:s3:::shop.x/*"]);
    let refused = rules.check(&spec);
    assert_eq!(
        refused_fields(&refused),
        ["spec.identity.mechanism"],
        "{refused:?}"
    );
    assert!(
        refused[0].message.contains("PodIdentity"),
        "{}",
        refused[0].message
    );

    identity(&mut spec, json!({"mechanism": "PodIdentity"}));
    assert!(rules.check(&spec).is_empty());

    // Its own namespace's role in the data account: allowed by the policy.
    identity(
        &mut spec,
        json!({"mechanism": "PodIdentity", "targetRoleArn": "arn:aws:iam::444455556666:role/shop.reader"}),
    );
    assert!(rules.check(&spec).is_empty());
    // A namespace whose name continues ours, another account, another letter case: not.
    for target in [
        "arn:aws:iam::444455556666:role/shop-admin.reader",
        "arn:aws:iam::444455556666:role/blog.reader",
        "arn:aws:iam::777788889999:role/shop.reader",
        "arn:aws:iam::444455556666:role/SHOP.reader",
    ] {
        identity(
            &mut spec,
            json!({"mechanism": "PodIdentity", "targetRoleArn": target}),
        );
        let refused = rules.check(&spec);
        assert_eq!(
            refused_fields(&refused),
            ["spec.identity.targetRoleArn"],
            "{target}: {refused:?}"
        );
    }
}

#[test]
fn a_target_role_template_that_leaves_the_namespace_open_makes_the_policy_unusable() {
    let spec: PodIdentityPolicySpec = serde_json::from_value(json!({
        "namespaceSelector": {},
        "allowedTargetRoleArns": ["arn:aws:iam::444455556666:role/${namespace}-*"],
    }))
    .unwrap_or_else(|err| panic!("{err}"));
    let read = NamespacePolicy::read(&PodIdentityPolicy::new("open", spec));
    let fields: Vec<&str> = read.problems().iter().map(|p| p.field.as_str()).collect();
    assert!(
        fields.contains(&"spec.allowedTargetRoleArns[0]"),
        "{fields:?}"
    );
}

/// A session policy is judged like the role's own statements, by the configuration's
/// guardrails and by the namespace's policies, each refusal naming the session policy's
/// own field.
#[test]
fn a_session_policy_is_judged_like_the_roles_statements() {
    let mut spec = statement(&["s3:GetObject"], &["arn:aws:s3:::shop.reports/*"]);
    spec.identity = podidentity_api::IdentitySpec {
        mechanism: Some(podidentity_api::Mechanism::PodIdentity),
        disable_session_tags: true,
        policy: Some(podidentity_api::SessionPolicy {
            statements: vec![
                Statement {
                    actions: vec!["s3:GetObject".into()],
                    resources: vec!["arn:aws:s3:::shop.reports/2026/*".into()],
                    ..Statement::default()
                },
                // Denied by the configuration (iam:*), outside the teams' actions (s3, sqs)
                // and their resources.
                Statement {
                    actions: vec!["iam:PassRole".into()],
                    resources: vec!["arn:aws:iam::111122223333:role/admin".into()],
                    ..Statement::default()
                },
            ],
        }),
        ..Default::default()
    };
    let g = guardrails(vec![teams()]);
    let mut refused = fields(&g, "shop", &spec);
    refused.sort();
    refused.dedup();
    assert_eq!(
        refused,
        [
            "spec.identity.policy.statements[1].actions[0]",
            "spec.identity.policy.statements[1].resources[0]",
        ]
    );
    // The configuration's guardrails alone refuse the denied action too.
    let alone = Guardrails::from_config(&config());
    assert_eq!(
        fields(&alone, "shop", &spec),
        ["spec.identity.policy.statements[1].actions[0]"]
    );
}
