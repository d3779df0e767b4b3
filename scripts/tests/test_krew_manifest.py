"""scripts/krew-manifest on small archives made here: the filled manifest names the release's
version and assets, with each archive's real sha256; a missing or unsound archive is named
and nothing is written (.venv/bin/python -m pytest scripts/tests -q)."""

import hashlib
import io
import pathlib
import subprocess
import sys
import tarfile

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "krew-manifest"
RELEASES = "https://github.com/pod-identity-operator/pod-identity-operator/releases/download"
VERSION = "1.2.3"


def make_archive(path, arch, mode=0o755, name="kubectl-podidentity"):
    """A .tar.gz as the release packs one: the plugin binary and LICENSE."""
    with tarfile.open(path, "w:gz") as tar:
        for member, data, member_mode in [
            (name, f"#!/bin/sh\necho {arch}\n".encode(), mode),
            ("LICENSE", b"Apache License 2.0\n", 0o644),
        ]:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mode = member_mode
            tar.addfile(info, io.BytesIO(data))
    return path


def archive_name(arch):
    return f"podidentity_{VERSION}_linux_{arch}.tar.gz"


def run(archives, out, version=VERSION):
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--version", version, "--archives", str(archives), "--out", str(out)],
        capture_output=True,
        text=True,
    )


@pytest.fixture
def archives(tmp_path):
    directory = tmp_path / "dist"
    directory.mkdir()
    for arch in ("amd64", "arm64"):
        make_archive(directory / archive_name(arch), arch)
    return directory


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("given", [VERSION, "v" + VERSION])
def test_fills_version_uris_and_real_sums(archives, tmp_path, given):
    out = tmp_path / "podidentity.yaml"
    result = run(archives, out, version=given)
    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load(out.read_text())

    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["kind"] == "Plugin"
    assert manifest["metadata"]["name"] == "podidentity"
    spec = manifest["spec"]
    assert spec["version"] == "v" + VERSION  # krew wants the v
    platforms = {
        (p["selector"]["matchLabels"]["os"], p["selector"]["matchLabels"]["arch"]): p for p in spec["platforms"]
    }
    assert set(platforms) == {("linux", "amd64"), ("linux", "arm64")}
    for (_, arch), platform in platforms.items():
        name = archive_name(arch)
        assert platform["uri"] == f"{RELEASES}/v{VERSION}/{name}"
        assert platform["sha256"] == sha256(archives / name)
        assert platform["bin"] == "kubectl-podidentity"
        assert {"from": "kubectl-podidentity", "to": "."} in platform["files"]
    text = out.read_text()
    assert "@VERSION@" not in text and "@SHA256@" not in text


def test_two_archives_give_two_different_sums(archives, tmp_path):
    out = tmp_path / "podidentity.yaml"
    assert run(archives, out).returncode == 0
    sums = [p["sha256"] for p in yaml.safe_load(out.read_text())["spec"]["platforms"]]
    assert len(set(sums)) == 2


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_missing_archive_is_named_and_nothing_written(archives, tmp_path, arch):
    (archives / archive_name(arch)).unlink()
    out = tmp_path / "podidentity.yaml"
    result = run(archives, out)
    assert result.returncode != 0
    assert archive_name(arch) in result.stderr
    assert "missing" in result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [archives]  # no temporary file left either


def test_existing_manifest_untouched_on_failure(archives, tmp_path):
    (archives / archive_name("arm64")).unlink()
    out = tmp_path / "podidentity.yaml"
    out.write_text("previous\n")
    assert run(archives, out).returncode != 0
    assert out.read_text() == "previous\n"


def test_archive_without_the_plugin_binary_is_refused(archives, tmp_path):
    make_archive(archives / archive_name("arm64"), "arm64", name="podidentity")
    out = tmp_path / "podidentity.yaml"
    result = run(archives, out)
    assert result.returncode != 0
    assert archive_name("arm64") in result.stderr and "kubectl-podidentity" in result.stderr
    assert not out.exists()


def test_plugin_binary_not_executable_is_refused(archives, tmp_path):
    make_archive(archives / archive_name("amd64"), "amd64", mode=0o644)
    out = tmp_path / "podidentity.yaml"
    result = run(archives, out)
    assert result.returncode != 0
    assert "not executable" in result.stderr
    assert not out.exists()


def test_version_must_be_semver(archives, tmp_path):
    out = tmp_path / "podidentity.yaml"
    result = run(archives, out, version="latest")
    assert result.returncode != 0
    assert "semantic version" in result.stderr
    assert not out.exists()
