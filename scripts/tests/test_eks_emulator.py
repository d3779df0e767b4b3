"""The EKS Pod Identity emulator in scripts/moto_server.py, driven through boto3 against the
launcher running as a subprocess (pytest scripts/tests/test_eks_emulator.py)."""

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

import boto3
import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LAUNCHER = os.path.join(ROOT, "scripts", "moto_server.py")
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
OTHER_ACCOUNT = "222222222222"
QUOTA = 3  # PODIDENTITY_TEST_EKS_ASSOCIATIONS_PER_CLUSTER for this server
POD_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
        }
    ],
}
EKS_MODEL = botocore.session.get_session().get_service_model("eks")


@contextlib.contextmanager
def launch(**env_extra):
    """The launcher on a free port, as scripts/with-moto starts it; yields its endpoint."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, **env_extra)
    env.pop("MOTO_ACCOUNT_ID", None)
    log = tempfile.TemporaryFile()  # not a pipe: moto logs every request, a pipe would fill
    server = subprocess.Popen(
        [sys.executable, LAUNCHER, "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    log.seek(0)
                    pytest.fail("the launcher exited: " + log.read().decode(errors="replace"))
                time.sleep(0.1)
        else:
            pytest.fail("the launcher did not answer")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def endpoint():
    with launch(PODIDENTITY_TEST_EKS_ASSOCIATIONS_PER_CLUSTER=str(QUOTA)) as url:
        yield url


def client(endpoint, service, validate=True, **credentials):
    credentials = credentials or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        config=Config(parameter_validation=validate, retries={"max_attempts": 1}),
        **credentials,
    )


@pytest.fixture(scope="module")
def eks(endpoint):
    return client(endpoint, "eks")


@pytest.fixture(scope="module")
def eks_raw(endpoint):
    """No client-side validation: what the server does with requests that break the model."""
    return client(endpoint, "eks", validate=False)


@pytest.fixture(scope="module")
def iam(endpoint):
    return client(endpoint, "iam")


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_role(iam, trust=POD_TRUST):
    return iam.create_role(RoleName=unique("role"), AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


@pytest.fixture
def cluster(eks, iam):
    name = unique("cluster")
    eks.create_cluster(name=name, roleArn=make_role(iam), resourcesVpcConfig={})
    return name


@pytest.fixture
def role(iam):
    return make_role(iam)


def error_of(call, *args, **kwargs):
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"], response["Error"]["Message"]


def signed(endpoint, method, path, body=None):
    """A raw, SigV4-signed request: (status, headers, JSON body)."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    request = AWSRequest(method=method, url=endpoint + path, data=data, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("testing", "testing"), "eks", REGION).add_auth(request)
    prepared = request.prepare()
    raw = urllib.request.Request(prepared.url, data=prepared.body, headers=dict(prepared.headers), method=method)
    try:
        with urllib.request.urlopen(raw, timeout=10) as response:
            return response.status, response.headers, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read() or b"{}")


def associations(eks, cluster, **filters):
    return eks.list_pod_identity_associations(clusterName=cluster, **filters)["associations"]


def create(eks, cluster, role, namespace="ns", service_account="sa", **extra):
    return eks.create_pod_identity_association(
        clusterName=cluster, namespace=namespace, serviceAccount=service_account, roleArn=role, **extra
    )["association"]


# --- create / describe / list / update / delete ---------------------------------------------


def test_create_and_describe(endpoint, eks, cluster, role):
    before = time.time()
    created = create(eks, cluster, role, tags={"team": "a"})
    assert re.fullmatch(r"a-[a-z0-9]{17}", created["associationId"])
    assert created["associationArn"] == (
        f"arn:aws:eks:{REGION}:{ACCOUNT}:podidentityassociation/{cluster}/{created['associationId']}"
    )
    assert (created["clusterName"], created["namespace"], created["serviceAccount"]) == (cluster, "ns", "sa")
    assert created["roleArn"] == role
    assert created["tags"] == {"team": "a"}
    assert created["disableSessionTags"] is False
    assert created["createdAt"] == created["modifiedAt"]
    assert before - 1 <= created["createdAt"].timestamp() <= time.time() + 1
    assert "targetRoleArn" not in created and "externalId" not in created and "policy" not in created
    described = eks.describe_pod_identity_association(clusterName=cluster, associationId=created["associationId"])
    assert described["association"] == created

    # On the wire: only the model's members, timestamps as epoch seconds (rest-json default).
    status, headers, body = signed(
        endpoint, "GET", f"/clusters/{cluster}/pod-identity-associations/{created['associationId']}"
    )
    assert status == 200
    members = set(EKS_MODEL.shape_for("PodIdentityAssociation").members)
    assert set(body) == {"association"}
    assert set(body["association"]) <= members
    assert isinstance(body["association"]["createdAt"], (int, float))
    assert isinstance(body["association"]["modifiedAt"], (int, float))


def test_list_filters_and_pagination(endpoint, eks, cluster, role):
    made = [
        create(eks, cluster, role, "ns-a", "sa-1"),
        create(eks, cluster, role, "ns-a", "sa-2"),
        create(eks, cluster, role, "ns-b", "sa-1"),
    ]
    listed = associations(eks, cluster)
    assert [a["associationId"] for a in listed] == [a["associationId"] for a in made]
    summary_members = set(EKS_MODEL.shape_for("PodIdentityAssociationSummary").members)
    for summary in listed:
        assert set(summary) <= summary_members
        assert "roleArn" not in summary
        assert set(summary) == {"clusterName", "namespace", "serviceAccount", "associationArn", "associationId"}
    assert [a["serviceAccount"] for a in associations(eks, cluster, namespace="ns-a")] == ["sa-1", "sa-2"]
    assert [a["namespace"] for a in associations(eks, cluster, serviceAccount="sa-1")] == ["ns-a", "ns-b"]
    assert [a["associationId"] for a in associations(eks, cluster, namespace="ns-b", serviceAccount="sa-1")] == [
        made[2]["associationId"]
    ]
    assert associations(eks, cluster, namespace="nothing") == []
    # On the wire, too (boto3 drops members its model lacks): summaries carry no roleArn.
    status, _, body = signed(endpoint, "GET", f"/clusters/{cluster}/pod-identity-associations")
    assert status == 200 and set(body) == {"associations"}
    assert all(set(a) == {"clusterName", "namespace", "serviceAccount", "associationArn", "associationId"}
               for a in body["associations"])

    first = eks.list_pod_identity_associations(clusterName=cluster, maxResults=2)
    assert [a["associationId"] for a in first["associations"]] == [a["associationId"] for a in made[:2]]
    second = eks.list_pod_identity_associations(clusterName=cluster, maxResults=2, nextToken=first["nextToken"])
    assert [a["associationId"] for a in second["associations"]] == [made[2]["associationId"]]
    assert "nextToken" not in second
    # The paginator walks the same pages.
    pages = eks.get_paginator("list_pod_identity_associations").paginate(
        clusterName=cluster, PaginationConfig={"PageSize": 1}
    )
    assert [a["associationId"] for page in pages for a in page["associations"]] == [
        a["associationId"] for a in made
    ]
    status, code, message = error_of(
        eks.list_pod_identity_associations, clusterName=cluster, nextToken="not-a-token"
    )
    assert (status, code) == (400, "InvalidParameterException") and "nextToken" in message


def test_update(eks, iam, cluster, role):
    created = create(eks, cluster, role)
    association_id = created["associationId"]
    other_role = make_role(iam)
    time.sleep(0.02)
    updated = eks.update_pod_identity_association(
        clusterName=cluster, associationId=association_id, roleArn=other_role
    )["association"]
    assert updated["roleArn"] == other_role
    assert updated["createdAt"] == created["createdAt"]
    assert updated["modifiedAt"] > created["modifiedAt"]
    assert (updated["namespace"], updated["serviceAccount"]) == ("ns", "sa")
    assert eks.describe_pod_identity_association(clusterName=cluster, associationId=association_id)[
        "association"
    ] == updated

    # The same value again is accepted.
    again = eks.update_pod_identity_association(
        clusterName=cluster, associationId=association_id, roleArn=other_role, disableSessionTags=False
    )["association"]
    assert again["roleArn"] == other_role and again["disableSessionTags"] is False

    # A target role gives the external id; an empty string clears both.
    target = f"arn:aws:iam::{OTHER_ACCOUNT}:role/target"
    with_target = eks.update_pod_identity_association(
        clusterName=cluster, associationId=association_id, targetRoleArn=target
    )["association"]
    assert with_target["targetRoleArn"] == target
    assert with_target["externalId"] == f"{REGION}/{ACCOUNT}/{cluster}/ns/sa"
    cleared = eks.update_pod_identity_association(
        clusterName=cluster, associationId=association_id, targetRoleArn=""
    )["association"]
    assert "targetRoleArn" not in cleared and "externalId" not in cleared

    # A session policy needs disableSessionTags: true, in the resulting association.
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
    status, code, message = error_of(
        eks.update_pod_identity_association, clusterName=cluster, associationId=association_id, policy=policy
    )
    assert (status, code) == (400, "InvalidParameterException") and "disableSessionTags" in message
    with_policy = eks.update_pod_identity_association(
        clusterName=cluster, associationId=association_id, policy=policy, disableSessionTags=True
    )["association"]
    assert with_policy["policy"] == policy and with_policy["disableSessionTags"] is True
    status, code, message = error_of(
        eks.update_pod_identity_association,
        clusterName=cluster,
        associationId=association_id,
        disableSessionTags=False,
    )
    assert (status, code) == (400, "InvalidParameterException") and "disableSessionTags" in message

    # The role checks of Create apply; a refused update changes nothing.
    untrusted = make_role(iam, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    status, code, message = error_of(
        eks.update_pod_identity_association, clusterName=cluster, associationId=association_id, roleArn=untrusted
    )
    assert (status, code, message) == (400, "InvalidParameterException", "Trust policy of the role provided is invalid")
    status, code, message = error_of(
        eks.update_pod_identity_association, clusterName=cluster, associationId=association_id
    )
    assert (status, code) == (400, "InvalidParameterException")
    assert eks.describe_pod_identity_association(clusterName=cluster, associationId=association_id)[
        "association"
    ] == with_policy


def test_delete_returns_the_association(eks, cluster, role):
    created = create(eks, cluster, role, tags={"k": "v"})
    deleted = eks.delete_pod_identity_association(clusterName=cluster, associationId=created["associationId"])
    assert deleted["association"] == created
    assert associations(eks, cluster) == []
    for call in (eks.describe_pod_identity_association, eks.delete_pod_identity_association):
        status, code, _ = error_of(call, clusterName=cluster, associationId=created["associationId"])
        assert (status, code) == (404, "ResourceNotFoundException")
    # The pair is free again.
    assert create(eks, cluster, role)["associationId"] != created["associationId"]


# --- errors ----------------------------------------------------------------------------------


def test_unknown_cluster_and_association(eks, cluster, role):
    missing = unique("missing")
    calls = [
        (eks.create_pod_identity_association, dict(namespace="ns", serviceAccount="sa", roleArn=role)),
        (eks.list_pod_identity_associations, {}),
        (eks.describe_pod_identity_association, dict(associationId="a-aaaaaaaaaaaaaaaaa")),
        (eks.update_pod_identity_association, dict(associationId="a-aaaaaaaaaaaaaaaaa", roleArn=role)),
        (eks.delete_pod_identity_association, dict(associationId="a-aaaaaaaaaaaaaaaaa")),
    ]
    for call, kwargs in calls:
        status, code, message = error_of(call, clusterName=missing, **kwargs)
        assert (status, code) == (404, "ResourceNotFoundException")
        assert message == f"No cluster found for name: {missing}."
    status, code, message = error_of(
        eks.describe_pod_identity_association, clusterName=cluster, associationId="a-aaaaaaaaaaaaaaaaa"
    )
    assert (status, code) == (404, "ResourceNotFoundException") and "a-aaaaaaaaaaaaaaaaa" in message


def test_one_association_per_service_account(eks, cluster, role):
    first = create(eks, cluster, role)
    status, code, message = error_of(create, eks, cluster, role)
    assert (status, code, message) == (409, "ResourceInUseException", f"Association already exists: {first['associationId']}")
    assert len(associations(eks, cluster)) == 1
    # Another service account, or the same name in another namespace, is another association.
    create(eks, cluster, role, "ns", "other")
    create(eks, cluster, role, "other", "sa")
    assert len(associations(eks, cluster)) == 3


def test_concurrent_creates_make_one_association():
    # A server whose Create waits between its checks and storing the association: without
    # the emulator's lock, all of these would pass the duplicate check.
    with launch(PODIDENTITY_TEST_EKS_CREATE_DELAY="0.2") as slow:
        _concurrent_creates(slow)


def _concurrent_creates(endpoint):
    eks, iam = client(endpoint, "eks"), client(endpoint, "iam")
    cluster, role = unique("cluster"), make_role(iam)
    eks.create_cluster(name=cluster, roleArn=make_role(iam), resourcesVpcConfig={})
    results = []
    clients = [client(endpoint, "eks") for _ in range(4)]  # boto3 makes clients one at a time

    def attempt(eks):
        try:
            create(eks, cluster, role)
            results.append("created")
        except ClientError as error:
            results.append(error.response["Error"]["Code"])

    threads = [threading.Thread(target=attempt, args=(eks,)) for eks in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["ResourceInUseException"] * 3 + ["created"]
    assert len(associations(eks, cluster)) == 1


def test_client_request_token_is_idempotent(eks, cluster, role):
    first = create(eks, cluster, role, clientRequestToken="token-1")
    assert create(eks, cluster, role, clientRequestToken="token-1") == first
    status, code, _ = error_of(create, eks, cluster, role, clientRequestToken="token-2")
    assert (status, code) == (409, "ResourceInUseException")


def test_quota_per_cluster(eks, cluster, role):
    made = [create(eks, cluster, role, "ns", f"sa-{i}") for i in range(QUOTA)]
    status, code, _ = error_of(create, eks, cluster, role, "ns", "one-more")
    assert (status, code) == (400, "ResourceLimitExceededException")
    assert len(associations(eks, cluster)) == QUOTA
    eks.delete_pod_identity_association(clusterName=cluster, associationId=made[0]["associationId"])
    create(eks, cluster, role, "ns", "one-more")


def test_policy_requires_disabled_session_tags(eks, cluster, role):
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})
    for extra in ({}, {"disableSessionTags": False}):
        status, code, message = error_of(create, eks, cluster, role, policy=policy, **extra)
        assert (status, code) == (400, "InvalidParameterException")
        assert message == "disableSessionTags must be true when policy is set"
    status, code, message = error_of(create, eks, cluster, role, policy="not json", disableSessionTags=True)
    assert (status, code) == (400, "InvalidParameterException") and "policy" in message
    assert associations(eks, cluster) == []
    created = create(eks, cluster, role, policy=policy, disableSessionTags=True)
    assert (created["policy"], created["disableSessionTags"]) == (policy, True)


def test_target_role(eks, cluster, role):
    target = f"arn:aws:iam::{OTHER_ACCOUNT}:role/reader"
    status, code, message = error_of(
        create, eks, cluster, role, targetRoleArn=target,
        workloadIdentityConfig={"enabled": True, "templateArn": "arn:t", "providerArn": "arn:p"},
    )
    assert (status, code) == (400, "InvalidParameterException") and "targetRoleArn" in message
    status, code, message = error_of(
        create, eks, cluster, role, targetRoleArn=target, workloadIdentityConfig={"enabled": False}
    )
    assert (status, code) == (400, "InvalidParameterException") and "targetRoleArn" in message
    status, code, message = error_of(create, eks, cluster, role, targetRoleArn="not-an-arn")
    assert (status, code) == (400, "InvalidParameterException") and "targetRoleArn" in message
    created = create(eks, cluster, role, "team", "reader", targetRoleArn=target)
    assert created["targetRoleArn"] == target
    assert created["externalId"] == f"{REGION}/{ACCOUNT}/{cluster}/team/reader"


def test_workload_identity_config(eks, cluster, role):
    status, code, message = error_of(create, eks, cluster, role, workloadIdentityConfig={"enabled": True})
    assert (status, code) == (400, "InvalidParameterException") and "templateArn" in message
    config = {"enabled": True, "templateArn": "arn:aws:iam::123456789012:template/t", "providerArn": "arn:p"}
    created = create(eks, cluster, role, workloadIdentityConfig=config)
    assert created["workloadIdentityConfig"] == config
    status, code, _ = error_of(
        eks.update_pod_identity_association, clusterName=cluster, associationId=created["associationId"],
        targetRoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/reader",
    )
    assert (status, code) == (400, "InvalidParameterException")
    switched = eks.update_pod_identity_association(
        clusterName=cluster, associationId=created["associationId"],
        targetRoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/reader", workloadIdentityConfig={"enabled": False},
    )["association"]
    assert switched["workloadIdentityConfig"] == dict(config, enabled=False)
    assert switched["targetRoleArn"] == f"arn:aws:iam::{OTHER_ACCOUNT}:role/reader"


# --- validation against botocore's model -----------------------------------------------------


def test_requests_breaking_the_model_are_refused(endpoint, eks_raw, cluster, role):
    base = dict(clusterName=cluster, namespace="ns", serviceAccount="sa")
    cases = [
        (dict(base), "roleArn"),  # a required member missing
        (dict(base, roleArn=role, disableSessionTags="yes"), "disableSessionTags"),  # a type
        (dict(base, roleArn=role, tags={}), "tags"),  # map size below min
        (dict(base, roleArn=role, tags={f"k{i}": "v" for i in range(51)}), "tags"),  # above max
        (dict(base, roleArn=role, tags={"k" * 129: "v"}), "tags"),  # key length
        (dict(base, roleArn=role, tags={"k": "v" * 257}), "tags.k"),  # value length
        (dict(base, roleArn=role, workloadIdentityConfig={"enabled": "on"}), "workloadIdentityConfig.enabled"),
    ]
    for params, member in cases:
        status, code, message = error_of(eks_raw.create_pod_identity_association, **params)
        assert (status, code) == (400, "InvalidParameterException"), params
        assert member in message, (member, message)
    for max_results in (0, 101):
        status, code, message = error_of(eks_raw.list_pod_identity_associations, clusterName=cluster, maxResults=max_results)
        assert (status, code) == (400, "InvalidParameterException") and "maxResults" in message

    # Raw requests: no roleArn; a body that is not JSON; maxResults that is not a number.
    path = f"/clusters/{cluster}/pod-identity-associations"
    status, headers, body = signed(endpoint, "POST", path, {"namespace": "ns", "serviceAccount": "sa"})
    assert status == 400 and headers["x-amzn-ErrorType"] == "InvalidParameterException"
    assert "roleArn" in body["message"] and body["clusterName"] == cluster
    status, headers, body = signed(endpoint, "POST", path, b"{not json")
    assert status == 400 and headers["x-amzn-ErrorType"] == "InvalidParameterException"
    status, headers, body = signed(endpoint, "GET", path + "?maxResults=ten")
    assert status == 400 and "maxResults" in body["message"]
    # Nothing was created.
    assert associations(eks_raw, cluster) == []

    # The tag operations' model has BadRequestException for this.
    arn = create(eks_raw, cluster, role)["associationArn"]
    status, code, message = error_of(eks_raw.tag_resource, resourceArn=arn, tags={})
    assert (status, code) == (400, "BadRequestException") and "tags" in message
    assert eks_raw.list_tags_for_resource(resourceArn=arn)["tags"] == {}


# --- roles and trust policies ----------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": ["sts:AssumeRole", "sts:TagSession"]},
        {"Effect": "Allow", "Principal": {"Service": ["ec2.amazonaws.com", "pods.eks.amazonaws.com"]}, "Action": "sts:*"},
        {"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "*"},
    ],
)
def test_trust_policies_that_admit_pod_identity(eks, iam, cluster, statement):
    role = make_role(iam, {"Version": "2012-10-17", "Statement": [statement]})
    assert create(eks, cluster, role)["roleArn"] == role


@pytest.mark.parametrize(
    "statements",
    [
        [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": ["sts:AssumeRole", "sts:TagSession"]}],
        [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:AssumeRole"}],
        [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:TagSession"}],
        [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:*"}],
        [
            {"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:*"},
            {"Effect": "Deny", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:TagSession"},
        ],
    ],
)
def test_trust_policies_that_do_not(eks, iam, cluster, statements):
    role = make_role(iam, {"Version": "2012-10-17", "Statement": statements})
    status, code, message = error_of(create, eks, cluster, role)
    assert (status, code, message) == (400, "InvalidParameterException", "Trust policy of the role provided is invalid")
    assert associations(eks, cluster) == []


def test_role_must_exist_in_the_cluster_account(eks, cluster):
    missing = f"arn:aws:iam::{ACCOUNT}:role/{unique('nobody')}"
    status, code, message = error_of(create, eks, cluster, missing)
    assert (status, code) == (400, "InvalidParameterException") and missing in message
    elsewhere = f"arn:aws:iam::{OTHER_ACCOUNT}:role/somebody"
    status, code, message = error_of(create, eks, cluster, elsewhere)
    assert (status, code) == (400, "InvalidParameterException") and elsewhere in message
    assert "same account as the cluster" in message
    status, code, message = error_of(create, eks, cluster, "not-an-arn")
    assert (status, code) == (400, "InvalidParameterException") and "roleArn" in message


# --- accounts, tags, clusters ----------------------------------------------------------------


def test_accounts_are_separate(endpoint, eks, iam, cluster, role):
    mine = create(eks, cluster, role)
    credentials = client(endpoint, "sts").assume_role(
        RoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/admin", RoleSessionName="test"
    )["Credentials"]
    keys = dict(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    other_eks, other_iam = client(endpoint, "eks", **keys), client(endpoint, "iam", **keys)
    assert client(endpoint, "sts", **keys).get_caller_identity()["Account"] == OTHER_ACCOUNT
    # The same cluster name in the other account: its own, empty, set of associations.
    status, code, _ = error_of(other_eks.list_pod_identity_associations, clusterName=cluster)
    assert (status, code) == (404, "ResourceNotFoundException")
    other_eks.create_cluster(name=cluster, roleArn=make_role(other_iam), resourcesVpcConfig={})
    assert associations(other_eks, cluster) == []
    status, code, _ = error_of(
        other_eks.describe_pod_identity_association, clusterName=cluster, associationId=mine["associationId"]
    )
    assert (status, code) == (404, "ResourceNotFoundException")
    status, code, _ = error_of(other_eks.list_tags_for_resource, resourceArn=mine["associationArn"])
    assert (status, code) == (404, "NotFoundException")
    # A role of the first account is not usable there; its own role is.
    status, code, _ = error_of(create, other_eks, cluster, role)
    assert (status, code) == (400, "InvalidParameterException")
    theirs = create(other_eks, cluster, make_role(other_iam))
    assert theirs["associationArn"].startswith(f"arn:aws:eks:{REGION}:{OTHER_ACCOUNT}:podidentityassociation/")
    assert [a["associationId"] for a in associations(eks, cluster)] == [mine["associationId"]]


def test_tags(eks, cluster, role):
    arn = create(eks, cluster, role, tags={"a": "1", "b": "2"})["associationArn"]
    assert eks.list_tags_for_resource(resourceArn=arn)["tags"] == {"a": "1", "b": "2"}
    eks.tag_resource(resourceArn=arn, tags={"b": "3", "c": "4"})
    eks.untag_resource(resourceArn=arn, tagKeys=["a"])
    assert eks.list_tags_for_resource(resourceArn=arn)["tags"] == {"b": "3", "c": "4"}
    association_id = arn.rsplit("/", 1)[1]
    assert eks.describe_pod_identity_association(clusterName=cluster, associationId=association_id)[
        "association"
    ]["tags"] == {"b": "3", "c": "4"}
    status, code, _ = error_of(eks.tag_resource, resourceArn=arn, tags={f"k{i}": "v" for i in range(49)})
    assert (status, code) == (400, "BadRequestException")
    unknown = arn[: -len(association_id)] + "a-zzzzzzzzzzzzzzzzz"
    for call, kwargs in (
        (eks.list_tags_for_resource, {}),
        (eks.tag_resource, {"tags": {"x": "y"}}),
        (eks.untag_resource, {"tagKeys": ["x"]}),
    ):
        status, code, _ = error_of(call, resourceArn=unknown, **kwargs)
        assert (status, code) == (404, "NotFoundException")
    # Cluster ARNs still reach moto's own tagging.
    cluster_arn = eks.describe_cluster(name=cluster)["cluster"]["arn"]
    eks.tag_resource(resourceArn=cluster_arn, tags={"owner": "me"})
    assert eks.list_tags_for_resource(resourceArn=cluster_arn)["tags"]["owner"] == "me"


def test_deleting_a_cluster_deletes_its_associations(eks, iam, cluster, role):
    create(eks, cluster, role)
    eks.delete_cluster(name=cluster)
    status, code, _ = error_of(eks.list_pod_identity_associations, clusterName=cluster)
    assert (status, code) == (404, "ResourceNotFoundException")
    eks.create_cluster(name=cluster, roleArn=make_role(iam), resourcesVpcConfig={})
    assert associations(eks, cluster) == []
