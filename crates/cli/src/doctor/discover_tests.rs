//! The issuer's documents read over real HTTPS from a host that negotiates content types
//! as kube-apiserver does (go-restful): a route answers only an `Accept` naming its own
//! type or `*/*`, else `406 Not Acceptable`. The discovery document is
//! `application/json`, the key set `application/jwk-set+json`.

use std::sync::{Arc, Mutex};

use podidentity_api::config::{ConnectTo, OperatorConfig};
use podidentity_controller::oidc::fetch::Fetcher;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::gather::discover;
use super::settings::{issuer_fetcher, issuer_routes};

const HOST: &str = "issuer.podidentity.test";

/// go-restful's `Route.matchesAccept`: any listed type (parameters dropped) equal to
/// the produced one, or `*/*`; no `Accept` at all is `*/*`.
fn accepts(accept: Option<&str>, produced: &str) -> bool {
    accept.is_none_or(|accept| {
        accept.split(',').any(|entry| {
            let kind = entry.split(';').next().unwrap_or_default().trim();
            kind == "*/*" || kind == produced
        })
    })
}

/// The API server's own issuer documents, as served at `https://HOST`; every `Accept`
/// asked with is kept.
struct ApiServerLike {
    port: u16,
    ca_pem: String,
    accepts_seen: Arc<Mutex<Vec<String>>>,
}

impl ApiServerLike {
    async fn start() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("CA");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec![HOST.to_string()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("certificate");
        #[allow(deprecated)] // ring: see Cargo.toml on rustls
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key"),
        )
        .expect("TLS");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let port = listener.local_addr().expect("address").port();
        let accepts_seen = Arc::new(Mutex::new(Vec::new()));
        let seen = accepts_seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let response = answer(&String::from_utf8_lossy(&request), &seen);
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            port,
            ca_pem: ca.pem(),
            accepts_seen,
        }
    }

    fn fetcher(&self) -> Fetcher {
        let route: ConnectTo = self.route().parse().expect("connect-to");
        Fetcher::new(Some(self.ca_pem.as_bytes()), vec![route]).expect("fetcher")
    }
}

/// One request's answer: the route's document, or 406 as go-restful gives it.
fn answer(request: &str, seen: &Mutex<Vec<String>>) -> String {
    let path = request.split(' ').nth(1).unwrap_or_default();
    let accept = request.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("accept").then(|| value.trim())
    });
    if let Ok(mut seen) = seen.lock() {
        seen.push(accept.unwrap_or_default().to_string());
    }
    let (produced, body) = match path {
        "/.well-known/openid-configuration" => (
            "application/json",
            format!(
                r#"{{"issuer":"https://{HOST}","jwks_uri":"https://{HOST}/openid/v1/jwks","response_types_supported":["id_token"]}}"#
            ),
        ),
        "/openid/v1/jwks" => (
            "application/jwk-set+json",
            r#"{"keys":[{"kid":"key-1","kty":"EC","crv":"P-256","x":"x","y":"y"}]}"#.to_string(),
        ),
        _ => return respond("404 Not Found", "text/plain", "404 page not found"),
    };
    if accepts(accept, produced) {
        respond("200 OK", produced, &body)
    } else {
        respond(
            "406 Not Acceptable",
            "text/plain",
            &format!("406: Not Acceptable\nAvailable representations: {produced}"),
        )
    }
}

fn respond(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn the_test_server_negotiates_as_go_restful() {
    assert!(accepts(None, "application/jwk-set+json"));
    assert!(accepts(Some("*/*"), "application/jwk-set+json"));
    assert!(!accepts(
        Some("application/json"),
        "application/jwk-set+json"
    ));
    assert!(accepts(
        Some("application/json;q=0.9, application/jwk-set+json"),
        "application/jwk-set+json"
    ));
}

#[tokio::test]
async fn the_api_servers_own_key_set_is_read_despite_its_content_type() {
    let server = ApiServerLike::start().await;
    let found = discover(&server.fetcher(), &format!("https://{HOST}"))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(found.issuer, format!("https://{HOST}"));
    assert_eq!(found.jwks_uri, format!("https://{HOST}/openid/v1/jwks"));
    assert_eq!(found.key_ids, vec!["key-1".to_string()]);
    let seen = server
        .accepts_seen
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    assert_eq!(seen.len(), 2, "{seen:?}");
    // Both documents asked for with the same header, which admits both types.
    assert!(
        seen.iter().all(|a| accepts(Some(a), "application/json")
            && accepts(Some(a), "application/jwk-set+json")),
        "{seen:?}"
    );
}

impl ApiServerLike {
    fn route(&self) -> String {
        format!("{HOST}:443:127.0.0.1:{}", self.port)
    }
}

/// The documents through a fetcher built as `doctor` builds it.
async fn read_with(fetcher: Result<Fetcher, String>) -> Result<Vec<String>, String> {
    discover(&fetcher?, &format!("https://{HOST}"))
        .await
        .map(|found| found.key_ids)
}

#[tokio::test]
async fn the_configurations_issuer_ca_and_connect_to_reach_the_issuer() {
    let server = ApiServerLike::start().await;
    let mut config = OperatorConfig::default();
    config.oidc.issuer_ca = Some(server.ca_pem.clone());
    config.oidc.connect_to = vec![server.route()];
    let fetcher = issuer_fetcher(None, &config, &[], issuer_routes(&[], &config));
    assert_eq!(read_with(fetcher).await, Ok(vec!["key-1".to_string()]));
}

#[tokio::test]
async fn the_flags_win_over_the_configuration() {
    let server = ApiServerLike::start().await;
    let mut config = OperatorConfig::default();
    // The configuration's route and CA lead nowhere; the flags' reach the host.
    config.oidc.connect_to = vec![format!("{HOST}:443:127.0.0.1:1")];
    config.oidc.issuer_ca = Some(ApiServerLike::start().await.ca_pem);
    let flag: ConnectTo = server.route().parse().expect("route");
    let fetcher = issuer_fetcher(
        Some(("ca.pem", server.ca_pem.as_bytes())),
        &config,
        &[],
        issuer_routes(&[flag], &config),
    );
    assert_eq!(read_with(fetcher).await, Ok(vec!["key-1".to_string()]));
}

#[tokio::test]
async fn the_clusters_own_ca_is_trusted_for_an_issuer_under_it() {
    let server = ApiServerLike::start().await;
    let config = OperatorConfig::default();
    let flag: ConnectTo = server.route().parse().expect("route");
    let without = issuer_fetcher(None, &config, &[], vec![flag.clone()]);
    let err = read_with(without).await.err().unwrap_or_default();
    assert!(err.contains("TLS"), "{err}");
    let with = issuer_fetcher(None, &config, server.ca_pem.as_bytes(), vec![flag]);
    assert_eq!(read_with(with).await, Ok(vec!["key-1".to_string()]));
}

#[test]
fn an_issuer_ca_without_a_certificate_names_where_it_came_from() {
    let mut config = OperatorConfig::default();
    let flag = issuer_fetcher(Some(("ca.pem", b"not a certificate")), &config, &[], vec![]);
    assert_eq!(
        flag.err(),
        Some("--issuer-ca ca.pem: holds no PEM certificate".to_string())
    );
    config.oidc.issuer_ca = Some("nothing here".into());
    let setting = issuer_fetcher(None, &config, &[], vec![]);
    assert_eq!(
        setting.err(),
        Some("oidc.issuerCa: holds no PEM certificate".to_string())
    );
}
