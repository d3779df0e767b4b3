//! Which role a pod's ServiceAccount stands for. The ServiceAccount's own annotations win;
//! until the controller has written them, a PodIdentityBinding covering the
//! ServiceAccount (or the ServiceAccount's short-form annotations) says what they will be,
//! since role ARNs are deterministic. That closes the race in which a pod created right
//! after its binding starts without credentials.

use std::collections::BTreeMap;

use podidentity_api::config::OperatorConfig;
use podidentity_api::{PodIdentityBinding, PodIdentityBindingSpec};
use podidentity_iam::{BindingRef, desired_state, short_form};

use crate::policies::NamespaceRules;

/// The domain the controller writes its annotations under.
const CONTROLLER_DOMAIN: &str = "eks.amazonaws.com/";

/// Predicts ServiceAccount annotations from bindings, as the controller will write them.
#[derive(Clone, Debug)]
pub struct Predictor {
    /// The operator's configuration and the rules per namespace; `None` runs as the
    /// original webhook did, from ServiceAccount annotations only.
    operator: Option<(OperatorConfig, NamespaceRules)>,
    annotation_prefix: String,
    /// `<prefix>/role-arn`, asked for on every admission.
    role_arn_key: String,
}

impl Predictor {
    /// Predicts by the configuration's guardrails alone (see [`Self::with_rules`]).
    pub fn new(operator: OperatorConfig, annotation_prefix: &str) -> Self {
        let rules = NamespaceRules::from_config(&operator);
        Self {
            operator: Some((operator, rules)),
            annotation_prefix: annotation_prefix.to_string(),
            role_arn_key: format!("{annotation_prefix}/role-arn"),
        }
    }

    /// Predicts by these rules (the namespace's PodIdentityPolicies too): no role is
    /// predicted for a binding they refuse.
    pub fn with_rules(mut self, rules: NamespaceRules) -> Self {
        if let Some((_, own)) = &mut self.operator {
            *own = rules;
        }
        self
    }

    /// Changes whenever what predictions depend on beyond the binding (policies, namespace
    /// labels) changes.
    pub fn rules_version(&self) -> u64 {
        self.operator
            .as_ref()
            .map_or(0, |(_, rules)| rules.version())
    }

    /// Whether the rules' watches have listed everything (readiness).
    pub fn rules_listed(&self) -> bool {
        self.operator
            .as_ref()
            .is_none_or(|(_, rules)| rules.is_listed())
    }

    /// No predictions: ServiceAccount annotations only.
    pub fn annotations_only(annotation_prefix: &str) -> Self {
        Self {
            operator: None,
            annotation_prefix: annotation_prefix.to_string(),
            role_arn_key: format!("{annotation_prefix}/role-arn"),
        }
    }

    /// The annotations the controller will write for this binding, under the webhook's
    /// annotation domain; `None` when the binding will be refused (no role will exist).
    pub fn predict(
        &self,
        binding: BindingRef<'_>,
        spec: &PodIdentityBindingSpec,
    ) -> Option<BTreeMap<String, String>> {
        let (operator, rules) = self.operator.as_ref()?;
        let guardrails = rules.guardrails_for(binding.namespace);
        let desired = desired_state(binding, spec, operator, &guardrails).ok()?;
        Some(
            desired
                .service_account
                .annotations
                .into_iter()
                .map(|(key, value)| {
                    let key = match key.strip_prefix(CONTROLLER_DOMAIN) {
                        Some(rest) => format!("{}/{rest}", self.annotation_prefix),
                        None => key,
                    };
                    (key, value)
                })
                .collect(),
        )
    }

    /// Whether it predicts roles from bindings (it has the operator's configuration).
    pub fn predicts(&self) -> bool {
        self.operator.is_some()
    }

    /// Whether these ServiceAccount annotations already name a role.
    pub fn names_role(&self, annotations: &BTreeMap<String, String>) -> bool {
        annotations
            .get(&self.role_arn_key)
            .is_some_and(|arn| !arn.trim().is_empty())
    }

    /// The annotations that decide a pod's injection: the ServiceAccount's own when they
    /// name a role; else those predicted from a covering binding, or from the
    /// ServiceAccount's short form; else the ServiceAccount's (which name no role).
    pub fn effective_annotations(
        &self,
        namespace: &str,
        service_account: &str,
        sa_annotations: Option<&BTreeMap<String, String>>,
        covering_binding: Option<&PodIdentityBinding>,
    ) -> Option<BTreeMap<String, String>> {
        let predicted = covering_binding
            .and_then(|binding| self.predict(BindingRef::of(namespace, binding), &binding.spec));
        self.effective_annotations_predicted(
            namespace,
            service_account,
            sa_annotations,
            predicted.as_ref(),
        )
    }

    /// As [`Self::effective_annotations`], given what the covering binding predicts
    /// (worked out once per binding version by the webhook's cache).
    pub fn effective_annotations_predicted(
        &self,
        namespace: &str,
        service_account: &str,
        sa_annotations: Option<&BTreeMap<String, String>>,
        binding_prediction: Option<&BTreeMap<String, String>>,
    ) -> Option<BTreeMap<String, String>> {
        if let Some(own) = sa_annotations
            && self.names_role(own)
        {
            return Some(own.clone());
        }
        let own = sa_annotations.cloned().unwrap_or_default();
        let predicted = binding_prediction.cloned().or_else(|| {
            // The short form makes a binding named after the ServiceAccount, where the
            // operator's configuration lets it.
            let (operator, _) = self.operator.as_ref()?;
            if !operator.short_form_allowed(namespace) {
                return None;
            }
            match short_form::spec_from_annotations(service_account, &own)? {
                Ok(spec) => self.predict(BindingRef::new(namespace, service_account), &spec),
                Err(_) => None,
            }
        });
        match predicted {
            Some(predicted) => {
                let mut merged = own;
                merged.extend(predicted);
                Some(merged)
            }
            None if sa_annotations.is_some() => Some(own),
            None => None,
        }
    }
}
