# syntax=docker/dockerfile:1
#
# kftenant container image.
#
#   docker build -t kftenant .
#   docker run --rm kftenant                 # prints `kftenant run --help`
#   docker run --rm -v "$PWD:/repo:ro" kftenant validate /repo
#
# Build stage: the native parts are aws-lc-sys (cmake and the image's C compiler;
# bindgen is not needed on x86_64/aarch64 Linux, which have pregenerated
# bindings) and libgit2/libssh2 (built from their bundled sources; OpenSSL and
# zlib come from the system). The Cargo registry and target folder are BuildKit
# cache mounts, so a rebuild after a source change recompiles only kftenant
# itself, not its ~400 dependencies.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Release profile keeps `debug = 1` for local profiling; the image strips debug
# info (function names stay, so panics still have symbolised backtraces).
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin kftenant \
 && install -D -m 0755 target/release/kftenant /out/kftenant \
 && install -d -m 0750 /out/cache
# The runtime image has no package manager: fail the build here, not at start-up,
# if the binary links a shared library distroless cc-debian12 does not ship
# (glibc, libgcc_s, libstdc++, libssl3/libcrypto3, libz).
RUN set -e; ldd /out/kftenant; \
    bad="$(ldd /out/kftenant | awk '{print $1}' \
      | grep -Ev '^(linux-vdso\.so|/lib64/ld-linux|/lib/ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libgcc_s\.so|libstdc\+\+\.so|libssl\.so\.3|libcrypto\.so\.3|libz\.so\.1)' || true)"; \
    if [ -n "$bad" ]; then echo "unexpected shared libraries: $bad" >&2; exit 1; fi; \
    /out/kftenant --version

# Runtime: distroless cc (glibc, libgcc, libstdc++, OpenSSL 3, zlib, CA
# certificates, tzdata), no shell, no package manager. `nonroot` is uid/gid 65532.
# No git binary is needed: libgit2 is linked in.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/kftenant /usr/local/bin/kftenant
# The daemon's clone cache (`--cache-dir` default), writable by the runtime user
# for `docker run`; in Kubernetes an emptyDir is mounted over it (read-only root).
COPY --from=build --chown=65532:65532 /out/cache /var/cache/kftenant
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/kftenant"]
CMD ["run", "--help"]
