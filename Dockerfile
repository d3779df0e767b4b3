# The podidentity image for builders with registry access: the equivalent of scripts/image,
# which makes the same image on a machine without any registry (from Debian's packages, with
# mmdebstrap and umoci, as one OCI image archive; see scripts/image --help). Both ship the
# glibc release binary (cargo build --release --locked -p podidentity) as /podidentity, the
# entrypoint, on Debian 12 (bookworm) glibc, libgcc and CA certificates, run as 65532:65532
# in /, with the same OCI labels, PATH and SSL_CERT_FILE.
# What differs: here the base is gcr.io/distroless/cc-debian12:nonroot as published, while
# scripts/image makes its root filesystem itself with mmdebstrap --variant=extract. Distroless
# cc also ships libssl3, libstdc++6, libgomp1, tzdata, netbase and media-types (podidentity
# uses none: rustls, no C++, times in UTC) and glibc's gconv modules, which scripts/image
# leaves out; its /etc/os-release names "Distroless" where scripts/image keeps Debian's. The
# binary is built here in rust:1.95-bookworm, by scripts/image on the machine that runs it.
#
#   docker build -t podidentity \
#     --build-arg VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)" \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u -d "@$(git log -1 --format=%ct)" +%Y-%m-%dT%H:%M:%SZ)" .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# cargo auditable, as the release builds it: the binary carries its crate list for SBOMs.
RUN cargo install --locked cargo-auditable@0.7.7 \
 && cargo auditable build --release --locked -p podidentity \
 && cp target/release/podidentity /podidentity

FROM gcr.io/distroless/cc-debian12:nonroot
# The workspace version, the git commit and the commit's time (RFC 3339, UTC).
ARG VERSION
ARG REVISION
ARG CREATED
LABEL org.opencontainers.image.title="pod-identity-operator" \
      org.opencontainers.image.description="Gives Kubernetes pods AWS IAM roles without long-lived keys: the podidentity controller and webhook" \
      org.opencontainers.image.source="https://github.com/pod-identity-operator/pod-identity-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /podidentity /podidentity
USER 65532:65532
# distroless' nonroot images work in /home/nonroot; the operator's image in /.
WORKDIR /
ENTRYPOINT ["/podidentity"]
