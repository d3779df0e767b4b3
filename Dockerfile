# Multi-stage build of the one binary, static (musl), on a distroless non-root base.
#   docker build -t podidentity .
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p podidentity \
 && cp target/x86_64-unknown-linux-musl/release/podidentity /podidentity

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /podidentity /podidentity
USER 65532:65532
ENTRYPOINT ["/podidentity"]
