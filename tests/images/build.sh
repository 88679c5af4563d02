#!/usr/bin/env bash
# Builds the container images the tests use, from Debian packages (no registry is reachable),
# and caches them by tag: an image whose tag exists is not built again. Bump an image's tag
# when its recipe changes.
#
#   tests/images/build.sh            build every missing image
set -euo pipefail

# tag, then the packages debootstrap installs into a bookworm minbase root.
images=(
  "pmesh-test/tools:bookworm-1|bind9,bind9-dnsutils,ca-certificates,curl,netcat-openbsd,procps"
  "pmesh-test/sshd:bookworm-1|systemd,systemd-sysv,openssh-server,sudo,iproute2,iptables,procps,ca-certificates"
  "pmesh-test/ldap:bookworm-1|slapd,ldap-utils,openssl,ca-certificates"
  "pmesh-test/nfs:bookworm-1|nfs-ganesha,nfs-ganesha-vfs,rpcbind,nfs-common,libnfs-utils,netbase"
  "pmesh-test/ntp:bookworm-1|chrony,procps"
  # The base basic/ovftool's tests build on: the libraries OVF Tool loads (libnsl.so.1 from
  # libc6, libcrypt.so.1, libncurses.so.5) and unzip for the .zip form.
  "pmesh-test/ovftool-base:bookworm-1|libcrypt1,libnsl2,libncurses5,unzip"
)

need_root_tools() {
  if ! command -v debootstrap >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
}

mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
mirror="${mirror:-http://deb.debian.org/debian}"

for entry in "${images[@]}"; do
  tag="${entry%%|*}"
  packages="${entry#*|}"
  if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "images: $tag is cached"
    continue
  fi
  need_root_tools
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' EXIT
  echo "images: building $tag from $mirror (packages: $packages)"
  debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; exit 1; }
  # Keep the image small: package lists and caches are not needed at run time.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
  rm -rf "$root" "$root.log"
  trap - EXIT
  echo "images: built $tag"
done
