# syntax=docker/dockerfile:1
# The Tessera image: every tier and the `tessera` CLI, from one wheel.
#
#   docker build -t tessera:$(git rev-parse --short HEAD) .      (docs/operations.md)
#   docker run IMAGE global_writer|regional|edge|notifier [--port P]
#
# Base images are pinned by tag, not digest, so that rebuilds pick up their security patches; a
# release is our own image, deployed by its digest (Terraform refuses anything else).

# --- build: the wheel, its Rust extension compiled by maturin in release mode ---------------------
# Debian bookworm's python3 is 3.11, the runtime's minor version (the extension is abi3 from 3.11).
FROM rust:1.95-slim-bookworm AS build

# Debian pins one version per package within a release and drops superseded ones from its
# mirrors, so pinning a version here would only make the build fail after a point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# The range pyproject.toml's [build-system] asks for, so this build and pip's agree.
RUN python3 -m venv /opt/maturin \
    && /opt/maturin/bin/pip install --no-cache-dir "maturin>=1.9,<2"

WORKDIR /src
COPY . .
# --locked: the crates Cargo.lock names, exactly. The caches keep downloaded crates and compiled
# dependencies between builds on one machine; the wheel itself goes to /wheels, outside them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    /opt/maturin/bin/maturin build --release --locked --out /wheels

# --- runtime: the wheel and its dependencies; no compiler, no Rust, no maturin --------------------
FROM python:3.11-slim-bookworm AS runtime

# The wheel is bind-mounted, not copied, so it leaves no layer behind. --only-binary: every
# dependency comes as a wheel; nothing may be compiled here, there is nothing to compile with.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --disable-pip-version-check --only-binary=:all: \
        /wheels/tessera-*.whl

# pip compiled the bytecode at install time; ECS runs the root filesystem read-only, so Python
# must not try to write any. Unbuffered: log lines reach CloudWatch as they are written.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# `docker run IMAGE <tier> [ARGS]` runs `python -m <tier> --host 0.0.0.0 [ARGS]`: a tier's default
# address, 127.0.0.1, is unreachable from outside a container, and a --host in ARGS still wins
# (argparse keeps the last). Anything else runs as given, so the ECS task definitions' own
# `python -m <tier> --host ... --port ...` and their init commands work unchanged.
COPY --chmod=0755 <<'EOF' /usr/local/bin/tessera-run
#!/bin/sh
set -eu
case "${1:-}" in
    global_writer|regional|edge|notifier)
        tier=$1
        shift
        exec python -m "$tier" --host 0.0.0.0 "$@" ;;
    "")
        echo "usage: docker run IMAGE global_writer|regional|edge|notifier [--port P] [ARGS]" >&2
        echo "       docker run IMAGE COMMAND [ARGS]    (e.g. tessera --version)" >&2
        exit 2 ;;
    *)
        exec "$@" ;;
esac
EOF

# The tiers never write to the image: a user without a home or a login shell, and no files.
RUN groupadd --system --gid 10001 tessera \
    && useradd --system --uid 10001 --gid tessera --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin tessera

# The ECS task definitions' working directory (terraform/modules/service).
WORKDIR /app
USER 10001:10001

# The tiers' default ports: writer, read node, edge, notifier (each takes --port).
EXPOSE 8100 8200 8300 8400

# No HEALTHCHECK: a tier's port is chosen at run time, and ECS runs its own against /readyz.
ENTRYPOINT ["/usr/local/bin/tessera-run"]
