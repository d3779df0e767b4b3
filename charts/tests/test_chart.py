"""Chart tests: rendered by the real Helm v4 library (helm-python-sdk), every object
checked against the Kubernetes 1.32 schemas (kubernetes-validate), RBAC asserted
exactly, bad values refused by values.schema.json, `helm lint` clean, and the Argo CD
health check run by a real Lua interpreter (lupa)."""

import json
import pathlib
import subprocess

import helm_python as helm
import kubernetes_validate
import lupa
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "pod-identity-operator"
NAMESPACE = "podidentity-system"
BASE = {"clusterName": "prod", "aws": {"accountId": "111122223333", "region": "eu-west-1"}}
# Kinds from other projects' CRDs, which the Kubernetes schemas do not know.
FOREIGN_KINDS = {"Certificate", "Issuer", "ServiceMonitor", "PrometheusRule"}


def merged(*overrides):
    values = yaml.safe_load(yaml.safe_dump(BASE))
    for override in overrides:
        stack = [(values, override)]
        while stack:
            target, source = stack.pop()
            for key, value in source.items():
                if isinstance(value, dict) and isinstance(target.get(key), dict):
                    stack.append((target[key], value))
                else:
                    target[key] = value
    return values


def render(*overrides):
    chart = helm.Chart.load(str(CHART))
    values = merged(*overrides)
    chart.validate_schema(values)
    manifests = chart.render(values, name="pio", namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in manifests.items():
        if not path.endswith(".yaml"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def find(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''}"
    return found[0]


def kinds(objects):
    return sorted(o["kind"] for o in objects)


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"webhook": {"enabled": False}},
        {"webhook": {"certificates": {"mode": "certManager"}}},
        {"controller": {"leaderElection": True, "replicas": 2}},
        {"metrics": {"serviceMonitor": {"enabled": True}, "dashboard": {"enabled": True}, "prometheusRule": {"enabled": True}}, "networkPolicy": {"enabled": True}},
        {"oidc": {"manage": True, "publish": {"s3Bucket": "prod-oidc"}}},
    ],
    ids=["defaults", "webhook-off", "cert-manager", "leader-election", "monitoring", "oidc-managed"],
)
def test_every_rendered_object_is_valid_kubernetes(variant):
    objects = render(variant)
    assert objects
    for obj in objects:
        if obj["kind"] in FOREIGN_KINDS:
            continue
        kubernetes_validate.validate(obj, "1.32", strict=True)


def test_defaults_render_the_whole_operator():
    objects = render()
    assert kinds(objects) == sorted([
        "ConfigMap", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service",
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service",
        "PodDisruptionBudget", "Secret", "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ])
    controller = find(objects, "Deployment", "pio-pod-identity-operator-controller")
    assert controller["spec"]["replicas"] == 1
    assert controller["spec"]["strategy"]["type"] == "Recreate"
    webhook = find(objects, "Deployment", "pio-pod-identity-operator-webhook")
    assert webhook["spec"]["replicas"] == 2
    anti = webhook["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    pdb = find(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1


def test_both_deployments_are_hardened():
    for deployment in [o for o in render() if o["kind"] == "Deployment"]:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"] and container["resources"]["limits"]


def test_the_webhook_configuration_is_safe_by_default():
    objects = render()
    config = find(objects, "MutatingWebhookConfiguration")
    hook = config["webhooks"][0]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["sideEffects"] == "None"
    assert hook["timeoutSeconds"] == 10
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"], "scope": "Namespaced"}]
    expressions = hook["namespaceSelector"]["matchExpressions"]
    assert {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", NAMESPACE]} in expressions
    assert {"key": "podidentity.io/webhook", "operator": "NotIn", "values": ["disabled"]} in expressions
    assert hook["clientConfig"]["service"] == {"name": "pio-pod-identity-operator-webhook", "namespace": NAMESPACE, "path": "/mutate", "port": 443}


def test_self_signed_certificates_are_wired_into_the_ca_bundle():
    objects = render()
    secret = find(objects, "Secret", "pio-pod-identity-operator-webhook-tls")
    hook = find(objects, "MutatingWebhookConfiguration")["webhooks"][0]
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    assert secret["data"]["tls.crt"] and secret["data"]["tls.key"]


def test_cert_manager_issues_the_certificate_and_injects_the_ca():
    objects = render({"webhook": {"certificates": {"mode": "certManager"}}})
    assert not [o for o in objects if o["kind"] == "Secret"]
    certificate = find(objects, "Certificate")
    assert certificate["spec"]["secretName"] == "pio-pod-identity-operator-webhook-tls"
    assert "pio-pod-identity-operator-webhook.podidentity-system.svc" in certificate["spec"]["dnsNames"]
    assert find(objects, "Issuer")["spec"] == {"selfSigned": {}}
    config = find(objects, "MutatingWebhookConfiguration")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/pio-pod-identity-operator-webhook"
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]


def test_webhook_off_renders_no_webhook():
    objects = render({"webhook": {"enabled": False}})
    assert not [o for o in objects if "webhook" in o["metadata"]["name"]]
    assert not [o for o in objects if o["kind"] == "MutatingWebhookConfiguration"]


def test_leader_election_runs_replicas_with_a_lease_role():
    objects = render({"controller": {"leaderElection": True, "replicas": 2}})
    controller = find(objects, "Deployment", "pio-pod-identity-operator-controller")
    assert controller["spec"]["replicas"] == 2
    assert controller["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "--leader-election" in controller["spec"]["template"]["spec"]["containers"][0]["args"]
    role = find(objects, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]
    assert find(objects, "RoleBinding")["subjects"][0]["name"] == "pio-pod-identity-operator-controller"


def test_rbac_is_exactly_what_each_component_uses():
    objects = render()
    controller = find(objects, "ClusterRole", "pio-pod-identity-operator-controller")
    assert controller["rules"] == [
        {"apiGroups": ["podidentity.io"], "resources": ["podidentitybindings"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
        {"apiGroups": ["podidentity.io"], "resources": ["podidentitybindings/status"], "verbs": ["patch"]},
        {"apiGroups": ["podidentity.io"], "resources": ["podidentitypolicies"], "verbs": ["list", "watch"]},
        {"apiGroups": ["podidentity.io"], "resources": ["podidentitypolicies/status"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "list", "watch", "create", "patch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch", "create", "patch", "delete"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "resourceNames": ["podidentitybindings.podidentity.io", "podidentitypolicies.podidentity.io"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["kube-system"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {"nonResourceURLs": ["/.well-known/openid-configuration"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    ]
    webhook = find(objects, "ClusterRole", "pio-pod-identity-operator-webhook")
    assert webhook["rules"] == [
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["podidentity.io"], "resources": ["podidentitybindings", "podidentitypolicies"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    ]
    # No lease permissions without leader election, and nothing namespaced is cluster-wide.
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding")]


def test_token_requests_and_workload_patches_are_granted_only_with_their_settings():
    def rules(*overrides):
        objects = render(*overrides)
        config = yaml.safe_load(find(objects, "ConfigMap")["data"]["config.yaml"])
        return find(objects, "ClusterRole", "pio-pod-identity-operator-controller")["rules"], config

    token = {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}
    patch = {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["get", "patch"]}
    default, config = rules()
    assert token not in default and patch not in default
    assert (config["verifyAssumable"], config["allowPodRestarts"]) == (False, False)
    verify, config = rules({"verifyAssumable": True})
    assert token in verify and patch not in verify and config["verifyAssumable"] is True
    restarts, config = rules({"allowPodRestarts": True})
    assert patch in restarts and token not in restarts and config["allowPodRestarts"] is True
    assert {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get"]} in restarts


def test_oidc_management_is_granted_and_configured_only_when_asked(tmp_path):
    jwks = {"nonResourceURLs": ["/openid/v1/jwks"], "verbs": ["get"]}
    default = render()
    assert jwks not in find(default, "ClusterRole", "pio-pod-identity-operator-controller")["rules"]
    assert not [o for o in default if o["kind"] == "Role"]
    assert "manage" not in yaml.safe_load(find(default, "ConfigMap")["data"]["config.yaml"])["oidc"]

    managed = render({"shortForm": {"enabled": True}, "oidc": {"manage": True, "checkInterval": "30s", "publish": {"s3Bucket": "prod-oidc", "keyRetention": "48h"}}})
    assert jwks in find(managed, "ClusterRole", "pio-pod-identity-operator-controller")["rules"]
    # The status ConfigMap, by name, in the release's namespace only.
    role = find(managed, "Role", "pio-pod-identity-operator-oidc-status")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["podidentity-oidc"], "verbs": ["get", "patch"]} in role["rules"]
    assert find(managed, "RoleBinding", "pio-pod-identity-operator-oidc-status")["roleRef"]["name"] == role["metadata"]["name"]
    text = find(managed, "ConfigMap")["data"]["config.yaml"]
    oidc = yaml.safe_load(text)["oidc"]
    assert oidc == {"manage": True, "checkInterval": "30s", "publish": {"s3Bucket": "prod-oidc", "keyRetention": "48h"}}
    # The binary accepts what the chart renders.
    path = tmp_path / "config.yaml"
    path.write_text(text)
    binary = ROOT / "target" / "debug" / "podidentity"
    if not binary.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "podidentity"], cwd=ROOT, check=True)
    run = subprocess.run([str(binary), "plan", "-f", "examples", "--config", str(path), "-o", "json"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_credentials_requests_are_granted_and_configured_only_when_asked():
    requests = {"apiGroups": ["cloudcredential.openshift.io"], "resources": ["credentialsrequests"], "verbs": ["list", "watch", "patch"]}
    def rules_and_config(*overrides):
        objects = render(*overrides)
        config = yaml.safe_load(find(objects, "ConfigMap")["data"]["config.yaml"])
        return find(objects, "ClusterRole", "pio-pod-identity-operator-controller")["rules"], config["credentialsRequests"]

    rules, config = rules_and_config()
    assert requests not in rules and config == {"enabled": False}
    rules, config = rules_and_config({"credentialsRequests": {"enabled": True, "namespaces": ["platform-credentials"]}})
    assert requests in rules
    assert {"apiGroups": ["cloudcredential.openshift.io"], "resources": ["credentialsrequests/status"], "verbs": ["patch"]} in rules
    assert config == {"enabled": True, "namespaces": ["platform-credentials"]}


def test_the_operators_service_account_carries_its_iam_role():
    arn = "arn:aws:iam::111122223333:role/podidentity-operator"
    objects = render({"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": arn}}})
    sa = find(objects, "ServiceAccount", "pio-pod-identity-operator-controller")
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": arn}


def test_a_required_boundary_without_one_stops_the_binary(tmp_path):
    config = find(render({"guardrails": {"requireBoundary": True}}), "ConfigMap")
    path = tmp_path / "config.yaml"
    path.write_text(config["data"]["config.yaml"])
    binary = ROOT / "target" / "debug" / "podidentity"
    if not binary.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "podidentity"], cwd=ROOT, check=True)
    run = subprocess.run([str(binary), "plan", "-f", "examples", "--config", str(path)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "guardrails.requireBoundary" in run.stderr and "roles.permissionsBoundaryArn" in run.stderr, run.stderr


def test_the_short_form_is_off_unless_the_values_turn_it_on():
    default = yaml.safe_load(find(render(), "ConfigMap")["data"]["config.yaml"])
    assert default["shortForm"] == {"enabled": False, "namespaces": []}
    on = yaml.safe_load(find(render({"shortForm": {"enabled": True, "namespaces": ["shop"]}}), "ConfigMap")["data"]["config.yaml"])
    assert on["shortForm"] == {"enabled": True, "namespaces": ["shop"]}


def test_allowed_mechanisms_reach_the_configuration():
    default = yaml.safe_load(find(render({}), "ConfigMap")["data"]["config.yaml"])
    assert "identity" not in default
    only = yaml.safe_load(find(render({"identity": {"allowedMechanisms": ["PodIdentity"], "defaultMechanism": "PodIdentity"}}), "ConfigMap")["data"]["config.yaml"])
    assert only["identity"] == {"defaultMechanism": "PodIdentity", "allowedMechanisms": ["PodIdentity"]}


def test_the_association_quota_reaches_the_configuration_only_when_lowered():
    default = yaml.safe_load(find(render({}), "ConfigMap")["data"]["config.yaml"])
    assert "maxAssociations" not in default.get("eks", {})
    lowered = yaml.safe_load(find(render({"eks": {"maxAssociations": 100}}), "ConfigMap")["data"]["config.yaml"])
    assert lowered["eks"]["maxAssociations"] == 100


def test_accounts_reach_the_configuration():
    default = yaml.safe_load(find(render({}), "ConfigMap")["data"]["config.yaml"])
    assert "accounts" not in default
    team = {"id": "444455556666", "roleArn": "arn:aws:iam::444455556666:role/podidentity-operator", "maxRequestsPerSecond": 20}
    rendered = yaml.safe_load(find(render({"accounts": [team]}), "ConfigMap")["data"]["config.yaml"])
    assert rendered["accounts"] == [team]


def test_the_rendered_configuration_is_one_the_binary_accepts(tmp_path):
    # The examples include a ServiceAccount short form, which is off unless turned on.
    config = find(render({"roles": {"permissionsBoundaryArn": "arn:aws:iam::111122223333:policy/boundary"}, "shortForm": {"enabled": True}, "accounts": [{"id": "444455556666", "roleArn": "arn:aws:iam::444455556666:role/podidentity-operator"}]}), "ConfigMap")
    path = tmp_path / "config.yaml"
    path.write_text(config["data"]["config.yaml"])
    binary = ROOT / "target" / "debug" / "podidentity"
    if not binary.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "podidentity"], cwd=ROOT, check=True)
    run = subprocess.run([str(binary), "plan", "-f", "examples", "--config", str(path), "-o", "json"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert '"permissionsBoundaryArn": "arn:aws:iam::111122223333:policy/boundary"' in run.stdout


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"clusterName": ""}, "clusterName"),
        ({"webhook": {"failurePolicy": "Sometimes"}}, "failurePolicy"),
        ({"trustPolicy": {"maxBytes": 9000}}, "maxBytes"),
        ({"controller": {"replicas": 3}}, "replicas"),
        ({"clusterNmae": "typo"}, "clusterNmae"),
        ({"shortForm": {"namespaces": ["Shop_1"]}}, "Shop_1"),
        ({"oidc": {"publish": {"s3Bucket": "Prod_OIDC"}}}, "Prod_OIDC"),
        ({"oidc": {"thumbprints": ["abc"]}}, "abc"),
        ({"eks": {"maxAssociations": 6000}}, "maxAssociations"),
        ({"identity": {"allowedMechanisms": ["Kerberos"]}}, "allowedMechanisms"),
        ({"accounts": [{"id": 444455556666, "roleArn": "arn:aws:iam::444455556666:role/ops"}]}, "/accounts/0/id"),
        ({"accounts": [{"id": "444455556666", "roleArn": "ops"}]}, "roleArn"),
        ({"metrics": {"dashboard": {"enabeld": True}}}, "enabeld"),
    ],
    ids=["empty-cluster-name", "failure-policy", "trust-policy-size", "replicas-without-leader-election", "misspelt-key", "short-form-namespace", "bucket-name", "thumbprint", "association-quota", "mechanism", "account-id-as-number", "account-role", "dashboard-misspelt-key"],
)
def test_bad_values_are_refused_by_the_schema(bad, words):
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmValuesError) as refused:
        chart.validate_schema(merged(bad))
    assert words in str(refused.value)


def test_the_dashboard_and_alerts_ship_only_when_asked():
    assert not [o for o in render() if o["kind"] == "PrometheusRule" or o["metadata"]["name"].endswith("-dashboard")]
    objects = render({"metrics": {
        "dashboard": {"enabled": True, "namespace": "monitoring"},
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    }})
    dashboard = find(objects, "ConfigMap", "pio-pod-identity-operator-dashboard")
    # Grafana's sidecar finds it by label, in the namespace it watches.
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["namespace"] == "monitoring"
    shipped = json.loads(dashboard["data"]["pod-identity-operator.json"])
    assert shipped == json.loads((CHART / "files" / "dashboard.json").read_text())
    titles = {p["title"] for p in shipped["panels"]}
    for wanted in ["Reconcile passes by result", "Failed passes by reason",
                   "IAM, STS and EKS calls by operation and outcome", "Request budget waits",
                   "Drift found and corrected", "Admissions by outcome", "Admission latency"]:
        assert wanted in titles
    for panel in shipped["panels"]:
        for target in panel.get("targets", []):
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
    rule = find(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert sorted(alerts) == ["PodIdentityBindingsNotReady", "PodIdentityIAMThrottled",
                              "PodIdentityRoleDriftRepeated", "PodIdentityWebhookErrors"]
    assert alerts["PodIdentityBindingsNotReady"]["for"] == "15m"
    assert 'ready="false"' in alerts["PodIdentityBindingsNotReady"]["expr"]
    assert 'outcome="Throttled"' in alerts["PodIdentityIAMThrottled"]["expr"]
    assert "by (namespace, role)" in alerts["PodIdentityRoleDriftRepeated"]["expr"]
    assert 'outcome="error"' in alerts["PodIdentityWebhookErrors"]["expr"]
    # Helm leaves Prometheus's own templates in the annotations alone.
    assert "{{ $labels.role }}" in alerts["PodIdentityRoleDriftRepeated"]["annotations"]["summary"]


def test_helm_lint_finds_nothing_to_fix():
    report = helm.lint(str(CHART), merged(), strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_chart_ships_the_generated_crds():
    shipped = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert shipped == ["podidentitybindings.podidentity.io.yaml", "podidentitypolicies.podidentity.io.yaml"]
    for name in shipped:
        assert (CHART / "crds" / name).read_text() == (ROOT / "crds" / name).read_text()


HEALTH = (ROOT / "docs" / "argocd" / "health.lua").read_text()


def health(obj):
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    check = lua.eval("function(obj) " + HEALTH + " end")
    result = check(lua.table_from(obj, recursive=True))
    return result["status"], result["message"]


def binding(conditions, generation=1, observed=1, deleting=False):
    metadata = {"name": "b", "generation": generation}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "status": {"observedGeneration": observed, "conditions": conditions}}


def condition(type_, status, reason="Synced", message=""):
    return {"type": type_, "status": status, "reason": reason, "message": message}


def test_argo_cd_health_follows_the_conditions():
    ready = [condition("Ready", "True"), condition("Stalled", "False"), condition("Reconciling", "False")]
    assert health(binding(ready)) == ("Healthy", "Ready")
    waiting = [condition("Ready", "False", "ServiceAccountNotFound", "ServiceAccount app does not exist"),
               condition("Reconciling", "True", "ServiceAccountNotFound", "waiting for the ServiceAccount")]
    assert health(binding(waiting)) == ("Progressing", "ServiceAccountNotFound: waiting for the ServiceAccount")
    refused = [condition("Ready", "False", "GuardrailViolation", "x"), condition("Stalled", "True", "GuardrailViolation", "spec.permissions: iam:* is denied")]
    assert health(binding(refused)) == ("Degraded", "GuardrailViolation: spec.permissions: iam:* is denied")
    assert health(binding(ready, deleting=True))[0] == "Progressing"
    assert health(binding(ready, generation=2, observed=1))[0] == "Progressing", "a new generation is not healthy yet"
    assert health({"metadata": {"name": "b"}}) == ("Progressing", "Waiting for the operator")


def test_binding_admission_checks_creates_and_updates_and_can_be_turned_off():
    objects = render()
    validating = find(objects, "ValidatingWebhookConfiguration")
    [hook] = validating["webhooks"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["clientConfig"]["service"]["path"] == "/validate-bindings"
    assert hook["clientConfig"]["caBundle"] == find(objects, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"]
    assert hook["rules"] == [{"apiGroups": ["podidentity.io"], "apiVersions": ["v1alpha1"], "operations": ["CREATE", "UPDATE"], "resources": ["podidentitybindings"], "scope": "Namespaced"}]
    off = render({"webhook": {"validateBindings": {"enabled": False}}})
    assert not [o for o in off if o["kind"] == "ValidatingWebhookConfiguration"]
    rules = find(off, "ClusterRole", "pio-pod-identity-operator-webhook")["rules"]
    assert not [r for r in rules if "subjectaccessreviews" in r["resources"]]
