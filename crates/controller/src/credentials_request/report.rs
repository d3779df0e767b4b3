//! A CredentialsRequest's status as the Cloud Credential Operator writes it, so `oc get
//! credentialsrequests` and the cluster-version checks read ours the same way:
//! `provisioned`, `lastSyncGeneration` and `lastSyncTimestamp` on success, and its
//! condition types. A failure condition is added only when True; once there, it turns
//! False when the failure is gone (with CCO's success reason), as CCO does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podidentity_api::credentials_request::{
    CredentialsRequestCondition, CredentialsRequestStatus, Provisioned,
};

/// What a pass found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// Role and Secret in line: these.
    Provisioned(Provisioned),
    /// Not a request for AWS.
    Ignored,
    Failed(Failure, String),
}

/// CCO's failure condition types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Refused by the guardrails or unreadable, or IAM failed: `CredentialsProvisionFailure`.
    Provision,
    /// IAM said AccessDenied to the operator: `InsufficientCloudCreds`.
    InsufficientCreds,
    /// `secretRef.namespace` does not exist: `MissingTargetNamespace`.
    MissingNamespace,
}

struct ConditionType {
    type_: &'static str,
    failed_reason: &'static str,
    ok_reason: &'static str,
    ok_message: &'static str,
}

const fn condition_type(failure: Failure) -> ConditionType {
    match failure {
        Failure::Provision => ConditionType {
            type_: "CredentialsProvisionFailure",
            failed_reason: "CredentialsProvisionFailure",
            ok_reason: "CredentialsProvisionSuccess",
            ok_message: "successfully granted credentials request",
        },
        Failure::InsufficientCreds => ConditionType {
            type_: "InsufficientCloudCreds",
            failed_reason: "CloudCredsInsufficient",
            ok_reason: "CloudCredsSufficient",
            ok_message: "cloud credentials sufficient for minting or passthrough",
        },
        Failure::MissingNamespace => ConditionType {
            type_: "MissingTargetNamespace",
            failed_reason: "NamespaceMissing",
            ok_reason: "NamespaceExists",
            ok_message: "target namespace found",
        },
    }
}

const FAILURES: [Failure; 3] = [
    Failure::InsufficientCreds,
    Failure::MissingNamespace,
    Failure::Provision,
];
const IGNORED: &str = "Ignored";

/// Sets one condition: added only when True; a change of status moves its transition
/// time, any change its probe time.
fn set(
    conditions: &mut Vec<CredentialsRequestCondition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &Time,
) {
    let status = if status { "True" } else { "False" };
    let found = conditions.iter_mut().find(|c| c.type_ == type_);
    match found {
        Some(existing) => {
            let changed = existing.status != status;
            if changed
                || existing.reason.as_deref() != Some(reason)
                || existing.message.as_deref() != Some(message)
            {
                if changed {
                    existing.last_transition_time = Some(now.clone());
                }
                existing.status = status.into();
                existing.reason = Some(reason.into());
                existing.message = Some(message.into());
                existing.last_probe_time = Some(now.clone());
            }
        }
        None if status == "True" => conditions.push(CredentialsRequestCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_probe_time: Some(now.clone()),
            last_transition_time: Some(now.clone()),
        }),
        None => {}
    }
}

/// The status after a pass; equal to `previous` when nothing changed (then nothing is
/// written).
pub fn next_status(
    previous: Option<&CredentialsRequestStatus>,
    found: &Found,
    generation: i64,
    now: &Time,
) -> CredentialsRequestStatus {
    let mut status = previous.cloned().unwrap_or_default();
    for failure in FAILURES {
        let kind = condition_type(failure);
        match found {
            Found::Failed(failed, message) if *failed == failure => set(
                &mut status.conditions,
                kind.type_,
                true,
                kind.failed_reason,
                &format!("failed to grant creds: {message}"),
                now,
            ),
            _ => set(
                &mut status.conditions,
                kind.type_,
                false,
                kind.ok_reason,
                kind.ok_message,
                now,
            ),
        }
    }
    let ignored = *found == Found::Ignored;
    set(
        &mut status.conditions,
        IGNORED,
        ignored,
        if ignored {
            "InfrastructureMismatch"
        } else {
            "InfrastructureMatch"
        },
        if ignored {
            "CredentialsRequest is not for platform AWS"
        } else {
            "CredentialsRequest is for platform AWS"
        },
        now,
    );
    let provisioned = matches!(found, Found::Provisioned(_));
    if provisioned && (!status.provisioned || status.last_sync_generation != generation) {
        status.last_sync_generation = generation;
        status.last_sync_timestamp = Some(now.clone());
    }
    status.provisioned = provisioned;
    // What was made stays recorded through a failure: it is what cleanup removes.
    if let Found::Provisioned(objects) = found {
        status.provider_status = serde_json::to_value(objects).ok();
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap_or_default())
    }

    fn types(status: &CredentialsRequestStatus) -> Vec<(&str, &str)> {
        status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect()
    }

    fn provisioned() -> Found {
        Found::Provisioned(Provisioned {
            role_name: "r".into(),
            role_arn: "arn:aws:iam::111122223333:role/r".into(),
            secret_namespace: "ns".into(),
            secret_name: "s".into(),
        })
    }

    #[test]
    fn success_adds_no_condition_and_records_the_generation() {
        let status = next_status(None, &provisioned(), 3, &at(10));
        assert_eq!(
            status.provisioned_objects().map(|p| p.role_name),
            Some("r".to_string())
        );
        assert!(status.provisioned);
        assert_eq!(status.last_sync_generation, 3);
        assert_eq!(status.last_sync_timestamp, Some(at(10)));
        assert!(status.conditions.is_empty(), "{status:?}");
        // The same again: nothing to write.
        assert_eq!(
            next_status(Some(&status), &provisioned(), 3, &at(20)),
            status
        );
    }

    #[test]
    fn a_failure_is_true_then_false_with_ccos_success_reason() {
        let failed = next_status(
            None,
            &Found::Failed(Failure::Provision, "refused".into()),
            1,
            &at(10),
        );
        assert!(!failed.provisioned);
        assert_eq!(
            types(&failed),
            vec![("CredentialsProvisionFailure", "True")]
        );
        assert_eq!(
            failed.conditions[0].message.as_deref(),
            Some("failed to grant creds: refused")
        );
        let fixed = next_status(Some(&failed), &provisioned(), 2, &at(20));
        assert!(fixed.provisioned);
        assert_eq!(
            types(&fixed),
            vec![("CredentialsProvisionFailure", "False")]
        );
        assert_eq!(
            fixed.conditions[0].reason.as_deref(),
            Some("CredentialsProvisionSuccess")
        );
        assert_eq!(fixed.conditions[0].last_transition_time, Some(at(20)));
    }

    #[test]
    fn another_clouds_request_is_ignored() {
        let status = next_status(None, &Found::Ignored, 1, &at(10));
        assert_eq!(types(&status), vec![("Ignored", "True")]);
        assert!(!status.provisioned);
    }
}
