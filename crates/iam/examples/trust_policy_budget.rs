//! Prints how much of the trust policy quota a binding uses as OIDC providers are added:
//! `cargo run -q -p podidentity-iam --example trust_policy_budget`.

use podidentity_iam::trust::trust_policy;

fn main() {
    let account = "111122223333";
    let issuers = [
        "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
        "oidc.eks.eu-central-1.amazonaws.com/id/EXAMPLEGREEN000000000000000000000",
        "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLEDR00000000000000000000000",
        "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLEB1UE0000000000000000000000",
        "oidc.eks.eu-central-1.amazonaws.com/id/EXAMPLEB1UE0000000000000000000000",
    ];
    let providers: Vec<String> = issuers
        .iter()
        .map(|issuer| format!("arn:aws:iam::{account}:oidc-provider/{issuer}"))
        .collect();
    println!(
        "binding shop/orders (ServiceAccount orders, audience sts.amazonaws.com), EKS issuers"
    );
    println!(
        "{:>9} {:>7} {:>7} {:>10}",
        "providers", "bytes", "added", "of 2048"
    );
    let mut previous = 0;
    for count in 1..=providers.len() {
        let bytes = trust_policy(&providers[..count], "shop", "orders", "sts.amazonaws.com")
            .minified_bytes();
        let added = if count == 1 {
            String::from("-")
        } else {
            (bytes - previous).to_string()
        };
        println!(
            "{count:>9} {bytes:>7} {added:>7} {:>9.0}%",
            bytes as f64 * 100.0 / 2048.0
        );
        previous = bytes;
    }
}
