# syntax=docker/dockerfile:1
#
# Snug's three images from one build: static (musl) release binaries on distroless, non-root.
#
#   docker build --target webhook  -t ghcr.io/snug-dev/snug-webhook:0.1.0  .
#   docker build --target sidecar  -t ghcr.io/snug-dev/snug-sidecar:0.1.0  .
#   docker build --target profiler -t ghcr.io/snug-dev/snug-profiler:0.1.0 .
#
# One image per component rather than one with all three binaries: the sidecar is pulled onto
# every node that runs an opted-in pod and starts with every such pod, so it stays alone and
# small, and changes only when the sidecar does (docs/install.md, "Images").
# Multi-arch: `docker buildx build --platform linux/amd64,linux/arm64 ...` builds each
# architecture natively (or under emulation); the target triple follows the build machine.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# musl-tools: the C compiler for ring's assembly and C parts on the musl target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY . .
# Symbols stay (readable panics), debug line tables go (smaller images).
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
 && cargo build --release --locked --target "$target" \
      --bin snug-webhook --bin snug-sidecar --bin snug-profiler \
 && mkdir -p /out \
 && cp "target/$target/release/snug-webhook" \
       "target/$target/release/snug-sidecar" \
       "target/$target/release/snug-profiler" /out/

# distroless/static: CA certificates, /etc/passwd with `nonroot` (65532), tzdata; no shell, no
# libc (the binaries are static). `:nonroot` already runs as 65532; USER says so explicitly.
FROM gcr.io/distroless/static-debian12:nonroot AS sidecar
COPY --from=build /out/snug-sidecar /snug-sidecar
USER 65532:65532
EXPOSE 4790
ENTRYPOINT ["/snug-sidecar"]

FROM gcr.io/distroless/static-debian12:nonroot AS webhook
COPY --from=build /out/snug-webhook /snug-webhook
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/snug-webhook"]

FROM gcr.io/distroless/static-debian12:nonroot AS profiler
COPY --from=build /out/snug-profiler /snug-profiler
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/snug-profiler"]
