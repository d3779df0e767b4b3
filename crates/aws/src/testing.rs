//! Shared by the tests and benchmarks that run against an IAM emulator (moto, started by
//! scripts/with-moto): where it is, and the settings that reach it.

use crate::sdk::AwsSettings;

/// The emulator's URL; `None` (with one line saying why) when none runs, which fails
/// instead when PODIDENTITY_TEST_REQUIRE_IAM is set (as scripts/test sets it).
pub fn emulator_endpoint() -> Option<String> {
    match std::env::var("PODIDENTITY_TEST_IAM_ENDPOINT") {
        Ok(endpoint) => Some(endpoint),
        Err(_) if std::env::var("PODIDENTITY_TEST_REQUIRE_IAM").is_ok() => {
            panic!("PODIDENTITY_TEST_REQUIRE_IAM is set but PODIDENTITY_TEST_IAM_ENDPOINT is not")
        }
        Err(_) => {
            eprintln!("skipped: no IAM emulator; run scripts/test, which starts moto");
            None
        }
    }
}

/// Settings for the emulator: fixed region and credentials, one attempt per call.
pub fn emulator_settings(endpoint: &str) -> AwsSettings {
    AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.into()),
        max_attempts: 1,
        call_timeout: None,
        static_credentials: Some(("testing".into(), "testing".into())),
        write_gate: None,
    }
}

/// A name no other test run uses: `prefix-<pid>-<nanoseconds>`.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// An S3 client of the emulator, buckets addressed by path (for setting up buckets and
/// reading what the operator wrote).
pub async fn emulator_s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let shared = crate::sdk::sdk_config(&emulator_settings(endpoint)).await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build(),
    )
}
