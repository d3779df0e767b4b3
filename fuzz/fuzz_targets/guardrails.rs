//! The guardrail engine against an oracle that shares no code with it (IAM's wildcard
//! matching written plainly, `podidentity_fuzz::plain_match`): a binding the engine
//! accepts grants nothing a denied pattern matches, nothing outside its namespace
//! policy's allowed actions and resources, no secret of any name, and a `${namespace}`
//! template the engine accepts never lets two namespaces meet on one name.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use podidentity_api::{Effect, PodIdentityBindingSpec, PodIdentityPolicy, Statement};
use podidentity_fuzz::{iam_arn_match, instances, operator_config, plain_match};
use podidentity_iam::namespace_policy::NamespacePolicy;
use podidentity_iam::{BindingRef, Guardrails, desired_state};

/// Namespaces whose names begin one another: where templates leak.
const NAMESPACES: [&str; 5] = ["team", "team-a", "a", "a-b", "ab"];

/// Where the operator publishes the signing keys: no binding may change it.
const KEYS_BUCKET: &str = "prod-oidc";

/// Words that make patterns meet what they must not.
const WORDS: &[&str] = &[
    "iam",
    "s3",
    "sts",
    "secretsmanager",
    "kms",
    "ssm",
    "arn",
    "aws",
    ":",
    "team",
    "team-a",
    "-",
    ".",
    "_",
    "/",
    "secret",
    "key",
    "parameter",
    "Get",
    "Pass",
    "Role",
    "AssumeRole",
    "Decrypt",
    "GetSecretValue",
    "GetParameter",
    "eu-west-1",
    "111122223333",
    "orders",
    "${namespace}",
    "arn:aws:s3:::",
    "arn:aws:secretsmanager:eu-west-1:111122223333:secret:",
    "arn:aws:kms:eu-west-1:111122223333:key/",
    "IAM",
    "PassRole",
    "Object",
    "prod-oidc",
    "Put",
    "keys.json",
    "shared/",
];
const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCXYZ0123456789:-./_";

#[derive(Arbitrary, Debug)]
enum Piece {
    Word(u8),
    Star,
    One,
    Char(u8),
}

type Pattern = Vec<Piece>;

fn spell(pattern: &Pattern) -> String {
    pattern
        .iter()
        .take(24)
        .map(|piece| match piece {
            Piece::Word(w) => WORDS[usize::from(*w) % WORDS.len()].to_string(),
            Piece::Star => "*".into(),
            Piece::One => "?".into(),
            Piece::Char(c) => char::from(CHARS[usize::from(*c) % CHARS.len()]).to_string(),
        })
        .collect()
}

fn spell_all(patterns: &[Pattern], max: usize) -> Vec<String> {
    patterns.iter().take(max).map(spell).collect()
}

#[derive(Arbitrary, Debug)]
struct Stmt {
    deny: bool,
    actions: Vec<Pattern>,
    resources: Vec<Pattern>,
}

#[derive(Arbitrary, Debug)]
struct Case {
    namespace: u8,
    statements: Vec<Stmt>,
    allowed_actions: Vec<Pattern>,
    denied_actions: Vec<Pattern>,
    allowed_resources: Vec<Pattern>,
    role_name: Option<Pattern>,
    role_names: Vec<Pattern>,
    witnesses: Vec<Pattern>,
}

fn expand(template: &str, namespace: &str) -> String {
    template
        .replace("${namespace}", namespace)
        .replace("${cluster}", "prod")
        .replace("${account}", "111122223333")
        .replace("${partition}", "aws")
        .replace("${region}", "eu-west-1")
}

/// IAM's ARN matching, field by field: a wildcard stays within its field.
fn arn_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<&str>, Vec<&str>) = (pattern.split(':').collect(), text.split(':').collect());
    p.len() == t.len() && p.iter().zip(&t).all(|(p, t)| plain_match(p, t, false))
}

/// A character `text` never holds, to spell a name nobody wrote.
fn fresh(text: &str) -> char {
    ['Q', 'W', '#', '%', '~', '§']
        .into_iter()
        .find(|c| !text.contains(*c))
        .unwrap_or('é')
}

fuzz_target!(|case: Case| {
    let mut config = operator_config();
    config.oidc.manage = true;
    config.oidc.publish.s3_bucket = Some(KEYS_BUCKET.into());
    let namespace = NAMESPACES[usize::from(case.namespace) % NAMESPACES.len()];
    let allowed_actions = spell_all(&case.allowed_actions, 3);
    let policy_denied = spell_all(&case.denied_actions, 3);
    let templates = spell_all(&case.allowed_resources, 3);
    let name_templates = spell_all(&case.role_names, 2);
    let spec = serde_json::json!({
        "namespaceSelector": {},
        "allowedActions": allowed_actions,
        "deniedActions": policy_denied,
        "allowedResources": templates,
        "roleNameOverride": name_templates,
    });
    let Ok(spec) = serde_json::from_value(spec) else {
        return;
    };
    let policy = NamespacePolicy::read(&PodIdentityPolicy::new("fuzz", spec));
    let usable = policy.problems().is_empty();
    let labels = NAMESPACES
        .iter()
        .map(|ns| (ns.to_string(), BTreeMap::new()))
        .collect();
    let guardrails = Guardrails::from_config(&config).with_policies(vec![policy], labels);

    // A template the engine accepts keeps namespaces apart, on every name tried.
    let mut witnesses: Vec<String> = spell_all(&case.witnesses, 6);
    for template in templates.iter().chain(&name_templates) {
        for ns in NAMESPACES {
            witnesses.extend(instances(&expand(template, ns)));
        }
    }
    if usable {
        // (A pattern without `${namespace}` is the same for every namespace, on purpose.)
        for template in templates.iter().filter(|t| t.contains("${namespace}")) {
            for (i, one) in NAMESPACES.iter().enumerate() {
                for other in &NAMESPACES[i + 1..] {
                    let (mine, theirs) = (expand(template, one), expand(template, other));
                    for w in &witnesses {
                        assert!(
                            !(arn_match(&mine, w) && arn_match(&theirs, w)),
                            "{template} lets {one} and {other} both reach {w}"
                        );
                    }
                }
            }
        }
    }

    let mut binding = PodIdentityBindingSpec {
        service_account_name: "app".into(),
        ..PodIdentityBindingSpec::default()
    };
    binding.permissions.statements = case
        .statements
        .iter()
        .take(3)
        .map(|s| Statement {
            effect: if s.deny { Effect::Deny } else { Effect::Allow },
            actions: spell_all(&s.actions, 3),
            resources: spell_all(&s.resources, 3),
            ..Statement::default()
        })
        .collect();
    binding.role.name = case.role_name.as_ref().map(spell);
    if desired_state(
        BindingRef::new(namespace, "app"),
        &binding,
        &config,
        &guardrails,
    )
    .is_err()
    {
        return;
    }

    // Accepted: check what it grants against the oracle.
    let denied: Vec<String> = config
        .guardrails
        .denied_actions
        .iter()
        .chain(&policy_denied)
        .cloned()
        .collect();
    let allowed_here: Vec<String> = templates.iter().map(|t| expand(t, namespace)).collect();
    for statement in binding
        .permissions
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow)
    {
        let mut tried = witnesses.clone();
        for pattern in statement
            .actions
            .iter()
            .chain(&statement.resources)
            .chain(&denied)
            .chain(&allowed_here)
        {
            tried.extend(instances(pattern));
        }
        for action in &statement.actions {
            for w in &tried {
                if !plain_match(action, w, true) {
                    continue;
                }
                for d in &denied {
                    assert!(
                        !plain_match(d, w, true),
                        "{action} grants {w}, which {d} denies"
                    );
                }
                if !allowed_actions.is_empty() {
                    assert!(
                        allowed_actions.iter().any(|a| plain_match(a, w, true)),
                        "{action} grants {w}, outside {allowed_actions:?}"
                    );
                }
            }
        }
        for resource in &statement.resources {
            if !allowed_here.is_empty() {
                for w in &tried {
                    if plain_match(resource, w, false) {
                        assert!(
                            allowed_here.iter().any(|a| iam_arn_match(a, w)),
                            "{resource} reaches {w}, outside {allowed_here:?} in {namespace}"
                        );
                    }
                }
            }
            // Names nobody wrote: beginning with a character the pattern never names,
            // alone or before what the pattern's own names end with.
            let first = fresh(resource);
            let mut names: Vec<String> = vec![std::iter::repeat_n(first, 3).collect()];
            for instance in instances(resource) {
                let tail = instance.rsplit([':', '/']).next().unwrap_or_default();
                names.push(format!(
                    "{first}{}",
                    tail.chars().skip(1).collect::<String>()
                ));
                names.push(format!("{first}{tail}"));
            }
            for name in &names {
                for (read, arn) in [
                    (
                        "secretsmanager:GetSecretValue",
                        format!("arn:aws:secretsmanager:eu-west-1:111122223333:secret:{name}"),
                    ),
                    (
                        "kms:Decrypt",
                        format!("arn:aws:kms:eu-west-1:111122223333:key/{name}"),
                    ),
                    (
                        "ssm:GetParameter",
                        format!("arn:aws:ssm:eu-west-1:111122223333:parameter/{name}"),
                    ),
                ] {
                    if statement.actions.iter().any(|a| plain_match(a, read, true)) {
                        assert!(
                            !plain_match(resource, &arn, false),
                            "{read} on {resource} reads {arn}"
                        );
                    }
                }
            }
        }
    }
    // An empty name is no name (the derived one is used).
    // Nothing accepted changes the bucket of the signing keys.
    let keys = format!("arn:aws:s3:::{KEYS_BUCKET}/keys.json");
    for statement in binding
        .permissions
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow)
    {
        let writes = statement.actions.iter().any(|a| {
            ["s3:PutObject", "s3:DeleteObject", "s3:PutBucketPolicy"]
                .iter()
                .any(|w| plain_match(a, w, true))
        });
        if writes {
            for resource in &statement.resources {
                assert!(
                    !plain_match(resource, &keys, false),
                    "{resource} writes {keys}"
                );
            }
        }
    }
    if let (Some(name), false) = (&binding.role.name, name_templates.is_empty())
        && !name.is_empty()
    {
        assert!(
            name_templates
                .iter()
                .any(|t| plain_match(&expand(t, namespace), name, true)),
            "{name} matches none of {name_templates:?} in {namespace}"
        );
    }
});
