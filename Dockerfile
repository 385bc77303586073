# syntax=docker/dockerfile:1.7
#
# latchkey container image.
#
#   docker build -t latchkey .
#   docker run --rm -p 8000:8000 -v latchkey-data:/data latchkey
#
# Runtime contract (the Kubernetes manifests in deploy/kubernetes and deploy/README.md rely
# on exactly these):
#   binary      /usr/local/bin/latchkey (ENTRYPOINT; the default command is `serve`)
#   user        65532:65532 (distroless "nonroot"), never root
#   port        8000, bound on 0.0.0.0 (LATCHKEY_SERVER__BIND)
#   data        /data, owned by 65532: the SQLite default DATABASE_URL=sqlite:///data/latchkey.db,
#               and on SQLite without jwt.signing_key the development key is generated
#               next to it (/data/latchkey.db.es256.key.pem). Unused with PostgreSQL.
#   config      /app/config/default.toml (the repository's defaults, read relative to the
#               working directory /app); override with LATCHKEY_<SECTION>__<KEY>, a file
#               named by LATCHKEY_CONFIG, or DATABASE_URL. The two variables set below are
#               environment variables, so they beat a LATCHKEY_CONFIG file: override them
#               with the environment, not with the file.
#   no HEALTHCHECK: the orchestrator probes GET /healthz (liveness) and GET /readyz (readiness).
#
# Why distroless and not debian:bookworm-slim: the binary needs only glibc, libgcc and
# OpenSSL (libpq and SQLite are compiled in; the token crypto is aws-lc-rs), which is what
# gcr.io/distroless/cc-debian12 is, with ca-certificates, tzdata and a "nonroot" user, and
# nothing else: no shell, no package manager, far fewer packages to patch, and a smaller
# image than bookworm-slim. Should the binary ever load a library the runtime lacks, the
# builder (the same Debian release, so the same glibc) collects the shared libraries `ldd`
# reports and copies in those the runtime does not have. The costs: copied libraries bypass
# apt, so to keep them visible to image scanners (Trivy and Grype read distroless'
# per-package records) the builder also copies each owning package's dpkg status record
# and copyright file, and the image must be rebuilt to pick up Debian security updates;
# and there is no shell, so `kubectl exec` runs `latchkey` itself and the Kubernetes
# preStop hook uses the kubelet's sleep action instead of `sleep`.

ARG RUST_VERSION=1.95

# The runtime base, named first so the builder can read its package list.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime

FROM rust:${RUST_VERSION}-bookworm AS builder

# The rust image already has what the build needs (a C compiler, OpenSSL's headers and
# pkg-config), so there is nothing to install.

# What the runtime image already has (one dpkg status record per package).
COPY --from=runtime /var/lib/dpkg/status.d/ /runtime-status.d/

WORKDIR /src
COPY . .

# The same command CI runs. The target directory is a cache mount, so the binary is copied
# out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && install -D -m 0755 target/release/latchkey /out/rootfs/usr/local/bin/latchkey

# Collect the shared libraries of the binary into /out/rootfs/usr/lib/<multiarch>/ under
# their sonames, except those of packages the runtime image already has: above all glibc
# (libc6), which must be the runtime's own to match its dynamic loader (distroless
# cc-debian12 ships Debian 12's, the release this builder links against), and libgcc.
# Each collected library's package gets its dpkg status record in /var/lib/dpkg/status.d/
# (the distroless layout) and its copyright file.
RUN <<'EOF'
set -eu
bin=/out/rootfs/usr/local/bin/latchkey
root=/out/rootfs
multiarch="$(gcc -print-multiarch)"
libdir="$root/usr/lib/$multiarch"
mkdir -p "$libdir" "$root/var/lib/dpkg/status.d"
in_runtime="$(cat /runtime-status.d/* 2>/dev/null | sed -n 's/^Package: *//p' | sort -u)"
if ! printf '%s\n' "$in_runtime" | grep -qx libc6; then
    echo "the runtime image has no libc6 record; it must provide Debian 12's glibc" >&2
    exit 1
fi
if ldd "$bin" | grep -q 'not found'; then
    ldd "$bin" >&2
    echo "a shared library of $bin is missing in the builder" >&2
    exit 1
fi
owner() {
    # dpkg records the path as shipped; with merged /usr, ldd may print the other spelling.
    for candidate in "$1" "$(readlink -f "$1")" "${1#/usr}" "/usr${1#/usr}"; do
        pkg="$(dpkg-query -S "$candidate" 2>/dev/null | head -n1 | cut -d: -f1)" || true
        if [ -n "$pkg" ]; then echo "$pkg"; return 0; fi
    done
    echo "no Debian package owns $1" >&2
    return 1
}
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u | while read -r lib; do
    pkg="$(owner "$lib")"
    if printf '%s\n' "$in_runtime" | grep -qx "$pkg"; then
        echo "in the runtime image: $lib ($pkg)"
        continue
    fi
    cp -L "$lib" "$libdir/$(basename "$lib")"
    if [ ! -e "$root/var/lib/dpkg/status.d/$pkg" ]; then
        dpkg-query -s "$pkg" > "$root/var/lib/dpkg/status.d/$pkg"
        if [ -e "/usr/share/doc/$pkg/copyright" ]; then
            install -D -m 0644 "/usr/share/doc/$pkg/copyright" "$root/usr/share/doc/$pkg/copyright"
        fi
    fi
    echo "collected $lib ($pkg)"
done
install -D -m 0644 LICENSE "$root/usr/share/doc/latchkey/LICENSE"
install -D -m 0644 config/default.toml "$root/app/config/default.toml"
mkdir -p /out/data
EOF


FROM runtime

COPY --from=builder /out/rootfs/ /
# Owned by the runtime user so a named volume mounted here starts out writable by it.
COPY --from=builder --chown=65532:65532 /out/data/ /data/

ENV LATCHKEY_SERVER__BIND=0.0.0.0:8000 \
    DATABASE_URL=sqlite:///data/latchkey.db

WORKDIR /app
VOLUME ["/data"]
EXPOSE 8000
USER 65532:65532

ENTRYPOINT ["/usr/local/bin/latchkey"]
CMD ["serve"]
