//! The pieces of the running controller that need no watch: which bindings a
//! ServiceAccount change wakes, and how start-up fills in the account and the issuer.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::DeserializeGuard;
use podidentity_api::config::OperatorConfig;
use podidentity_api::{PodIdentityBinding, PodIdentityBindingSpec};
use podidentity_aws::api::{IamApi, IamRequest, IamResponse};
use podidentity_aws::error::{AwsError, ErrorKind};
use podidentity_controller::caches::Watched;
use podidentity_controller::process::startup::complete_config;
use podidentity_controller::process::watches::owner_to_wake;

fn binding(namespace: &str, name: &str, service_account: &str, created: i64) -> Arc<Watched> {
    let mut b = PodIdentityBinding::new(
        name,
        PodIdentityBindingSpec {
            service_account_name: service_account.into(),
            ..Default::default()
        },
    );
    b.metadata.namespace = Some(namespace.into());
    b.metadata.creation_timestamp = k8s_openapi::jiff::Timestamp::from_second(created)
        .ok()
        .map(Time);
    Arc::new(DeserializeGuard(Ok(b)))
}

#[test]
fn a_service_account_wakes_only_the_readable_binding_that_owns_it() {
    let bindings = vec![
        binding("shop", "a", "orders", 20),
        binding("shop", "b", "billing", 1),
        binding("other", "c", "orders", 1),
        binding("shop", "d", "orders", 10),
    ];
    let mut unreadable = (*binding("shop", "aa", "orders", 0)).clone();
    unreadable.0 = Err(kube::core::error_boundary::InvalidObject {
        error: "unknown variant".into(),
        metadata: kube::core::ObjectMeta::default(),
    });
    let bindings = [bindings, vec![Arc::new(unreadable)]].concat();
    let woken = owner_to_wake(&bindings, "shop", "orders").map(|r| r.name);
    assert_eq!(
        woken.as_deref(),
        Some("d"),
        "the oldest of its namespace naming it"
    );
    assert_eq!(owner_to_wake(&bindings, "shop", "payments"), None);
}

struct Sts;

impl IamApi for Sts {
    fn call(&self, request: IamRequest) -> BoxFuture<'_, Result<IamResponse, AwsError>> {
        Box::pin(async move {
            match request {
                IamRequest::GetCallerIdentity => Ok(IamResponse::Account("444455556666".into())),
                other => Err(AwsError::new(
                    ErrorKind::Other,
                    other.operation(),
                    "only STS here",
                )),
            }
        })
    }
}

/// An API server that only serves its OIDC discovery document.
fn discovery_server(issuer: &'static str) -> kube::Client {
    let service = tower::service_fn(
        move |request: http::Request<kube::client::Body>| async move {
            let body = if request.uri().path() == "/.well-known/openid-configuration" {
                serde_json::json!({"issuer": issuer, "jwks_uri": format!("{issuer}/openid/v1/jwks")}).to_string()
            } else {
                String::from("{}")
            };
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
                    .unwrap_or_default(),
            )
        },
    );
    kube::Client::new(service, "default")
}

#[tokio::test]
async fn start_up_learns_the_account_from_sts_and_the_issuer_from_the_api_server() {
    let client = discovery_server("https://oidc.eks.eu-west-1.amazonaws.com/id/ABC");
    let config = OperatorConfig {
        cluster_name: "prod".into(),
        ..OperatorConfig::default()
    };
    let completed = complete_config(config, &client, &Sts)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(completed.aws.account_id.as_deref(), Some("444455556666"));
    assert_eq!(
        completed.oidc.issuer_url.as_deref(),
        Some("https://oidc.eks.eu-west-1.amazonaws.com/id/ABC")
    );
    assert_eq!(
        completed.provider_arn(),
        "arn:aws:iam::444455556666:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC"
    );
}

#[tokio::test]
async fn configured_values_are_not_looked_up() {
    let client = discovery_server("https://wrong.example.com");
    let mut config = OperatorConfig {
        cluster_name: "prod".into(),
        ..OperatorConfig::default()
    };
    config.aws.account_id = Some("111122223333".into());
    config.oidc.issuer_url = Some("https://oidc.example.com/id/MINE".into());
    let completed = complete_config(config.clone(), &client, &Sts)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(completed, config);
}
