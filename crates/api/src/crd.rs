//! The CustomResourceDefinitions as shipped (PodIdentityBinding, PodIdentityPolicy): kube's
//! generated CRDs, cleaned of what makes GitOps tools see endless drift or API servers
//! complain, and stamped with a schema revision the controller can check at start-up.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

use crate::annotations::CRD_SCHEMA_REVISION;
use crate::binding::PodIdentityBinding;
use crate::policy::PodIdentityPolicy;

/// Bump whenever either schema changes; a controller refuses CRDs with another revision.
/// `tests::schema_revision_tracks_the_schema` fails when a schema changes without it.
pub const SCHEMA_REVISION: u32 = 10;

/// Every CRD the operator ships, exactly as `podidentity crd` prints them and `crds/`
/// holds them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![binding_crd(), policy_crd()]
}

/// The PodIdentityBinding CRD.
pub fn binding_crd() -> CustomResourceDefinition {
    shipped(PodIdentityBinding::crd())
}

/// The PodIdentityPolicy CRD.
pub fn policy_crd() -> CustomResourceDefinition {
    shipped(PodIdentityPolicy::crd())
}

fn shipped(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    crd.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(CRD_SCHEMA_REVISION.into(), SCHEMA_REVISION.to_string());
    if crd
        .spec
        .names
        .categories
        .as_ref()
        .is_some_and(Vec::is_empty)
    {
        crd.spec.names.categories = None;
    }
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|validation| validation.open_api_v3_schema.as_mut())
        {
            let mut value = serde_json::to_value(&*schema).unwrap_or(Value::Null);
            clean_schema(&mut value);
            if let Ok(cleaned) = serde_json::from_value(value) {
                *schema = cleaned;
            }
        }
    }
    crd
}

/// Removes, at every depth:
/// - `format: uint*` (Kubernetes knows no unsigned formats and warns on them);
/// - `additionalProperties: false` (from `deny_unknown_fields`; structural schemas forbid
///   it beside `properties`, and the API server prunes unknown fields anyway).
pub fn clean_schema(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|format| format.starts_with("uint"))
            {
                map.remove("format");
            }
            if map.get("additionalProperties") == Some(&Value::Bool(false)) {
                map.remove("additionalProperties");
            }
            // schemars writes integer bounds as floats (86400.0); keep them integers.
            for bound in ["minimum", "maximum"] {
                if let Some(Value::Number(n)) = map.get(bound)
                    && let Some(f) = n.as_f64()
                    && f.fract() == 0.0
                    && n.as_i64().is_none()
                {
                    map.insert(bound.into(), Value::from(f as i64));
                }
            }
            map.values_mut().for_each(clean_schema);
        }
        Value::Array(items) => items.iter_mut().for_each(clean_schema),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of(crd: &CustomResourceDefinition) -> Value {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .map(serde_json::to_value);
        match schema {
            Some(Ok(value)) => value,
            other => panic!("CRD has no schema: {other:?}"),
        }
    }

    fn walk<'a>(value: &'a Value, found: &mut Vec<&'a Value>) {
        found.push(value);
        match value {
            Value::Object(map) => map.values().for_each(|v| walk(v, found)),
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }

    #[test]
    fn cleaning_strips_unsigned_formats_and_closed_objects_at_any_depth() {
        let mut value = serde_json::json!({
            "type": "object", "additionalProperties": false,
            "properties": {"n": {"type": "integer", "format": "uint32", "maximum": 86400.0},
                           "m": {"type": "integer", "format": "int64"},
                           "o": {"type": "object", "additionalProperties": {"type": "string"}}}
        });
        clean_schema(&mut value);
        assert_eq!(
            value,
            serde_json::json!({
                "type": "object",
                "properties": {"n": {"type": "integer", "maximum": 86400},
                               "m": {"type": "integer", "format": "int64"},
                               "o": {"type": "object", "additionalProperties": {"type": "string"}}}
            })
        );
    }

    #[test]
    fn generated_crds_have_no_drift_traps() {
        let short_names: Vec<_> = crds()
            .iter()
            .map(|crd| crd.spec.names.short_names.clone())
            .collect();
        assert_eq!(
            short_names,
            [Some(vec!["pib".to_string()]), Some(vec!["pip".to_string()])]
        );
        for crd in crds() {
            assert_eq!(crd.spec.names.categories, None);
            let revision = crd.metadata.annotations.clone().unwrap_or_default();
            assert_eq!(
                revision.get(CRD_SCHEMA_REVISION),
                Some(&SCHEMA_REVISION.to_string())
            );
            let schema = schema_of(&crd);
            let mut nodes = Vec::new();
            walk(&schema, &mut nodes);
            for node in nodes {
                if let Some(format) = node.get("format").and_then(Value::as_str) {
                    assert!(!format.starts_with("uint"), "unsigned format left: {node}");
                }
                assert_ne!(node.get("additionalProperties"), Some(&Value::Bool(false)));
            }
        }
    }

    #[test]
    fn conditions_are_a_list_map_keyed_by_type() {
        for crd in crds() {
            let conditions = &schema_of(&crd)["properties"]["status"]["properties"]["conditions"];
            assert_eq!(conditions["x-kubernetes-list-type"], "map");
            assert_eq!(
                conditions["x-kubernetes-list-map-keys"],
                serde_json::json!(["type"])
            );
        }
    }

    #[test]
    fn the_policy_is_cluster_scoped() {
        assert_eq!(policy_crd().spec.scope, "Cluster");
        assert_eq!(binding_crd().spec.scope, "Namespaced");
    }

    #[test]
    fn every_spec_field_has_a_description() {
        fn check(path: &str, node: &Value, missing: &mut Vec<String>) {
            if let Some(props) = node.get("properties").and_then(Value::as_object) {
                for (name, child) in props {
                    let child_path = format!("{path}.{name}");
                    if child.get("description").is_none() {
                        missing.push(child_path.clone());
                    }
                    check(&child_path, child, missing);
                    if let Some(items) = child.get("items") {
                        check(&format!("{child_path}[]"), items, missing);
                    }
                }
            }
        }
        let mut missing = Vec::new();
        for crd in crds() {
            let kind = &crd.spec.names.kind;
            check(
                &format!("{kind}.spec"),
                &schema_of(&crd)["properties"]["spec"],
                &mut missing,
            );
        }
        assert_eq!(
            missing,
            Vec::<String>::new(),
            "fields without a description"
        );
    }

    #[test]
    fn printer_columns_read_the_ready_condition() {
        let crd = binding_crd();
        let columns = crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap_or_default();
        let names: Vec<_> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["Service Account", "Role ARN", "Ready", "Reason", "Age"]
        );
        assert_eq!(
            columns[2].json_path,
            r#".status.conditions[?(@.type=="Ready")].status"#
        );
        let policy_columns = policy_crd().spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap_or_default();
        let names: Vec<_> = policy_columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Namespaces", "Governed", "Refused", "Ready", "Age"]);
    }

    /// The schema's fingerprint at the current revision. When this fails, the schema
    /// changed: bump SCHEMA_REVISION and record the new pair here. Descriptions are left
    /// out: they change nothing the API server stores or refuses.
    #[test]
    fn schema_revision_tracks_the_schema() {
        fn without_descriptions(value: &mut serde_json::Value) {
            match value {
                serde_json::Value::Object(map) => {
                    // A string: a schema's description (a property named `description`,
                    // as the role's, is an object and stays).
                    if map
                        .get("description")
                        .is_some_and(serde_json::Value::is_string)
                    {
                        map.remove("description");
                    }
                    map.values_mut().for_each(without_descriptions);
                }
                serde_json::Value::Array(items) => items.iter_mut().for_each(without_descriptions),
                _ => {}
            }
        }
        let mut schemas = Value::Array(crds().iter().map(schema_of).collect());
        without_descriptions(&mut schemas);
        let fingerprint = fnv1a(schemas.to_string().as_bytes());
        let recorded: (u32, u64) = (SCHEMA_REVISION, RECORDED_FINGERPRINT);
        assert_eq!(
            (SCHEMA_REVISION, fingerprint),
            recorded,
            "the CRD schema changed: bump SCHEMA_REVISION and set RECORDED_FINGERPRINT to {fingerprint}"
        );
    }

    const RECORDED_FINGERPRINT: u64 = 939728938790099094;

    fn fnv1a(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        })
    }
}
