//! Managed policies judged by what they grant before a role gets them: each ARN's default
//! version is asked of IAM (GetPolicy, one read per ARN per judgement) and its document
//! read once per version (GetPolicyVersion, cached by version id: AWS's own policies
//! change a few times a year, and a new default version is read anew).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use podidentity_aws::api::{Iam, IamApi};
use podidentity_aws::error::{AwsError, ErrorKind};
use podidentity_iam::managed::ManagedPolicy;
use podidentity_iam::{RuleSet, Violation};

/// Documents by ARN, at the version last read.
#[derive(Default)]
pub struct ManagedPolicyDocuments {
    by_arn: Mutex<HashMap<String, (String, Arc<str>)>>,
}

impl ManagedPolicyDocuments {
    fn cached(&self, arn: &str, version_id: &str) -> Option<Arc<str>> {
        let by_arn = self.by_arn.lock().ok()?;
        by_arn
            .get(arn)
            .filter(|(version, _)| version == version_id)
            .map(|(_, document)| document.clone())
    }

    fn remember(&self, arn: &str, version_id: &str, document: Arc<str>) {
        if let Ok(mut by_arn) = self.by_arn.lock() {
            by_arn.insert(arn.to_string(), (version_id.to_string(), document));
        }
    }

    /// What attaching `arns` would grant beyond `rules`. A policy IAM does not have is
    /// not judged here: attaching it reports it missing, as before.
    pub async fn judge(
        &self,
        api: &dyn IamApi,
        rules: &RuleSet,
        arns: &[String],
    ) -> Result<Vec<Violation>, AwsError> {
        let iam = Iam::new(api);
        let mut violations = Vec::new();
        for (i, arn) in arns.iter().enumerate() {
            let version_id = match iam.policy_default_version(arn).await {
                Ok(version_id) => version_id,
                Err(err) if err.kind == ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            let document = match self.cached(arn, &version_id) {
                Some(document) => document,
                None => {
                    let document: Arc<str> =
                        iam.policy_version_document(arn, &version_id).await?.into();
                    self.remember(arn, &version_id, document.clone());
                    document
                }
            };
            violations.extend(rules.check_managed_policy(
                &format!("spec.permissions.managedPolicyArns[{i}]"),
                ManagedPolicy {
                    arn,
                    version_id: &version_id,
                    document: &document,
                },
            ));
        }
        Ok(violations)
    }
}

/// Whether IAM has none of these managed policies (GetPolicy, reads only): a binding
/// stalled on them asks this on its slow schedule.
pub async fn none_exist(api: &dyn IamApi, arns: &[String]) -> Result<bool, AwsError> {
    let iam = Iam::new(api);
    for arn in arns {
        match iam.policy_default_version(arn).await {
            Ok(_) => return Ok(false),
            Err(err) if err.kind == ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}
