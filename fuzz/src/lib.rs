//! What the fuzz targets share: an oracle for IAM's wildcard matching written plainly
//! (independent of `podidentity_iam::glob`), and the operator configuration they judge by.

use podidentity_api::config::{AwsConfig, OperatorConfig};

/// IAM's `*` (any run) and `?` (one character) matching, the plain way: `fits[k]` says
/// the pattern read so far matches the text's first `k` characters. Quadratic, never
/// exponential, and sharing no code with the engine it checks.
pub fn plain_match(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let fold = |s: &str| -> Vec<char> {
        if case_insensitive {
            s.to_ascii_lowercase().chars().collect()
        } else {
            s.chars().collect()
        }
    };
    let (pattern, text) = (fold(pattern), fold(text));
    let mut fits = vec![false; text.len() + 1];
    fits[0] = true;
    for p in &pattern {
        let mut next = vec![false; text.len() + 1];
        for k in 0..=text.len() {
            next[k] = match p {
                '*' => fits[k] || (k > 0 && next[k - 1]),
                '?' => k > 0 && fits[k - 1],
                c => k > 0 && fits[k - 1] && text[k - 1] == *c,
            };
        }
        fits = next;
    }
    fits[text.len()]
}

/// IAM's matching of an ARN pattern: as [`plain_match`], but a wildcard within the
/// partition, service, region or account field (before the fifth `:`) matches no `:`,
/// unless it is the `*` that ends the pattern. Other patterns match plainly.
pub fn iam_arn_match(pattern: &str, text: &str) -> bool {
    if !pattern.starts_with("arn:") {
        return plain_match(pattern, text, false);
    }
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let mut fits = vec![false; t.len() + 1];
    fits[0] = true;
    let mut colons = 0;
    for (i, c) in p.iter().enumerate() {
        let confined = colons < 5 && !(*c == '*' && i + 1 == p.len());
        let mut next = vec![false; t.len() + 1];
        for k in 0..=t.len() {
            let takes = |k: usize| k > 0 && !(confined && t[k - 1] == ':');
            next[k] = match c {
                '*' => fits[k] || (takes(k) && next[k - 1]),
                '?' => takes(k) && fits[k - 1],
                c => k > 0 && fits[k - 1] && t[k - 1] == *c,
            };
        }
        if *c == ':' {
            colons += 1;
        }
        fits = next;
    }
    fits[t.len()]
}

/// Texts a pattern surely matches: each `*` empty or `x`, each `?` one character.
pub fn instances(pattern: &str) -> Vec<String> {
    ["", "x", "xx"]
        .iter()
        .map(|run| {
            pattern
                .chars()
                .map(|c| match c {
                    '*' => (*run).to_string(),
                    '?' => "x".to_string(),
                    c => c.to_string(),
                })
                .collect()
        })
        .collect()
}

/// The configuration of examples/config/operator.yaml, without a file.
pub fn operator_config() -> OperatorConfig {
    let mut config = OperatorConfig {
        cluster_name: "prod".into(),
        aws: AwsConfig {
            account_id: Some("111122223333".into()),
            region: Some("eu-west-1".into()),
            ..AwsConfig::default()
        },
        ..OperatorConfig::default()
    };
    config.oidc.issuer_url =
        Some("https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE".into());
    config.roles.permissions_boundary_arn =
        Some("arn:aws:iam::111122223333:policy/podidentity-boundary".into());
    config
}

/// Bytes as text, whatever they are (invalid UTF-8 replaced): the readers take text.
pub fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}
