//! Would IAM let this token assume this role? The trust-policy half of
//! AssumeRoleWithWebIdentity, judged offline: a token's claims (issuer, subject, audiences)
//! against a role's trust policy, with IAM's rules for statements (an explicit Deny wins,
//! then any Allow, else the implicit deny) and for the condition operators a trust policy
//! for web identities uses (`StringEquals`, `StringLike` and their negations and
//! `IgnoreCase` forms, `ForAnyValue:` / `ForAllValues:`, `...IfExists`). `doctor` tells
//! from it which link of the chain is broken; it asks nothing of AWS.

use serde_json::Value;

use crate::document::{statements, strings};
use crate::effort::Effort;
use crate::glob;
use crate::trust::{ASSUME_ROLE_WITH_WEB_IDENTITY, provider_host_path};

/// What AssumeRoleWithWebIdentity presents of a ServiceAccount token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// `iss`, as in the token (`https://oidc.example.com/id/ABC`).
    pub issuer: String,
    /// `sub`: `system:serviceaccount:<namespace>:<name>`.
    pub subject: String,
    /// `aud`: one or more.
    pub audiences: Vec<String>,
}

/// What a ServiceAccount token says of itself (read, not verified: the verifying is
/// STS's, against the issuer's published keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFacts {
    pub claims: Claims,
    /// `kid` of the header: the key the published JWKS must hold.
    pub key_id: Option<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at: Option<i64>,
}

/// Why a token could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the token is not a JWT the API server issues: {0}")]
pub struct UnreadableToken(String);

/// Reads the header and claims of a JWT (`header.payload.signature`, base64url).
pub fn read_token(jwt: &str) -> Result<TokenFacts, UnreadableToken> {
    use base64::Engine;
    let part = |index: usize, what: &str| -> Result<Value, UnreadableToken> {
        let text = jwt
            .split('.')
            .nth(index)
            .ok_or_else(|| UnreadableToken(format!("it has no {what}")))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|e| UnreadableToken(format!("its {what} is not base64url: {e}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| UnreadableToken(format!("its {what} is not JSON: {e}")))
    };
    let header = part(0, "header")?;
    let payload = part(1, "payload")?;
    let text = |key: &str| payload.get(key).and_then(Value::as_str).map(String::from);
    let issuer = text("iss").ok_or_else(|| UnreadableToken("it has no iss claim".into()))?;
    let subject = text("sub").ok_or_else(|| UnreadableToken("it has no sub claim".into()))?;
    Ok(TokenFacts {
        claims: Claims {
            issuer,
            subject,
            // `aud` is one string or a list (RFC 7519).
            audiences: strings(payload.get("aud")),
        },
        key_id: header.get("kid").and_then(Value::as_str).map(String::from),
        expires_at: payload.get("exp").and_then(Value::as_i64),
    })
}

/// The outcome, with the statement that decided it or why none did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Statement `index` allows it (and no Deny refuses it).
    Allowed { statement: usize },
    /// Statement `index`, a Deny, refuses it.
    Denied { statement: usize },
    /// No statement allows it: why each one does not (in statement order).
    NotAllowed { reasons: Vec<String> },
}

impl Verdict {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed { .. })
    }
}

/// Judges `claims` presented through `provider_arn` (the IAM OIDC provider whose URL is
/// the token's issuer) against `trust_policy`.
pub fn evaluate(trust_policy: &Value, provider_arn: &str, claims: &Claims) -> Verdict {
    let Some(statements) = statements(trust_policy) else {
        return Verdict::NotAllowed {
            reasons: vec!["the trust policy has no Statement".into()],
        };
    };
    let host_path = provider_host_path(provider_arn);
    let issuer = claims
        .issuer
        .trim_start_matches("https://")
        .trim_end_matches('/');
    if issuer != host_path {
        // IAM finds the provider by the token's issuer: with another URL, none is found.
        return Verdict::NotAllowed {
            reasons: vec![format!(
                "the token's issuer {} is not the provider's URL https://{host_path}",
                claims.issuer
            )],
        };
    }
    let request = Request {
        provider_arn,
        host_path,
        claims,
    };
    let mut allowed = None;
    let mut reasons = Vec::new();
    for (index, statement) in statements.iter().enumerate() {
        let deny = statement.get("Effect").and_then(Value::as_str) == Some("Deny");
        match request.applies(statement) {
            Ok(()) if deny => return Verdict::Denied { statement: index },
            Ok(()) => {
                allowed.get_or_insert(index);
            }
            Err(why) if !deny => reasons.push(format!("statement {index}: {why}")),
            Err(_) => {}
        }
    }
    match allowed {
        Some(statement) => Verdict::Allowed { statement },
        None if reasons.is_empty() => Verdict::NotAllowed {
            reasons: vec!["the trust policy has no Allow statement".into()],
        },
        None => Verdict::NotAllowed { reasons },
    }
}

/// IAM's `*`/`?` matching of a trust policy's value (at most 4,096 bytes, IAM's largest
/// trust quota) against a request's: always within one judgement's bound.
fn like(pattern: &str, value: &str, case_insensitive: bool) -> bool {
    glob::matches(pattern, value, case_insensitive, &Effort::for_judgement()).unwrap_or(false)
}

struct Request<'a> {
    provider_arn: &'a str,
    host_path: &'a str,
    claims: &'a Claims,
}

impl Request<'_> {
    /// Whether the statement's action, principal and conditions all cover this request;
    /// the first that does not, in words.
    fn applies(&self, statement: &Value) -> Result<(), String> {
        if statement.get("NotAction").is_some() || statement.get("NotPrincipal").is_some() {
            return Err("NotAction and NotPrincipal are not judged here".into());
        }
        let actions = strings(statement.get("Action"));
        if !actions
            .iter()
            .any(|a| like(a, ASSUME_ROLE_WITH_WEB_IDENTITY, true))
        {
            return Err(format!(
                "its Action {actions:?} does not include {ASSUME_ROLE_WITH_WEB_IDENTITY}"
            ));
        }
        let principal = statement.get("Principal");
        let federated = match principal {
            Some(Value::String(all)) if all == "*" => vec!["*".to_string()],
            Some(p) => strings(p.get("Federated")),
            None => Vec::new(),
        };
        if !federated.iter().any(|f| f == "*" || f == self.provider_arn) {
            return Err(format!(
                "its federated principal {federated:?} is not the provider {}",
                self.provider_arn
            ));
        }
        let Some(conditions) = statement.get("Condition") else {
            return Ok(());
        };
        let Some(conditions) = conditions.as_object() else {
            return Err("its Condition is not an object".into());
        };
        for (operator, keys) in conditions {
            let Some(keys) = keys.as_object() else {
                return Err(format!("its {operator} condition is not an object"));
            };
            for (key, wanted) in keys {
                self.condition_holds(operator, key, &strings(Some(wanted)))?;
            }
        }
        Ok(())
    }

    /// The values the request carries for a condition key (`None`: the key is absent).
    fn context(&self, key: &str) -> Option<Vec<&str>> {
        let (prefix, claim) = key.rsplit_once(':')?;
        if !prefix.eq_ignore_ascii_case(self.host_path) {
            return None;
        }
        match claim.to_ascii_lowercase().as_str() {
            "sub" => Some(vec![self.claims.subject.as_str()]),
            "aud" => Some(self.claims.audiences.iter().map(String::as_str).collect()),
            _ => None,
        }
    }

    fn condition_holds(&self, operator: &str, key: &str, wanted: &[String]) -> Result<(), String> {
        let (set, rest) = match operator.split_once(':') {
            Some((set, rest)) => (Some(set), rest),
            None => (None, operator),
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(base) => (base, true),
            None => (rest, false),
        };
        let (negated, test): (bool, fn(&str, &str) -> bool) = match base {
            "StringEquals" => (false, |w, v| w == v),
            "StringNotEquals" => (true, |w, v| w == v),
            "StringEqualsIgnoreCase" => (false, |w, v| w.eq_ignore_ascii_case(v)),
            "StringNotEqualsIgnoreCase" => (true, |w, v| w.eq_ignore_ascii_case(v)),
            "StringLike" => (false, |w, v| like(w, v, false)),
            "StringNotLike" => (true, |w, v| like(w, v, false)),
            _ => {
                return Err(format!(
                    "its condition operator {operator} is not judged here"
                ));
            }
        };
        let Some(values) = self.context(key) else {
            // IAM: an absent key satisfies IfExists and the negated operators only.
            return if if_exists || negated {
                Ok(())
            } else {
                Err(format!(
                    "its condition key {key} is not one the token gives (its issuer's \
                     {}:sub and :aud)",
                    self.host_path
                ))
            };
        };
        let matches_any = |value: &str| wanted.iter().any(|w| test(w, value));
        let holds = match set {
            Some(set) if set.eq_ignore_ascii_case("ForAllValues") => {
                values.iter().all(|v| matches_any(v) != negated)
            }
            Some(set) if set.eq_ignore_ascii_case("ForAnyValue") => {
                values.iter().any(|v| matches_any(v) != negated)
            }
            Some(_) => {
                return Err(format!(
                    "its condition operator {operator} is not judged here"
                ));
            }
            // A single-valued operator over a multi-valued key: IAM compares each value,
            // and the positive forms need one to match, the negated forms none.
            None if negated => !values.iter().any(|v| matches_any(v)),
            None => values.iter().any(|v| matches_any(v)),
        };
        if holds {
            Ok(())
        } else {
            Err(format!(
                "{operator} {key} wants {wanted:?}; the token has {values:?}"
            ))
        }
    }
}

/// A policy element that is one string or a list of them.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::{service_account_subject, trust_policy};
    use proptest::prelude::*;
    use serde_json::json;

    const PROVIDER: &str = "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/ABC";

    fn claims(subject: &str, audience: &str) -> Claims {
        Claims {
            issuer: "https://oidc.example.com/id/ABC".into(),
            subject: subject.into(),
            audiences: vec![audience.into()],
        }
    }

    fn ours(namespace: &str, name: &str) -> Value {
        let doc = trust_policy(&[PROVIDER.into()], namespace, name, "sts.amazonaws.com");
        serde_json::from_str(&doc.minified()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_operators_trust_policy_lets_in_its_service_account_and_no_other() {
        let policy = ours("shop", "orders");
        let good = claims("system:serviceaccount:shop:orders", "sts.amazonaws.com");
        assert_eq!(
            evaluate(&policy, PROVIDER, &good),
            Verdict::Allowed { statement: 0 }
        );
        for (why, bad, provider) in [
            (
                "another namespace",
                claims("system:serviceaccount:blog:orders", "sts.amazonaws.com"),
                PROVIDER,
            ),
            (
                "another audience",
                claims("system:serviceaccount:shop:orders", "vault"),
                PROVIDER,
            ),
            (
                "another provider",
                good.clone(),
                "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/XYZ",
            ),
        ] {
            let verdict = evaluate(&policy, provider, &bad);
            let Verdict::NotAllowed { reasons } = &verdict else {
                panic!("{why}: {verdict:?}")
            };
            assert_eq!(reasons.len(), 1, "{why}: {reasons:?}");
        }
        let Verdict::NotAllowed { reasons } = evaluate(
            &policy,
            PROVIDER,
            &claims("system:serviceaccount:blog:orders", "sts.amazonaws.com"),
        ) else {
            panic!("refused")
        };
        assert!(
            reasons[0].contains("system:serviceaccount:shop:orders")
                && reasons[0].contains("system:serviceaccount:blog:orders"),
            "the reason shows wanted and got: {reasons:?}"
        );
    }

    #[test]
    fn string_like_deny_and_if_exists_follow_iam() {
        let host = "oidc.example.com/id/ABC";
        let policy = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"Federated": [PROVIDER]},
             "Action": ["sts:AssumeRoleWith*"],
             "Condition": {"StringLike": {format!("{host}:sub"): "system:serviceaccount:shop:*"},
                           "StringEqualsIfExists": {format!("{host}:amr"): "x"}}},
            {"Effect": "Deny", "Principal": "*", "Action": "sts:*",
             "Condition": {"StringEquals": {format!("{host}:sub"): "system:serviceaccount:shop:intruder"}}},
        ]});
        let verdict =
            |subject: &str| evaluate(&policy, PROVIDER, &claims(subject, "sts.amazonaws.com"));
        assert!(verdict("system:serviceaccount:shop:orders").is_allowed());
        assert_eq!(
            verdict("system:serviceaccount:shop:intruder"),
            Verdict::Denied { statement: 1 }
        );
        assert!(!verdict("system:serviceaccount:blog:orders").is_allowed());
        // Condition keys are case-insensitive; a key the token does not give never holds.
        let upper = json!({"Statement": {"Effect": "Allow",
            "Principal": {"Federated": PROVIDER}, "Action": "STS:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"OIDC.EXAMPLE.COM/id/ABC:SUB": "system:serviceaccount:shop:orders"}}}});
        assert!(
            evaluate(
                &upper,
                PROVIDER,
                &claims("system:serviceaccount:shop:orders", "a")
            )
            .is_allowed()
        );
        let unknown = json!({"Statement": {"Effect": "Allow",
            "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"oidc.other.example.com:sub": "system:serviceaccount:shop:orders"}}}});
        assert!(
            !evaluate(
                &unknown,
                PROVIDER,
                &claims("system:serviceaccount:shop:orders", "a")
            )
            .is_allowed()
        );
    }

    #[test]
    fn audiences_are_many_valued() {
        let host = "oidc.example.com/id/ABC";
        let policy = |operator: &str| {
            json!({"Statement": {"Effect": "Allow", "Principal": {"Federated": PROVIDER},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {operator: {format!("{host}:aud"): "sts.amazonaws.com"}}}})
        };
        let two = Claims {
            audiences: vec!["sts.amazonaws.com".into(), "vault".into()],
            ..claims("system:serviceaccount:shop:orders", "")
        };
        assert!(evaluate(&policy("StringEquals"), PROVIDER, &two).is_allowed());
        assert!(evaluate(&policy("ForAnyValue:StringEquals"), PROVIDER, &two).is_allowed());
        assert!(!evaluate(&policy("ForAllValues:StringEquals"), PROVIDER, &two).is_allowed());
        assert!(!evaluate(&policy("StringNotEquals"), PROVIDER, &two).is_allowed());
    }

    #[test]
    fn a_token_reads_its_claims_and_key_id_and_garbage_is_refused() {
        use base64::Engine;
        let encode = |v: Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let jwt = format!(
            "{}.{}.sig",
            encode(json!({"alg": "RS256", "kid": "k1"})),
            encode(json!({"iss": "https://oidc.example.com/id/ABC",
                "sub": "system:serviceaccount:shop:orders", "aud": "sts.amazonaws.com",
                "exp": 1700000000}))
        );
        let facts = read_token(&jwt).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            facts.claims,
            claims("system:serviceaccount:shop:orders", "sts.amazonaws.com")
        );
        assert_eq!(facts.key_id.as_deref(), Some("k1"));
        assert_eq!(facts.expires_at, Some(1_700_000_000));
        for bad in ["", "abc", "a.b.c", &format!("{}.e30.x", encode(json!({})))] {
            assert!(read_token(bad).is_err(), "{bad:?} read as a token");
        }
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9-]{0,12}"
    }

    proptest! {
        /// The trust policy the operator writes lets in exactly its own ServiceAccount
        /// with its audience: never another subject, in any namespace.
        #[test]
        fn a_built_trust_policy_admits_exactly_its_subject(
            namespace in name(), account in name(), other_namespace in name(), other_account in name(),
        ) {
            let policy = ours(&namespace, &account);
            let own = claims(&service_account_subject(&namespace, &account), "sts.amazonaws.com");
            prop_assert!(evaluate(&policy, PROVIDER, &own).is_allowed());
            let other = claims(&service_account_subject(&other_namespace, &other_account), "sts.amazonaws.com");
            prop_assert_eq!(
                evaluate(&policy, PROVIDER, &other).is_allowed(),
                (namespace, account) == (other_namespace, other_account)
            );
        }

        /// StringLike is IAM's glob: `*` any run, `?` one character, nothing else special.
        #[test]
        fn string_like_agrees_with_a_regex(pattern in "[a-c*?:]{0,8}", text in "[a-c:]{0,8}") {
            let regex = format!(
                "^{}$",
                pattern.chars().map(|c| match c {
                    '*' => ".*".to_string(),
                    '?' => ".".to_string(),
                    c => regex::escape(&c.to_string()),
                }).collect::<String>()
            );
            let expected = regex::Regex::new(&regex).map(|r| r.is_match(&text)).unwrap_or(false);
            let policy = json!({"Statement": {"Effect": "Allow", "Principal": {"Federated": PROVIDER},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringLike": {"oidc.example.com/id/ABC:sub": pattern}}}});
            prop_assert_eq!(evaluate(&policy, PROVIDER, &claims(&text, "a")).is_allowed(), expected);
        }
    }
}
