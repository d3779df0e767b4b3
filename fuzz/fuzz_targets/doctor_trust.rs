//! doctor's reading of a token and its judging of a trust policy, on any input: no panic;
//! and the trust policy the operator writes admits exactly its own ServiceAccount's
//! token, whatever the names.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use podidentity_iam::assume::{Claims, evaluate, read_token};
use podidentity_iam::trust::trust_policy_for;

const PROVIDER: &str =
    "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE";
const ISSUER: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE";

#[derive(Arbitrary, Debug)]
struct Input {
    token: String,
    trust_policy: String,
    namespace: String,
    service_account: String,
    audience: String,
}

fuzz_target!(|input: Input| {
    let trust: serde_json::Value =
        serde_json::from_str(&input.trust_policy).unwrap_or(serde_json::Value::Null);
    if let Ok(facts) = read_token(&input.token) {
        let verdict = evaluate(&trust, PROVIDER, &facts.claims);
        assert_eq!(verdict, evaluate(&trust, PROVIDER, &facts.claims));
    }
    // The operator's own trust policy: its subject admitted, another refused.
    let name = |text: &str| -> String {
        text.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(63)
            .collect()
    };
    let (ns, sa) = (name(&input.namespace), name(&input.service_account));
    if ns.is_empty() || sa.is_empty() || input.audience.is_empty() {
        return;
    }
    let ours = trust_policy_for(
        &[PROVIDER.to_string()],
        &ns,
        std::slice::from_ref(&sa),
        &input.audience,
    )
    .to_value();
    let claims = |subject: String| Claims {
        issuer: ISSUER.into(),
        subject,
        audiences: vec![input.audience.clone()],
    };
    let own = claims(format!("system:serviceaccount:{ns}:{sa}"));
    assert!(evaluate(&ours, PROVIDER, &own).is_allowed(), "{ours}");
    let other = claims(format!("system:serviceaccount:{ns}:{sa}x"));
    assert!(!evaluate(&ours, PROVIDER, &other).is_allowed(), "{ours}");
});
