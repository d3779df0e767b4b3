#!/usr/bin/env python3
"""moto's server, plus an emulator of the EKS Pod Identity association API.

moto (5.2.5) serves IAM, STS and EKS clusters, but not EKS Pod Identity associations. This
launcher adds them to moto's own EKS service before it starts the server, so they live in the
same process as moto's accounts, IAM roles and EKS clusters:

  CreatePodIdentityAssociation, DescribePodIdentityAssociation, UpdatePodIdentityAssociation,
  DeletePodIdentityAssociation, ListPodIdentityAssociations, and TagResource / UntagResource /
  ListTagsForResource on association ARNs (cluster ARNs still go to moto).

Every request is checked against the operation's input shape in botocore's EKS service model,
and every answer is serialized by moto from the operation's output shape. docs/emulators.md
lists what is checked and which service behaviours are reproduced.

Usage: moto_server.py [-H HOST] [-p PORT] [moto_server's other options]
Environment: PODIDENTITY_TEST_EKS_ASSOCIATIONS_PER_CLUSTER lowers the per-cluster quota
(5,000 in EKS) so that tests can reach it; PODIDENTITY_TEST_EKS_CREATE_DELAY (seconds) slows
Create down, for the emulator's own test of concurrent Creates.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import os
import re
import secrets
import string
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import unquote

import botocore.session
from botocore import xform_name
from botocore.validate import ParamValidator

import moto.eks.urls as eks_urls
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult, EmptyResult
from moto.eks.models import eks_backends
from moto.eks.responses import EKSResponse
from moto.iam.models import iam_backends
from moto.utilities.utils import get_partition

EKS_MODEL = botocore.session.get_session().get_service_model("eks")

# EKS service quota "Pod Identity associations per cluster" (EKS user guide, service quotas).
DEFAULT_ASSOCIATIONS_PER_CLUSTER = 5000
QUOTA_ENV = "PODIDENTITY_TEST_EKS_ASSOCIATIONS_PER_CLUSTER"
# Fault injection for the emulator's own tests: seconds Create waits between its checks and
# storing the association, so that a missing lock would let concurrent Creates through.
CREATE_DELAY_ENV = "PODIDENTITY_TEST_EKS_CREATE_DELAY"
POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"
TRUST_ACTIONS = ("sts:AssumeRole", "sts:TagSession")
ROLE_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/(?:[^/]+/)*[\w+=,.@-]{1,64}$")
ASSOCIATION_ARN = re.compile(
    r"^arn:aws[a-z-]*:eks:(?P<region>[^:]+):(?P<account>\d{12}):"
    r"podidentityassociation/(?P<cluster>[^/]+)/(?P<id>[^/]+)$"
)
ID_ALPHABET = string.ascii_lowercase + string.digits

# moto's server is threaded: every pod identity call runs under this lock.
LOCK = threading.RLock()


class ApiError(Exception):
    """An EKS error; `code` names an error shape of the operation in the model."""

    def __init__(self, code: str, message: str, cluster_name: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.cluster_name = cluster_name


class EksServiceError(ServiceException):
    """What moto serializes: the error shape named by `code` gives the HTTP status and the
    members of the body. (Defined here, outside moto's packages, so that moto looks the
    shape up in the EKS model only.)"""


def invalid(message: str, cluster_name: str | None = None) -> ApiError:
    return ApiError("InvalidParameterException", message, cluster_name)


def now() -> datetime:
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------------------------------------
# Requests: parsed by the operation's input shape, then validated against it.
# ---------------------------------------------------------------------------------------------


def _drop_nulls(value: Any) -> Any:
    # A JSON null member is an absent member.
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def parse_request(response: EKSResponse, operation: str, error_code: str) -> dict[str, Any]:
    """The operation's input members, from the URI, the query string and the JSON body.

    Values keep their wire types (a string where the model wants a boolean stays a string),
    so that validation can refuse them. Body members the model does not have are ignored,
    as Smithy servers do."""
    shape = EKS_MODEL.operation_model(operation).input_shape
    request = response.normalized_request
    raw = response.body if isinstance(response.body, str) else (response.body or b"").decode()
    body: Any = {}
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(error_code, "The request body is not valid JSON")
    if not isinstance(body, dict):
        raise ApiError(error_code, "The request body must be a JSON object")
    params: dict[str, Any] = {}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if location == "uri":
            if name == "resourceArn":
                # An ARN holds slashes; the router's label does not span them.
                value = "/".join(unquote(response.path).split("/")[2:])
            else:
                value = response.uri_match.get(wire_name)
            if value is not None:
                params[name] = unquote(value)
        elif location == "querystring":
            if member.type_name == "list":
                values = request.args.getlist(wire_name)
                if values:
                    params[name] = values
            elif wire_name in request.args:
                value = request.args.get(wire_name)
                if member.type_name in ("integer", "long"):
                    try:
                        value = int(value)
                    except ValueError:
                        pass  # stays a string: validation names the member
                elif member.type_name == "boolean" and value in ("true", "false"):
                    value = value == "true"
                params[name] = value
        elif location is None and wire_name in body and body[wire_name] is not None:
            params[name] = _drop_nulls(body[wire_name])
    return params


def _constraint_errors(value: Any, shape: Any, name: str, errors: list[str]) -> None:
    """What botocore's ParamValidator leaves out: max lengths, sizes and values, map sizes,
    enums and patterns (it checks required members, types and minimums)."""
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for member_name, member in shape.members.items():
            if member_name in value:
                _constraint_errors(value[member_name], member, f"{name}.{member_name}", errors)
        return
    if kind == "list" and isinstance(value, (list, tuple)):
        size = len(value)
        if "max" in meta and size > meta["max"]:
            errors.append(f"Invalid length for parameter {name[1:]}, value: {size}, valid max length: {meta['max']}")
        for i, item in enumerate(value):
            _constraint_errors(item, shape.member, f"{name}[{i}]", errors)
        return
    if kind == "map" and isinstance(value, dict):
        size = len(value)
        if "min" in meta and size < meta["min"]:
            errors.append(f"Invalid length for parameter {name[1:]}, value: {size}, valid min length: {meta['min']}")
        if "max" in meta and size > meta["max"]:
            errors.append(f"Invalid length for parameter {name[1:]}, value: {size}, valid max length: {meta['max']}")
        for key, item in value.items():
            _constraint_errors(key, shape.key, f"{name} (key: {key})", errors)
            _constraint_errors(item, shape.value, f"{name}.{key}", errors)
        return
    if kind == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"Invalid length for parameter {name[1:]}, value: {len(value)}, valid max length: {meta['max']}")
        if shape.enum and value not in shape.enum:
            errors.append(f"Invalid value for parameter {name[1:]}, value: {value}, valid values: {', '.join(shape.enum)}")
        if "pattern" in meta and not re.search(meta["pattern"], value):
            errors.append(f"Invalid value for parameter {name[1:]}, value: {value}, must match pattern: {meta['pattern']}")
        return
    if kind in ("integer", "long") and isinstance(value, int) and not isinstance(value, bool):
        if "max" in meta and value > meta["max"]:
            errors.append(f"Invalid value for parameter {name[1:]}, value: {value}, valid max value: {meta['max']}")


def validate(operation: str, params: dict[str, Any], error_code: str) -> None:
    shape = EKS_MODEL.operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        raise ApiError(error_code, report.generate_report().replace("\n", "; "), params.get("clusterName"))
    errors: list[str] = []
    _constraint_errors(params, shape, "", errors)
    if errors:
        raise ApiError(error_code, "; ".join(errors), params.get("clusterName"))


# ---------------------------------------------------------------------------------------------
# The store: per moto EKS cluster object (so per account and region, and gone with the cluster).
# ---------------------------------------------------------------------------------------------


class ClusterAssociations:
    def __init__(self, cluster: Any):
        self.cluster = cluster
        self.by_id: dict[str, dict[str, Any]] = {}  # in creation order
        self.sequence = 0


STORE: dict[tuple[str, str, str], ClusterAssociations] = {}


def cluster_associations(account: str, region: str, cluster_name: str) -> ClusterAssociations:
    cluster = eks_backends[account][region].clusters.get(cluster_name)
    if cluster is None:
        raise ApiError("ResourceNotFoundException", f"No cluster found for name: {cluster_name}.", cluster_name)
    key = (account, region, cluster_name)
    entry = STORE.get(key)
    if entry is None or entry.cluster is not cluster:  # new, or deleted and created again
        entry = STORE[key] = ClusterAssociations(cluster)
    return entry


def find_association(entry: ClusterAssociations, cluster_name: str, association_id: str) -> dict[str, Any]:
    association = entry.by_id.get(association_id)
    if association is None:
        raise ApiError(
            "ResourceNotFoundException",
            f"No Pod Identity Association found for id: {association_id} in cluster: {cluster_name}",
            cluster_name,
        )
    return association


def quota() -> int:
    value = os.environ.get(QUOTA_ENV)
    return int(value) if value else DEFAULT_ASSOCIATIONS_PER_CLUSTER


def new_association_id(entry: ClusterAssociations) -> str:
    while True:
        candidate = "a-" + "".join(secrets.choice(ID_ALPHABET) for _ in range(17))
        if candidate not in entry.by_id:
            return candidate


def shaped(association: dict[str, Any]) -> dict[str, Any]:
    """The association as the model's PodIdentityAssociation (absent members left out)."""
    members = EKS_MODEL.shape_for("PodIdentityAssociation").members
    out = {k: v for k, v in association.items() if k in members and v not in (None, "")}
    out["tags"] = dict(association["tags"])
    out["disableSessionTags"] = bool(association["disableSessionTags"])
    config = association.get("workloadIdentityConfig")
    if config is not None:
        out["workloadIdentityConfig"] = {k: v for k, v in config.items() if v not in (None, "")}
    return out


def summary(association: dict[str, Any]) -> dict[str, Any]:
    members = EKS_MODEL.shape_for("PodIdentityAssociationSummary").members
    return {k: v for k, v in association.items() if k in members and v is not None}


# ---------------------------------------------------------------------------------------------
# Checks on roles, trust policies, session policies and workload identity.
# ---------------------------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _load_policy(document: Any) -> Any:
    if isinstance(document, dict):
        return document
    try:
        return json.loads(document)
    except (TypeError, ValueError):
        return json.loads(unquote(document))


def trust_admits_pod_identity(document: Any) -> bool:
    """Whether the trust policy lets pods.eks.amazonaws.com call sts:AssumeRole and
    sts:TagSession: an Allow statement whose Principal.Service names the service, with an
    Action (string or list; wildcards such as sts:* and * count) covering each action, and
    no Deny statement for that principal covering it. Conditions are not evaluated."""
    try:
        policy = _load_policy(document)
    except (TypeError, ValueError):
        return False
    if not isinstance(policy, dict):
        return False

    def names_service(statement: dict[str, Any]) -> bool:
        principal = statement.get("Principal")
        if principal == "*":
            return statement.get("Effect") == "Deny"  # a Deny on * also denies the service
        if not isinstance(principal, dict):
            return False
        return POD_IDENTITY_PRINCIPAL in _as_list(principal.get("Service"))

    def covers(statement: dict[str, Any], action: str) -> bool:
        return any(
            isinstance(pattern, str) and fnmatch.fnmatchcase(action.lower(), pattern.lower())
            for pattern in _as_list(statement.get("Action"))
        )

    statements = [s for s in _as_list(policy.get("Statement")) if isinstance(s, dict)]
    for action in TRUST_ACTIONS:
        allowed = any(s.get("Effect") == "Allow" and names_service(s) and covers(s, action) for s in statements)
        denied = any(s.get("Effect") == "Deny" and names_service(s) and covers(s, action) for s in statements)
        if not allowed or denied:
            return False
    return True


def check_role(account: str, region: str, cluster_name: str, role_arn: str) -> None:
    match = ROLE_ARN.match(role_arn)
    if not match:
        raise invalid(f"roleArn is not a valid IAM role ARN: {role_arn}", cluster_name)
    if match.group(2) != account:
        raise invalid(
            f"The role {role_arn} must be in the same account as the cluster ({account})", cluster_name
        )
    iam = iam_backends[account][get_partition(region)]
    role = next((r for r in list(iam.get_roles()) if r.arn == role_arn), None)
    if role is None:
        raise invalid(f"Role provided does not exist: {role_arn}", cluster_name)
    if not trust_admits_pod_identity(role.assume_role_policy_document):
        raise invalid("Trust policy of the role provided is invalid", cluster_name)


def check_target_role(cluster_name: str, target_role_arn: str) -> None:
    # The target role may be in any account (EKS cannot read it): only its form is checked.
    if target_role_arn and not ROLE_ARN.match(target_role_arn):
        raise invalid(f"targetRoleArn is not a valid IAM role ARN: {target_role_arn}", cluster_name)


def check_state(cluster_name: str, state: dict[str, Any]) -> None:
    """Rules on the association as it would be after the call."""
    policy = state.get("policy")
    if policy:
        if state.get("disableSessionTags") is not True:
            raise invalid("disableSessionTags must be true when policy is set", cluster_name)
        try:
            document = json.loads(policy)
        except ValueError:
            raise invalid("policy is not a valid JSON policy document", cluster_name)
        if not isinstance(document, dict):
            raise invalid("policy is not a valid JSON policy document", cluster_name)
    config = state.get("workloadIdentityConfig")
    if config and config.get("enabled"):
        if state.get("targetRoleArn"):
            raise invalid("targetRoleArn cannot be set while workloadIdentityConfig is enabled", cluster_name)
        missing = [k for k in ("templateArn", "providerArn") if not config.get(k)]
        if missing:
            raise invalid(
                f"workloadIdentityConfig.{missing[0]} is required to enable workload identity", cluster_name
            )


def merge_workload_identity(
    cluster_name: str, current: dict[str, Any] | None, requested: dict[str, Any]
) -> dict[str, Any]:
    given = [k for k in ("templateArn", "providerArn") if k in requested]
    if len(given) == 1:
        raise invalid(
            "workloadIdentityConfig: templateArn and providerArn must be provided together", cluster_name
        )
    merged = dict(current or {"enabled": False})
    merged.update(requested)
    cleared = given and not requested["templateArn"] and not requested["providerArn"]
    if cleared and merged.get("enabled"):
        raise invalid(
            "workloadIdentityConfig: templateArn and providerArn can be cleared only while workload identity is disabled",
            cluster_name,
        )
    return merged


def external_id(region: str, account: str, association: dict[str, Any]) -> str:
    return f"{region}/{account}/{association['clusterName']}/{association['namespace']}/{association['serviceAccount']}"


# ---------------------------------------------------------------------------------------------
# The operations.
# ---------------------------------------------------------------------------------------------


def create_association(ctx: EKSResponse, p: dict[str, Any]) -> ActionResult:
    account, region, cluster_name = ctx.current_account, ctx.region, p["clusterName"]
    entry = cluster_associations(account, region, cluster_name)
    token = p.get("clientRequestToken")
    if token:
        for existing in entry.by_id.values():
            if (
                existing.get("clientRequestToken") == token
                and existing["namespace"] == p["namespace"]
                and existing["serviceAccount"] == p["serviceAccount"]
            ):
                return ActionResult({"association": shaped(existing)})  # an idempotent retry
    for field in ("namespace", "serviceAccount"):
        if not p[field]:
            raise invalid(f"{field} must not be empty", cluster_name)
    check_role(account, region, cluster_name, p["roleArn"])
    check_target_role(cluster_name, p.get("targetRoleArn", ""))
    if p.get("targetRoleArn") and "workloadIdentityConfig" in p:
        raise invalid("targetRoleArn and workloadIdentityConfig cannot both be set", cluster_name)
    config = merge_workload_identity(cluster_name, None, p["workloadIdentityConfig"]) if "workloadIdentityConfig" in p else None
    state = {
        "policy": p.get("policy"),
        "disableSessionTags": p.get("disableSessionTags", False),
        "targetRoleArn": p.get("targetRoleArn"),
        "workloadIdentityConfig": config,
    }
    check_state(cluster_name, state)
    for existing in entry.by_id.values():
        if existing["namespace"] == p["namespace"] and existing["serviceAccount"] == p["serviceAccount"]:
            raise ApiError(
                "ResourceInUseException", f"Association already exists: {existing['associationId']}", cluster_name
            )
    limit = quota()
    if len(entry.by_id) >= limit:
        raise ApiError(
            "ResourceLimitExceededException",
            f"Pod Identity associations per cluster quota exceeded: cluster {cluster_name} already has {limit}",
            cluster_name,
        )
    delay = os.environ.get(CREATE_DELAY_ENV)
    if delay:
        time.sleep(float(delay))
    association_id = new_association_id(entry)
    created = now()
    entry.sequence += 1
    association = {
        "clusterName": cluster_name,
        "namespace": p["namespace"],
        "serviceAccount": p["serviceAccount"],
        "roleArn": p["roleArn"],
        "associationArn": f"arn:{get_partition(region)}:eks:{region}:{account}:podidentityassociation/{cluster_name}/{association_id}",
        "associationId": association_id,
        "tags": dict(p.get("tags") or {}),
        "createdAt": created,
        "modifiedAt": created,
        "ownerArn": None,
        "disableSessionTags": state["disableSessionTags"],
        "targetRoleArn": p.get("targetRoleArn") or None,
        "externalId": None,
        "policy": p.get("policy") or None,
        "workloadIdentityConfig": config,
        "clientRequestToken": token,
        "sequence": entry.sequence,
    }
    if association["targetRoleArn"]:
        association["externalId"] = external_id(region, account, association)
    entry.by_id[association_id] = association
    return ActionResult({"association": shaped(association)})


def describe_association(ctx: EKSResponse, p: dict[str, Any]) -> ActionResult:
    entry = cluster_associations(ctx.current_account, ctx.region, p["clusterName"])
    return ActionResult({"association": shaped(find_association(entry, p["clusterName"], p["associationId"]))})


UPDATABLE = ("roleArn", "targetRoleArn", "disableSessionTags", "policy", "workloadIdentityConfig")


def update_association(ctx: EKSResponse, p: dict[str, Any]) -> ActionResult:
    account, region, cluster_name = ctx.current_account, ctx.region, p["clusterName"]
    entry = cluster_associations(account, region, cluster_name)
    association = find_association(entry, cluster_name, p["associationId"])
    if not any(field in p for field in UPDATABLE):
        raise invalid(
            "An update must set at least one of roleArn, targetRoleArn, disableSessionTags, policy, workloadIdentityConfig",
            cluster_name,
        )
    if "roleArn" in p:
        check_role(account, region, cluster_name, p["roleArn"])
    if "targetRoleArn" in p:
        check_target_role(cluster_name, p["targetRoleArn"])
    state = {
        "policy": p["policy"] if "policy" in p else association["policy"],
        "disableSessionTags": p.get("disableSessionTags", association["disableSessionTags"]),
        "targetRoleArn": p["targetRoleArn"] if "targetRoleArn" in p else association["targetRoleArn"],
        "workloadIdentityConfig": association["workloadIdentityConfig"],
    }
    if "workloadIdentityConfig" in p:
        state["workloadIdentityConfig"] = merge_workload_identity(
            cluster_name, association["workloadIdentityConfig"], p["workloadIdentityConfig"]
        )
    check_state(cluster_name, state)
    if "roleArn" in p:
        association["roleArn"] = p["roleArn"]
    association["disableSessionTags"] = state["disableSessionTags"]
    association["policy"] = state["policy"] or None  # "" clears it
    association["targetRoleArn"] = state["targetRoleArn"] or None  # "" clears it
    association["externalId"] = external_id(region, account, association) if association["targetRoleArn"] else None
    association["workloadIdentityConfig"] = state["workloadIdentityConfig"]
    association["modifiedAt"] = now()
    return ActionResult({"association": shaped(association)})


def delete_association(ctx: EKSResponse, p: dict[str, Any]) -> ActionResult:
    entry = cluster_associations(ctx.current_account, ctx.region, p["clusterName"])
    association = find_association(entry, p["clusterName"], p["associationId"])
    del entry.by_id[p["associationId"]]
    return ActionResult({"association": shaped(association)})


def _encode_token(sequence: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": sequence}).encode()).decode()


def _decode_token(cluster_name: str, token: str) -> int:
    try:
        after = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
        if isinstance(after, int) and not isinstance(after, bool):
            return after
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    raise invalid(f"nextToken is not valid: {token}", cluster_name)


def list_associations(ctx: EKSResponse, p: dict[str, Any]) -> ActionResult:
    cluster_name = p["clusterName"]
    entry = cluster_associations(ctx.current_account, ctx.region, cluster_name)
    after = _decode_token(cluster_name, p["nextToken"]) if p.get("nextToken") else 0
    limit = p.get("maxResults", 100)
    matching = [
        a
        for a in entry.by_id.values()
        if a["sequence"] > after
        and ("namespace" not in p or a["namespace"] == p["namespace"])
        and ("serviceAccount" not in p or a["serviceAccount"] == p["serviceAccount"])
    ]
    page = matching[:limit]
    result: dict[str, Any] = {"associations": [summary(a) for a in page]}
    if len(matching) > limit:
        result["nextToken"] = _encode_token(page[-1]["sequence"])
    return ActionResult(result)


# Tags on association ARNs. Other ARNs (clusters) go to moto's own implementation.


def _association_by_arn(ctx: EKSResponse, arn: str) -> dict[str, Any] | None:
    match = ASSOCIATION_ARN.match(arn)
    if not match:
        return None
    not_found = ApiError("NotFoundException", f"Resource was not found: {arn}")
    if match["account"] != ctx.current_account or match["region"] != ctx.region:
        raise not_found
    try:
        entry = cluster_associations(match["account"], match["region"], match["cluster"])
    except ApiError:
        raise not_found
    association = entry.by_id.get(match["id"])
    if association is None or association["associationArn"] != arn:
        raise not_found
    return association


def tag_resource(ctx: EKSResponse, p: dict[str, Any]) -> ActionResult | None:
    association = _association_by_arn(ctx, p["resourceArn"])
    if association is None:
        return None
    tags = dict(association["tags"])
    tags.update(p["tags"])
    if len([k for k in tags if not k.lower().startswith("aws:")]) > 50:
        raise ApiError("BadRequestException", "A resource can have at most 50 tags")
    association["tags"] = tags
    return EmptyResult()


def untag_resource(ctx: EKSResponse, p: dict[str, Any]) -> ActionResult | None:
    association = _association_by_arn(ctx, p["resourceArn"])
    if association is None:
        return None
    for key in p["tagKeys"]:
        association["tags"].pop(key, None)
    return EmptyResult()


def list_tags_for_resource(ctx: EKSResponse, p: dict[str, Any]) -> ActionResult | None:
    association = _association_by_arn(ctx, p["resourceArn"])
    if association is None:
        return None
    return ActionResult({"tags": dict(association["tags"])})


# ---------------------------------------------------------------------------------------------
# Wiring into moto.
# ---------------------------------------------------------------------------------------------


def _operation_method(
    operation: str, handler: Callable[[EKSResponse, dict[str, Any]], Any], fallback: Callable[..., Any] | None = None
) -> Callable[[EKSResponse], Any]:
    # The error a request failing the model gets: InvalidParameterException, or for the tag
    # operations (whose model lists no such error) BadRequestException.
    errors = {e.name for e in EKS_MODEL.operation_model(operation).error_shapes}
    validation_error = "InvalidParameterException" if "InvalidParameterException" in errors else "BadRequestException"

    def method(self: EKSResponse) -> Any:
        with LOCK:
            try:
                params = parse_request(self, operation, validation_error)
                validate(operation, params, validation_error)
                result = handler(self, params)
            except ApiError as error:
                exception = EksServiceError(error.code, error.message)
                if error.cluster_name:
                    exception.clusterName = error.cluster_name  # type: ignore[attr-defined]
                raise exception
        if result is None and fallback is not None:
            return fallback(self)
        return result

    method.__name__ = xform_name(operation)
    method.__doc__ = f"{operation}: emulated by scripts/moto_server.py"
    return method


def install() -> None:
    prefix = "{0}/clusters/(?P<name>[^/]+)/pod-identity-associations"
    eks_urls.url_paths[prefix + "$"] = eks_urls.response.dispatch
    eks_urls.url_paths[prefix + "/(?P<associationId>[^/]+)$"] = eks_urls.response.dispatch
    operations = {
        "CreatePodIdentityAssociation": create_association,
        "DescribePodIdentityAssociation": describe_association,
        "UpdatePodIdentityAssociation": update_association,
        "DeletePodIdentityAssociation": delete_association,
        "ListPodIdentityAssociations": list_associations,
    }
    for operation, handler in operations.items():
        setattr(EKSResponse, xform_name(operation), _operation_method(operation, handler))
    tag_operations = {
        "TagResource": tag_resource,
        "UntagResource": untag_resource,
        "ListTagsForResource": list_tags_for_resource,
    }
    for operation, handler in tag_operations.items():
        name = xform_name(operation)
        original = getattr(EKSResponse, name)
        setattr(EKSResponse, name, _operation_method(operation, handler, fallback=original))


def main() -> None:
    install()
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
