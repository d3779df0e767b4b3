//! The role lookup for a pod whose ServiceAccount carries no role and is covered by a
//! PodIdentityBinding, at growing numbers of cached bindings; prints nanoseconds per
//! lookup, asserts nothing. The cost should not grow with the number of bindings.
//!
//! `cargo bench -p podidentity-webhook --bench lookup_scaling`

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::core::{DeserializeGuard, ObjectMeta, PartialObjectMeta};
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use podidentity_api::config::{AwsConfig, OperatorConfig};
use podidentity_api::{PodIdentityBinding, PodIdentityBindingSpec};
use podidentity_webhook::binding_cache::BindingCache;
use podidentity_webhook::identity::Predictor;
use podidentity_webhook::lookup::{CachedLookup, IdentityLookup};

const NAMESPACES: usize = 500;
const LOOKUPS: usize = 200_000;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!("bindings   ns/lookup (binding-covered ServiceAccount, {LOOKUPS} lookups)");
        for bindings in [1_000, 10_000, 50_000] {
            let ns = per_lookup(bindings).await;
            println!("{bindings:>8}   {ns:>9.0}");
        }
    });
}

async fn per_lookup(bindings: usize) -> f64 {
    let (sa_store, mut sa_writer) = reflector::store::<PartialObjectMeta<ServiceAccount>>();
    sa_writer.apply_watcher_event(&Event::Init);
    let cache = Arc::new(BindingCache::new());
    cache.apply(Event::Init);
    for i in 0..bindings {
        let namespace = format!("team-{}", i % NAMESPACES);
        let account = format!("app-{i}");
        sa_writer.apply_watcher_event(&Event::InitApply(PartialObjectMeta {
            metadata: ObjectMeta {
                name: Some(account.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            ..PartialObjectMeta::default()
        }));
        let mut binding = PodIdentityBinding::new(
            &account,
            PodIdentityBindingSpec {
                service_account_name: account.clone(),
                ..PodIdentityBindingSpec::default()
            },
        );
        binding.metadata.namespace = Some(namespace);
        cache.apply(Event::InitApply(DeserializeGuard(Ok(binding))));
    }
    sa_writer.apply_watcher_event(&Event::InitDone);
    cache.apply(Event::InitDone);
    let operator = OperatorConfig {
        cluster_name: "prod".into(),
        aws: AwsConfig {
            account_id: Some("111122223333".into()),
            ..AwsConfig::default()
        },
        ..OperatorConfig::default()
    };
    let lookup = CachedLookup::new(
        sa_store,
        cache,
        None,
        Duration::from_secs(1),
        Predictor::new(operator, "eks.amazonaws.com"),
    );
    // The same 1,000 ServiceAccounts at every size: their predictions are worked out once
    // (warm-up), so what is timed is finding them.
    let probes: Vec<(String, String)> = (0..1_000)
        .map(|i| (format!("team-{}", i % NAMESPACES), format!("app-{i}")))
        .collect();
    for (namespace, account) in &probes {
        let _ = lookup.annotations(namespace, account).await;
    }
    let started = Instant::now();
    let mut found = 0usize;
    for i in 0..LOOKUPS {
        let (namespace, account) = &probes[i % probes.len()];
        if let Ok(Some(annotations)) = lookup.annotations(namespace, account).await {
            found += annotations.len();
        }
    }
    let elapsed = started.elapsed();
    std::hint::black_box(found);
    drop(sa_writer);
    elapsed.as_nanos() as f64 / LOOKUPS as f64
}
