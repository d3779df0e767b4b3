//! `plan`'s judge, without a cluster or AWS: manifests read from files into documents,
//! judged by the controller's own validation and build (`podidentity_iam`) into a plan of
//! what the operator would make or why it would refuse, rendered as a table or JSON. The
//! `podidentity` binary adds the command line; the fuzz targets call it directly.

use std::collections::BTreeMap;

use podidentity_api::conditions::reason;
use podidentity_api::config::OperatorConfig;
use podidentity_api::credentials_request::CredentialsRequest;
use podidentity_api::{PodIdentityBinding, PodIdentityBindingSpec};
use podidentity_iam::credentials_request;
use podidentity_iam::namespace_policy::{NamespacePolicy, over_quota};
use podidentity_iam::ownership::{quota_queue, service_account_taken_by};
use podidentity_iam::{
    BindingRef, DesiredState, Error, Guardrails, Violation, desired_state, short_form,
};
use serde::Serialize;

pub mod config_file;
pub mod manifests;
pub mod migration;
pub mod render;

use manifests::{Document, Source};

/// Bumped when the JSON shape changes incompatibly; CI scripts can check it.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// One problem of one binding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub field: String,
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingPlan {
    #[serde(flatten)]
    pub source: Source,
    /// `PodIdentityBinding`, `ServiceAccount` for the annotation short form, or
    /// `CredentialsRequest`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<DesiredState>,
    pub problems: Vec<Problem>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub bindings: usize,
    pub valid: usize,
    pub refused: usize,
    pub ignored_documents: usize,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Bumped when the JSON shape changes incompatibly; CI scripts can check it.
    pub format_version: u32,
    pub bindings: Vec<BindingPlan>,
    pub warnings: Vec<String>,
    pub summary: Summary,
}

/// The plan for a set of documents: every binding valid or refused with all its problems.
pub fn build_plan(
    documents: Vec<manifests::SourcedDocument>,
    ignored_documents: usize,
    default_namespace: &str,
    config: &OperatorConfig,
    mut namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
) -> Plan {
    // First the cluster's rules: policies, and the labels they select namespaces by.
    let mut policies = Vec::new();
    let mut bindings = Vec::new();
    let mut documents_left = Vec::new();
    for sourced in documents {
        match sourced.document {
            Document::Policy(policy) => {
                // As the cluster holds it: one that cannot be used is reported, and still
                // refuses the bindings it selects (the controller fails closed alike).
                let read = NamespacePolicy::read(&policy);
                if !read.problems().is_empty() {
                    bindings.push(BindingPlan {
                        source: sourced.source,
                        kind: "PodIdentityPolicy".into(),
                        namespace: String::new(),
                        name: policy.metadata.name.clone().unwrap_or_default(),
                        valid: false,
                        desired: None,
                        problems: read.problems().iter().cloned().map(problem).collect(),
                    });
                }
                policies.push(read);
            }
            Document::Namespace { name, labels } => {
                namespace_labels.entry(name).or_default().extend(labels);
            }
            other => documents_left.push(manifests::SourcedDocument {
                source: sourced.source,
                document: other,
            }),
        }
    }
    let documents = documents_left;
    let any_policy = !policies.is_empty();
    let guardrails = Guardrails::from_config(config).with_policies(policies, namespace_labels);
    // Beside each entry: the binding as the cluster would hold it, for the ServiceAccount
    // ownership rule (None for documents that could not be read).
    let mut claimants: Vec<Option<PodIdentityBinding>> = vec![None; bindings.len()];
    let mut warnings = Vec::new();
    let mut short_forms = Vec::new();

    for sourced in documents {
        let source = sourced.source;
        match sourced.document {
            Document::Binding(binding) => {
                let namespace = binding
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| default_namespace.into());
                let name = binding.metadata.name.clone().unwrap_or_default();
                let outcome = desired_state(
                    BindingRef::new(&namespace, &name),
                    &binding.spec,
                    config,
                    &guardrails,
                );
                bindings.push(plan_entry(
                    source,
                    "PodIdentityBinding",
                    namespace.clone(),
                    name,
                    outcome,
                ));
                let mut claimant = *binding;
                claimant.metadata.namespace = Some(namespace);
                claimants.push(Some(claimant));
            }
            Document::ServiceAccount(sa) => short_forms.push((source, sa)),
            Document::CredentialsRequest(request) => {
                if let Some(entry) = credentials_request_entry(
                    source,
                    &request,
                    default_namespace,
                    config,
                    &guardrails,
                ) {
                    bindings.push(entry);
                }
            }
            // Read in the first pass.
            Document::Policy(_) | Document::Namespace { .. } => {}
            Document::Unreadable {
                kind,
                namespace,
                name,
                field,
                message,
            } => bindings.push(BindingPlan {
                source,
                kind,
                namespace: namespace.unwrap_or_else(|| default_namespace.into()),
                name: name.unwrap_or_default(),
                valid: false,
                desired: None,
                problems: vec![Problem {
                    field,
                    reason: reason::INVALID_SPEC.into(),
                    message,
                }],
            }),
        }
        claimants.resize(bindings.len(), None);
    }

    // Short forms after bindings: a binding the user wrote wins over a generated one.
    for (source, sa) in short_forms {
        let namespace = sa
            .namespace
            .clone()
            .unwrap_or_else(|| default_namespace.into());
        let taken = bindings.iter().any(|b| {
            b.kind == "PodIdentityBinding" && b.namespace == namespace && b.name == sa.name
        });
        if taken {
            warnings.push(format!(
                "{source}: ServiceAccount {namespace}/{} asks for a role by annotation, but a \
                 PodIdentityBinding of that name exists; the binding wins and the annotations \
                 are ignored",
                sa.name
            ));
            continue;
        }
        let asked = short_form::spec_from_annotations(&sa.name, &sa.annotations);
        let (outcome, spec) = match asked {
            Some(_) if let Some(refusal) = config.short_form_refusal(&namespace) => (
                Err(Error::Refused(vec![Violation::guardrail(
                    "metadata.annotations",
                    refusal,
                )])),
                PodIdentityBindingSpec {
                    service_account_name: sa.name.clone(),
                    ..PodIdentityBindingSpec::default()
                },
            ),
            Some(Ok(spec)) => (
                desired_state(
                    BindingRef::new(&namespace, &sa.name),
                    &spec,
                    config,
                    &guardrails,
                ),
                spec,
            ),
            Some(Err(violations)) => (
                Err(Error::Refused(violations)),
                PodIdentityBindingSpec {
                    service_account_name: sa.name.clone(),
                    ..PodIdentityBindingSpec::default()
                },
            ),
            None => continue,
        };
        bindings.push(plan_entry(
            source,
            "ServiceAccount",
            namespace.clone(),
            sa.name.clone(),
            outcome,
        ));
        let mut claimant = PodIdentityBinding::new(&sa.name, spec);
        claimant.metadata.namespace = Some(namespace);
        claimants.push(Some(claimant));
    }

    // A namespace whose labels the inputs do not give is judged as if it had none: a CI
    // gate must say so rather than pass what the cluster's policies would refuse.
    if any_policy {
        let known: Vec<&str> = guardrails.namespaces().collect();
        let mut unknown: Vec<&str> = bindings
            .iter()
            .filter(|b| !b.namespace.is_empty() && !known.contains(&b.namespace.as_str()))
            .map(|b| b.namespace.as_str())
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        for namespace in unknown {
            warnings.push(format!(
                "the labels of namespace {namespace} are not among the inputs: the \
                 PodIdentityPolicies were applied as if it had none but its name; add its \
                 Namespace or --namespace-labels {namespace}=KEY=VALUE"
            ));
        }
    }
    flag_service_account_conflicts(&mut bindings, &claimants);
    flag_duplicates(&mut bindings);
    flag_over_quota(&mut bindings, &claimants, &guardrails);
    let valid = bindings.iter().filter(|b| b.valid).count();
    let summary = Summary {
        bindings: bindings.len(),
        valid,
        refused: bindings.len() - valid,
        ignored_documents,
    };
    Plan {
        format_version: PLAN_FORMAT_VERSION,
        bindings,
        warnings,
        summary,
    }
}

/// A CredentialsRequest's plan, as the controller would reconcile it; `None` for a
/// request for another cloud (ignored, with nothing to show).
fn credentials_request_entry(
    source: Source,
    request: &CredentialsRequest,
    default_namespace: &str,
    config: &OperatorConfig,
    guardrails: &Guardrails,
) -> Option<BindingPlan> {
    let namespace = request
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| default_namespace.into());
    let name = request.metadata.name.clone().unwrap_or_default();
    // As the controller judges: another cloud's request is left out, a request the
    // settings do not let it answer is refused for that alone, then the engine.
    if !request.spec.is_for_aws() {
        return None;
    }
    let outcome = match config.credentials_request_refusal(&namespace) {
        Some(refusal) => Err(Error::Refused(vec![Violation::guardrail(
            "metadata.namespace",
            refusal,
        )])),
        None => {
            let rules = guardrails.rules_for(&request.spec.secret_ref.namespace);
            credentials_request::desired_state(&namespace, &name, &request.spec, config, &rules)?
        }
    };
    Some(plan_entry(
        source,
        "CredentialsRequest",
        namespace,
        name,
        outcome,
    ))
}

fn plan_entry(
    source: Source,
    kind: &str,
    namespace: String,
    name: String,
    outcome: Result<DesiredState, Error>,
) -> BindingPlan {
    let (desired, problems) = match outcome {
        Ok(desired) => (Some(desired), Vec::new()),
        Err(Error::Refused(violations)) => (None, violations.into_iter().map(problem).collect()),
        Err(other) => (
            None,
            vec![Problem {
                field: "spec".into(),
                reason: other.reason().into(),
                message: other.to_string(),
            }],
        ),
    };
    BindingPlan {
        source,
        kind: kind.into(),
        namespace,
        name,
        valid: problems.is_empty(),
        desired,
        problems,
    }
}

fn problem(violation: Violation) -> Problem {
    Problem {
        field: violation.field,
        reason: violation.kind.reason().into(),
        message: violation.message,
    }
}

/// A namespace's policies may cap its bindings: of those that would otherwise get a role,
/// the oldest keep theirs (here, with no creation times, the first by name) and the rest
/// are refused, as the controller refuses them.
fn flag_over_quota(
    bindings: &mut [BindingPlan],
    claimants: &[Option<PodIdentityBinding>],
    guardrails: &Guardrails,
) {
    let mut by_namespace: BTreeMap<String, Vec<(usize, &PodIdentityBinding)>> = BTreeMap::new();
    for (i, (entry, claimant)) in bindings.iter().zip(claimants).enumerate() {
        if let Some(claimant) = claimant {
            by_namespace
                .entry(entry.namespace.clone())
                .or_default()
                .push((i, claimant));
        }
    }
    for (namespace, members) in by_namespace {
        let policies = guardrails.rules_for(&namespace).policies;
        // The controller's queue: what it would let in, in the order it would.
        let queue: Vec<usize> = quota_queue(
            &namespace,
            &members,
            |(_, b)| b,
            |(i, _)| bindings.get(*i).is_some_and(|entry| entry.valid),
        )
        .into_iter()
        .map(|(i, _)| *i)
        .collect();
        for (rank, i) in queue.into_iter().enumerate() {
            if let Some(violation) = over_quota(&policies, rank) {
                let entry = &mut bindings[i];
                entry.problems.push(problem(violation));
                entry.valid = false;
                entry.desired = None;
            }
        }
    }
}

/// A ServiceAccount carries one role: of several bindings naming it, the one the
/// controller lets own it (`service_account_taken_by`) is planned; the others are refused as
/// `ServiceAccountConflict`, as the controller would report them.
fn flag_service_account_conflicts(
    bindings: &mut [BindingPlan],
    claimants: &[Option<PodIdentityBinding>],
) {
    let all: Vec<&PodIdentityBinding> = claimants.iter().flatten().collect();
    for (entry, claimant) in bindings.iter_mut().zip(claimants) {
        let Some(claimant) = claimant else { continue };
        let namespace = entry.namespace.as_str();
        let account = claimant.spec.service_account_name.as_str();
        let Some(owner) = service_account_taken_by(claimant, namespace, all.iter().copied()) else {
            continue;
        };
        let owner_name = owner.metadata.name.as_deref().unwrap_or_default();
        entry.problems.push(Problem {
            field: "spec.serviceAccountName".into(),
            reason: reason::SERVICE_ACCOUNT_CONFLICT.into(),
            message: format!(
                "ServiceAccount {namespace}/{account} is also named by {namespace}/{owner_name}, \
                 which owns it (the oldest binding, then by name): a ServiceAccount carries one \
                 role, so name another ServiceAccount or remove one of the bindings"
            ),
        });
        entry.valid = false;
        entry.desired = None;
    }
}

/// Two bindings of the same namespace and name, or two that would share a role name,
/// cannot both be applied: the later one is refused and told which one it collides with.
fn flag_duplicates(bindings: &mut [BindingPlan]) {
    let mut by_object: BTreeMap<(String, String), Source> = BTreeMap::new();
    let mut by_role: BTreeMap<String, (String, Source)> = BTreeMap::new();
    for binding in bindings.iter_mut() {
        let key = (binding.namespace.clone(), binding.name.clone());
        if let Some(first) = by_object.get(&key) {
            binding.problems.push(Problem {
                field: "metadata.name".into(),
                reason: reason::INVALID_SPEC.into(),
                message: format!("{}/{} is also defined at {first}: keep one", key.0, key.1),
            });
        } else {
            by_object.insert(key, binding.source.clone());
        }
        if let Some(desired) = &binding.desired {
            let role = desired.role.name.clone();
            // One role in IAM whatever the letter case of its name.
            let identity = podidentity_iam::naming::role_identity(&role);
            if let Some((owner, first)) = by_role.get(&identity) {
                // Derived names of two bindings never meet (a namespace cannot hold the
                // separator): one is an explicit spec.role.name, or one is a
                // CredentialsRequest whose Secret has a binding's name and namespace.
                let (field, fix) = match binding.kind.as_str() {
                    "CredentialsRequest" => ("spec.secretRef.name", "name another Secret"),
                    _ => (
                        "spec.role.name",
                        "give one of the two another spec.role.name",
                    ),
                };
                binding.problems.push(Problem {
                    field: field.into(),
                    reason: reason::ROLE_CONFLICT.into(),
                    message: format!(
                        "role name {role} is also produced by {owner} at {first}: {fix}"
                    ),
                });
            } else {
                by_role.insert(
                    identity,
                    (
                        format!("{}/{}", binding.namespace, binding.name),
                        binding.source.clone(),
                    ),
                );
            }
        }
        if !binding.problems.is_empty() {
            binding.valid = false;
            binding.desired = None;
        }
    }
}
