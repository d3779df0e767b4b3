"""scripts/image: builds the container image once per session from the debug binary
(target/debug/podidentity) and checks what ships in the OCI image archive: the image config,
the labels, the root filesystem, and that the binary runs from it as 65532. Needs root and
mmdebstrap, umoci, jq and skopeo (installed with apt-get when missing); without them the
build tests are skipped, except in CI (CI set), where they fail. The tests of bad arguments
need none of that.

    .venv/bin/python -m pytest scripts/tests/test_image.py -q
"""

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tomllib
import types

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "scripts", "image")
BINARY = os.path.join(ROOT, "target", "debug", "podidentity")
TOOLS = ("mmdebstrap", "umoci", "jq", "skopeo")
REVISION = "0123456789abcdef0123456789abcdef01234567"
EPOCH = "1700000000"
CREATED = "2023-11-14T22:13:20Z"
MULTIARCH = "x86_64-linux-gnu"
PACKAGES = {"base-files", "ca-certificates", "gcc-12-base", "libc6", "libgcc-s1"}

with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
    WORKSPACE = tomllib.load(f)["workspace"]["package"]
VERSION = WORKSPACE["version"]


def unavailable(reason):
    """Skip the build tests, or fail them in CI, where the image must be checked."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (in CI the image tests must run)")
    pytest.skip(reason)


def ensure_tools():
    if os.geteuid() != 0:
        unavailable("scripts/image needs root (mmdebstrap --mode=root, file owners, chroot)")
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, capture_output=True)
        missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        unavailable(f"{', '.join(missing)} cannot be installed (apt-get install {' '.join(TOOLS)})")
    if not os.path.isfile(BINARY):
        unavailable("target/debug/podidentity is missing: cargo build -p podidentity")


def run_script(*args, tmpdir=None):
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
    if tmpdir:
        env["TMPDIR"] = tmpdir
    return subprocess.run([SCRIPT, *args], cwd=ROOT, env=env, capture_output=True, text=True)


def blob(layout, digest):
    algorithm, hexdigest = digest.split(":")
    return os.path.join(layout, "blobs", algorithm, hexdigest)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    ensure_tools()
    base = tmp_path_factory.mktemp("image")
    scratch = base / "scratch"  # the script's TMPDIR: it must leave it empty
    scratch.mkdir()
    archive = base / "out" / "podidentity.oci.tar"
    result = run_script("--binary", "target/debug/podidentity", "--revision", REVISION,
                        "--out", str(archive), tmpdir=str(scratch))
    if result.returncode != 0:
        pytest.fail(f"scripts/image failed ({result.returncode}):\n{result.stderr[-4000:]}")
    layout = base / "layout"
    layout.mkdir()
    with tarfile.open(archive) as tar:
        members = tar.getnames()
        tar.extractall(layout, filter="tar")
    index = read_json(layout / "index.json")
    manifest_digest = index["manifests"][0]["digest"]
    manifest = read_json(blob(layout, manifest_digest))
    config = read_json(blob(layout, manifest["config"]["digest"]))
    bundle = base / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{VERSION}", str(bundle)],
                   check=True, capture_output=True)
    yield types.SimpleNamespace(
        archive=str(archive), members=members, layout=str(layout), index=index,
        manifest_digest=manifest_digest, manifest=manifest, config=config,
        rootfs=str(bundle / "rootfs"), runtime=read_json(bundle / "config.json"),
        stdout=result.stdout, scratch=str(scratch))
    shutil.rmtree(base)  # some hundred MB: not kept among pytest's last runs


def path_in(image, *parts):
    return os.path.join(image.rootfs, *parts)


def test_the_archive_is_one_oci_layout_with_one_image_tagged_with_the_version(image):
    assert sorted(m for m in image.members if m.split("/")[0] != "blobs") == ["index.json", "oci-layout"]
    assert read_json(os.path.join(image.layout, "oci-layout"))["imageLayoutVersion"] == "1.0.0"
    assert len(image.index["manifests"]) == 1
    entry = image.index["manifests"][0]
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == VERSION
    assert sha256(blob(image.layout, entry["digest"])) == entry["digest"].split(":")[1]
    layers = image.manifest["layers"]
    assert [layer["mediaType"] for layer in layers] == ["application/vnd.oci.image.layer.v1.tar+gzip"]
    assert os.path.getsize(blob(image.layout, layers[0]["digest"])) == layers[0]["size"]
    # umoci gc: no blob that the image does not use
    used = {entry["digest"], image.manifest["config"]["digest"], layers[0]["digest"]}
    assert {f"sha256:{name}" for name in os.listdir(os.path.join(image.layout, "blobs", "sha256"))} == used


def test_the_config_runs_podidentity_as_65532_in_root(image):
    config = image.config["config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["/podidentity"]
    assert not config.get("Cmd")  # the chart gives the arguments
    assert config["WorkingDir"] == "/"
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in config["Env"]
    assert image.config["architecture"] == "amd64"
    assert image.config["os"] == "linux"
    assert image.config["created"] == CREATED
    # as a runtime sees it (umoci unpack writes the runtime spec)
    assert image.runtime["process"]["args"] == ["/podidentity"]
    assert image.runtime["process"]["user"]["uid"] == 65532
    assert image.runtime["process"]["user"]["gid"] == 65532
    assert image.runtime["process"]["cwd"] == "/"


EXPECTED_LABELS = {
    "org.opencontainers.image.source": "https://github.com/pod-identity-operator/pod-identity-operator",
    "org.opencontainers.image.version": VERSION,
    "org.opencontainers.image.revision": REVISION,
    "org.opencontainers.image.licenses": WORKSPACE["license"],
    "org.opencontainers.image.created": CREATED,
    "org.opencontainers.image.title": "pod-identity-operator",
}


@pytest.mark.parametrize("label", sorted(EXPECTED_LABELS))
def test_each_oci_label_and_annotation_has_its_value(image, label):
    assert image.config["config"]["Labels"][label] == EXPECTED_LABELS[label]
    assert image.manifest["annotations"][label] == EXPECTED_LABELS[label]


def test_the_description_label_is_there(image):
    assert "Kubernetes" in image.config["config"]["Labels"]["org.opencontainers.image.description"]


def test_podidentity_is_the_given_binary_and_executable(image):
    shipped = path_in(image, "podidentity")
    st = os.lstat(shipped)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert st.st_size == os.path.getsize(BINARY)
    assert sha256(shipped) == sha256(BINARY)


def test_it_runs_from_its_root_filesystem_as_65532(image):
    result = subprocess.run(
        ["chroot", "--userspec=65532:65532", image.rootfs, "/podidentity", "--version"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"podidentity {VERSION}"


def test_the_ca_bundle_has_the_debian_certificates(image):
    bundle = path_in(image, "etc", "ssl", "certs", "ca-certificates.crt")
    with open(bundle) as f:
        text = f.read()
    begins = text.count("-----BEGIN CERTIFICATE-----")
    assert begins >= 100
    assert begins == text.count("-----END CERTIFICATE-----")
    assert stat.S_IMODE(os.stat(bundle).st_mode) == 0o644


def test_glibc_and_libgcc_are_there(image):
    lib = path_in(image, "lib", MULTIARCH)
    for name in ("libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2",
                 "libnss_files.so.2", "libnss_dns.so.2"):
        assert os.path.isfile(os.path.join(lib, name)), name
    loader = path_in(image, "lib64", "ld-linux-x86-64.so.2")
    assert os.readlink(loader) == f"/lib/{MULTIARCH}/ld-linux-x86-64.so.2"


def test_users_groups_home_and_tmp_are_distroless_like(image):
    with open(path_in(image, "etc", "passwd")) as f:
        passwd = [line.split(":") for line in f.read().splitlines()]
    users = {fields[0]: fields for fields in passwd}
    assert users["nonroot"][2:4] == ["65532", "65532"]
    assert users["nonroot"][5] == "/home/nonroot"
    assert users["root"][2:4] == ["0", "0"]
    with open(path_in(image, "etc", "group")) as f:
        assert "nonroot:x:65532:" in f.read().splitlines()
    home = os.stat(path_in(image, "home", "nonroot"))
    assert (home.st_uid, home.st_gid) == (65532, 65532)
    assert stat.S_IMODE(os.stat(path_in(image, "tmp")).st_mode) == 0o1777
    with open(path_in(image, "etc", "nsswitch.conf")) as f:
        assert re.search(r"^hosts:\s+files dns$", f.read(), re.M)
    with open(path_in(image, "etc", "os-release")) as f:
        os_release = f.read()
    assert 'ID=debian' in os_release.splitlines()
    assert 'VERSION_CODENAME=bookworm' in os_release.splitlines()


def test_no_shell_no_package_manager_no_programs_but_podidentity(image):
    for shell in ("bin/sh", "usr/bin/sh", "bin/bash", "bin/dash", "bin/busybox"):
        assert not os.path.lexists(path_in(image, shell)), shell
    for directory in ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin"):
        assert not os.path.lexists(path_in(image, directory)), directory
    programs = []
    for dirpath, _, files in os.walk(image.rootfs):
        for name in files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, image.rootfs)
            if os.path.isfile(path) and not os.path.islink(path) and os.stat(path).st_mode & 0o111 \
                    and not re.search(r"\.so(\.\d+)*$", rel):
                programs.append(rel)
            assert not re.search(r"(^|/)(apt|apt-get|dpkg|dpkg-deb|openssl|debconf|update-ca-certificates)$",
                                 rel), rel
    assert programs == ["podidentity"]


def test_no_docs_but_copyright_files_and_no_man_pages_or_locales(image):
    for gone in ("usr/share/man", "usr/share/locale", "usr/share/lintian", f"usr/lib/{MULTIARCH}/gconv",
                 "var/cache", "var/lib/apt", "etc/apt", "dev", "etc/resolv.conf", "etc/hostname"):
        assert not os.path.lexists(path_in(image, gone)), gone
    doc = path_in(image, "usr", "share", "doc")
    for dirpath, _, files in os.walk(doc):
        for name in files:
            assert name == "copyright", os.path.join(dirpath, name)
    assert os.path.isfile(os.path.join(doc, "ca-certificates", "copyright"))
    assert os.path.isfile(os.path.join(doc, "libc6", "copyright"))


def status_d(image):
    return path_in(image, "var", "lib", "dpkg", "status.d")


def test_dpkg_status_lists_exactly_the_packages_that_ship(image, tmp_path):
    names = sorted(os.listdir(status_d(image)))
    # no openssl, debconf or libssl3: ca-certificates' dependencies stay out
    assert {n for n in names if not n.endswith(".md5sums")} == PACKAGES
    # The control files make a dpkg status database that dpkg itself reads.
    admin = tmp_path / "dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "available").touch()
    paragraphs = []
    for name in sorted(PACKAGES):
        with open(os.path.join(status_d(image), name)) as f:
            fields = f.read().strip().split("\n")
        assert fields[0] == f"Package: {name}"
        paragraphs.append("\n".join([fields[0], "Status: install ok installed", *fields[1:]]))
    (admin / "status").write_text("\n\n".join(paragraphs) + "\n")
    listed = subprocess.run(
        ["dpkg-query", f"--admindir={admin}", "-W", "-f", "${Package} ${Version} ${Architecture}\n"],
        capture_output=True, text=True, check=True).stdout.split("\n")
    packages = {line.split()[0]: line.split()[1:] for line in listed if line}
    assert set(packages) == PACKAGES
    assert packages["libc6"][0].startswith("2.36-")
    assert packages["libc6"][1] == "amd64"
    assert packages["ca-certificates"][1] == "all"


def test_dpkg_md5sums_match_the_files_that_ship(image):
    sums = {}
    with open(os.path.join(status_d(image), "libc6.md5sums")) as f:
        for line in f:
            digest, path = line.rstrip("\n").split("  ", 1)
            sums[path] = digest
    assert f"lib/{MULTIARCH}/libc.so.6" in sums
    for path, digest in sums.items():
        with open(path_in(image, path), "rb") as f:
            assert hashlib.md5(f.read()).hexdigest() == digest, path


def test_skopeo_reads_the_archive(image):
    inspect = subprocess.run(["skopeo", "inspect", f"oci-archive:{image.archive}"],
                             capture_output=True, text=True, check=True)
    seen = json.loads(inspect.stdout)
    assert seen["Architecture"] == "amd64"
    assert seen["Labels"]["org.opencontainers.image.revision"] == REVISION
    assert seen["Layers"] == [layer["digest"] for layer in image.manifest["layers"]]


def test_it_prints_the_archive_its_size_and_the_layer_size(image):
    lines = image.stdout.splitlines()
    assert lines[0] == image.archive
    assert f"archive: {os.path.getsize(image.archive)} bytes" in image.stdout
    assert f"layer: {image.manifest['layers'][0]['size']} bytes compressed" in image.stdout
    assert image.manifest_digest in image.stdout


def test_it_leaves_nothing_behind(image):
    assert os.listdir(image.scratch) == []
    assert os.listdir(os.path.dirname(image.archive)) == [os.path.basename(image.archive)]


def test_two_builds_give_the_same_archive(image, tmp_path):
    again = tmp_path / "again.oci.tar"
    try:
        result = run_script("--binary", "target/debug/podidentity", "--revision", REVISION, "--out", str(again))
        assert result.returncode == 0, result.stderr[-4000:]
        assert sha256(again) == sha256(image.archive)
    finally:
        again.unlink(missing_ok=True)  # not kept among pytest's last runs


# ---- bad arguments: a clear error naming the option, and no archive ------------------------

def fake_elf(path, machine):
    """An ELF header for e_machine `machine` (enough for the script's architecture check)."""
    header = bytearray(64)
    header[0:4] = b"\x7fELF"
    header[18:20] = machine.to_bytes(2, "little")
    path.write_bytes(bytes(header))
    return str(path)


@pytest.mark.parametrize("args, expect", [
    (["--arch", "mips"], ["--arch", "mips", "amd64", "arm64"]),
    (["--binary", "{tmp}/missing/podidentity"], ["--binary", "/missing/podidentity", "does not exist"]),
    (["--arch", "arm64"], ["--arch arm64 needs --binary"]),
    (["--arch", "arm64", "--binary", "{amd64}"], ["--binary", "built for amd64", "--arch arm64"]),
    (["--binary", "{arm64}"], ["--binary", "built for arm64", "--arch amd64"]),
    (["--binary", "{tmp}/not-elf"], ["--binary", "not an ELF"]),
    (["--binary", "{amd64}", "--tag", "no spaces"], ["--tag", "no spaces"]),
    (["--binary", "{amd64}", "--out", "{tmp}"], ["--out", "is a directory"]),
    (["--frobnicate"], ["unknown argument '--frobnicate'"]),
    (["--binary"], ["--binary needs a value"]),
])
def test_a_bad_argument_names_the_option_and_writes_nothing(tmp_path, args, expect):
    out = tmp_path / "out" / "image.oci.tar"
    (tmp_path / "not-elf").write_text("#!/bin/sh\n")
    names = {"tmp": str(tmp_path), "amd64": fake_elf(tmp_path / "amd64", 0x3E),
             "arm64": fake_elf(tmp_path / "arm64", 0xB7)}
    args = [a.format(**names) for a in args]
    if "--out" not in args:
        args += ["--out", str(out)]
    result = run_script(*args)
    assert result.returncode == 2, result.stderr
    for text in expect:
        assert text in result.stderr
    assert "scripts/image --help" in result.stderr
    assert not (tmp_path / "out").exists()
    assert result.stdout == ""


def test_help_describes_the_options():
    result = run_script("--help")
    assert result.returncode == 0
    for option in ("--binary", "--arch", "--version", "--revision", "--tag", "--out", "SOURCE_DATE_EPOCH"):
        assert option in result.stdout


# ---- the Dockerfile: the same image for builders with registry access ----------------------

def dockerfile_stages():
    """The Dockerfile's instructions per stage, continuation lines joined, comments dropped."""
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = re.sub(r"\\\n\s*", " ", "\n".join(
            line for line in f.read().splitlines() if not line.lstrip().startswith("#")))
    stages = []
    for line in text.splitlines():
        if not line.strip():
            continue
        instruction, _, rest = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), rest.strip()))
    return stages


def test_the_dockerfile_builds_the_glibc_binary_onto_distroless_cc():
    build, final = dockerfile_stages()
    assert build[0] == ("FROM", "rust:1.95-bookworm AS build")
    run = " ".join(rest for instruction, rest in build if instruction == "RUN")
    # As the release workflow builds it (cargo auditable: the crate list in the binary).
    assert "cargo auditable build --release --locked -p podidentity" in run
    with open(os.path.join(ROOT, ".github/workflows/release.yml")) as f:
        release = f.read()
    assert "run: cargo auditable build --release --locked -p podidentity" in release
    assert "musl" not in run
    assert final[0] == ("FROM", "gcr.io/distroless/cc-debian12:nonroot")
    assert ("COPY", "--from=build /podidentity /podidentity") in final


def test_the_dockerfile_has_the_config_and_labels_of_the_image(image):
    final = dockerfile_stages()[-1]
    settings = {}
    for instruction, rest in final:
        settings.setdefault(instruction, []).append(rest)
    assert settings["USER"] == [image.config["config"]["User"]]
    assert [json.loads(e) for e in settings["ENTRYPOINT"]] == [image.config["config"]["Entrypoint"]]
    assert settings["WORKDIR"] == [image.config["config"]["WorkingDir"]]
    assert set(settings["ARG"]) == {"VERSION", "REVISION", "CREATED"}
    labels = dict((key, json.loads(value)) for key, value in
                  re.findall(r'(\S+)=("(?:[^"\\]|\\.)*")', " ".join(settings["LABEL"])))
    from_args = {"org.opencontainers.image.version": "${VERSION}",
                 "org.opencontainers.image.revision": "${REVISION}",
                 "org.opencontainers.image.created": "${CREATED}"}
    image_labels = image.config["config"]["Labels"]
    assert set(labels) == set(image_labels)
    for key, value in labels.items():
        assert value == from_args.get(key, image_labels[key]), key
