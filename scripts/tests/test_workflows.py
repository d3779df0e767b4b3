"""The GitHub workflows, read as data: the facts a schema or zizmor would not catch.
The release pushes the image where the chart looks for it and the chart where the docs
install it from, builds both architectures, names its archives as the krew manifest
expects; CI runs .ci/run; every action is pinned to a commit
(.venv/bin/python -m pytest scripts/tests -q)."""

import pathlib
import re
import shlex

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
CHART = ROOT / "charts" / "pod-identity-operator"
ARCHES = {"amd64", "arm64"}


def load(name):
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(workflow):
    # YAML 1.1 reads the key `on` as true.
    return workflow.get("on", workflow.get(True))


def steps(job):
    return job.get("steps", [])


def runs(job):
    return [step["run"] for step in steps(job) if "run" in step]


def expand(text, *envs):
    """$NAME and ${NAME} replaced from the workflow's and the job's env, as the shell would."""
    env = {}
    for e in envs:
        env.update(e or {})

    def value(match):
        name = match.group(1) or match.group(2)
        return str(env[name]) if name in env else match.group(0)

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def jobs_running(workflow, command):
    return {name: job for name, job in workflow["jobs"].items() if any(command in run for run in runs(job))}


def matrix_arches(job):
    return {entry["arch"] for entry in job["strategy"]["matrix"]["include"]}


@pytest.fixture(scope="module")
def release():
    return load("release.yml")


@pytest.fixture(scope="module")
def ci():
    return load("ci.yml")


def test_release_runs_on_version_tags_only(release):
    on = triggers(release)
    assert set(on) == {"push"}
    assert on["push"] == {"tags": ["v*"]}


def test_release_pushes_the_image_to_the_repository_the_chart_names(release):
    repository = yaml.safe_load((CHART / "values.yaml").read_text())["image"]["repository"]
    pushed, indexed = set(), set()
    for job in release["jobs"].values():
        for run in runs(job):
            text = expand(run, release.get("env"), job.get("env"))
            pushed |= set(re.findall(r"docker://([^\s\"':@]+)", text))
            indexed |= set(re.findall(r"imagetools create --tag \"?([^\s\"':@]+)", text))
    assert pushed == {repository}, "skopeo pushes the images elsewhere than values.yaml's image.repository"
    assert indexed == {repository}, "the multi-arch index is tagged elsewhere than values.yaml's image.repository"


def test_release_builds_binary_and_image_for_amd64_and_arm64(release):
    builds = jobs_running(release, "cargo auditable build --release")
    images = jobs_running(release, "scripts/image")
    assert builds and images
    for name, job in {**builds, **images}.items():
        assert matrix_arches(job) == ARCHES, f"job {name} does not build for both {sorted(ARCHES)}"
    for name, job in builds.items():
        for entry in job["strategy"]["matrix"]["include"]:
            if entry["arch"] == "arm64":
                # A native arm64 runner, or a cross build for aarch64: never an amd64 binary labelled arm64.
                native = entry["runner"].endswith("-arm")
                cross = any("aarch64" in run for run in runs(job))
                assert native or cross, f"job {name} builds arm64 on {entry['runner']} without an aarch64 target"
    for name, job in images.items():
        invocation = next(run for run in runs(job) if "scripts/image" in run)
        arch = re.search(r"--arch\s+\"?\$\{?(\w+)", invocation)
        assert arch, f"job {name} runs scripts/image without --arch from the matrix"
        assert job["env"][arch.group(1)] == "${{ matrix.arch }}"
    # And both images reach the registry.
    publish = jobs_running(release, "skopeo copy")
    assert len(publish) == 1
    (job,) = publish.values()
    push = next(run for run in runs(job) if "skopeo copy" in run)
    loop = re.search(r"for arch in ([\w ]+); do\s+skopeo copy", push)
    assert loop and set(loop.group(1).split()) == ARCHES, "skopeo does not push both architectures"
    index = re.search(r"imagetools create(?:[^\n]*\\\n)*[^\n]*", push)  # with its continued lines
    assert index, "no multi-arch index made"
    index = index.group(0)
    assert all(f"{arch}.digest" in index for arch in ARCHES), "the index does not list both architectures"


def test_release_pushes_the_chart_to_an_oci_registry_where_the_docs_install_from(release):
    chart_name = yaml.safe_load((CHART / "Chart.yaml").read_text())["name"]
    targets = []
    for job in release["jobs"].values():
        for run in runs(job):
            for line in expand(run, release.get("env"), job.get("env")).splitlines():
                if re.match(r"\s*helm push\b", line):
                    # helm push CHART TARGET [2>&1 | tee LOG]
                    words = [w for w in shlex.split(line.split("|")[0]) if not re.match(r"\d*>", w)]
                    targets.append(words[-1])
    assert targets, "the release pushes no chart"
    for target in targets:
        assert target.startswith("oci://"), f"helm push to {target}, not an OCI registry"
        install = f"helm install pio {target}/{chart_name} "
        assert install in (ROOT / "docs" / "install.md").read_text(), f"docs/install.md does not install from {target}"


def test_release_archives_are_named_as_the_krew_manifest_expects(release):
    template = (ROOT / "dist" / "krew" / "podidentity.yaml").read_text().replace("@VERSION@", "9.9.9")
    expected = {uri.rsplit("/", 1)[-1] for uri in re.findall(r"uri:\s*(\S+)", template)}
    made = set()
    for job in jobs_running(release, "cargo auditable build --release").values():
        for entry in job["strategy"]["matrix"]["include"]:
            env = {**job["env"], "VERSION": "9.9.9", "ARCH": entry["arch"]}
            for run in runs(job):
                # What the archive is written to (tar ... | gzip > "dist/NAME").
                made |= set(re.findall(r">\s*\"?dist/(podidentity_[^\"\s]+\.tar\.gz)", expand(run, env)))
    assert made == expected
    assert jobs_running(release, "scripts/krew-manifest"), "the release does not fill in the krew manifest"


def test_ci_runs_dot_ci_run_on_push_and_pull_request(ci):
    on = triggers(ci)
    assert "push" in on and "pull_request" in on
    lines = [line.strip() for job in ci["jobs"].values() for run in runs(job) for line in run.splitlines()]
    # Run as root (the image's tests need it), with nothing after it.
    assert any(line == ".ci/run" or line.endswith(" .ci/run") for line in lines), lines


def all_uses(workflow):
    for job in workflow["jobs"].values():
        if "uses" in job:  # a reusable workflow
            yield job["uses"]
        for step in steps(job):
            if "uses" in step:
                yield step["uses"]


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_every_action_is_pinned_to_a_commit(name):
    uses = list(all_uses(load(name)))
    assert uses
    for ref in uses:
        if ref.startswith("./"):
            continue
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{name}: {ref} is not pinned to a commit SHA"
    # With the release it is, for people and for update tools.
    for line in (WORKFLOWS / name).read_text().splitlines():
        if re.match(r"\s*(- )?uses:\s*[^.]", line):
            assert re.search(r"@[0-9a-f]{40} # v\d", line), f"{name}: no version comment on: {line.strip()}"
