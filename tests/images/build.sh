#!/usr/bin/env bash
# Builds the container images the tests use, from Debian packages (no registry is reachable),
# and caches them by tag: an image whose tag exists is not built again. Bump an image's tag
# when its recipe changes.
#
#   tests/images/build.sh            build every missing image
#
# vcsim and govc are Go programs (tests/images/govmomi) built against Debian's govmomi source
# in a throwaway build root, then copied as static binaries into small images of their own.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

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
  # The base workload/vcenter's tests build on: bsdtar (libarchive-tools) extracts the ISO
  # without a loop mount; jq lets the stand-in vcsa-deploy check the rendered JSON.
  "pmesh-test/vcsa-base:bookworm-1|libarchive-tools,jq,ca-certificates"
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

# vcsim (the govmomi vCenter simulator) and govc (the subset of govc pmesh's vSphere patterns
# use), built in one bookworm root with golang-go and golang-github-vmware-govmomi-dev
# (GO111MODULE=off, GOPATH=/usr/share/gocode: Debian's Go packages are a GOPATH tree), then
# copied as static binaries into minimal images: vcsim alone; govc with busybox's sh and the
# CA bundle, since patterns drive govc from sh scripts.
VCSIM_IMAGE="pmesh-test/vcsim:0.24.2-1"
GOVC_IMAGE="pmesh-test/govc:0.24.2-1"
build_govmomi_images() {
  need_root_tools
  build="$(mktemp -d)"
  trap 'rm -rf "$build"' EXIT
  echo "images: building $VCSIM_IMAGE and $GOVC_IMAGE from Debian's govmomi source"
  debootstrap --variant=minbase --include=golang-go,golang-github-vmware-govmomi-dev,busybox-static,ca-certificates \
    bookworm "$build/root" "$mirror" >"$build/debootstrap.log" 2>&1 || { tail -20 "$build/debootstrap.log" >&2; exit 1; }
  mkdir -p "$build/root/src"
  cp -r "$here/govmomi/vcsim" "$here/govmomi/govc" "$build/root/src/"
  for program in vcsim govc; do
    # The program's Go files, as the chroot sees them.
    sources=()
    for file in "$build/root/src/$program"/*.go; do sources+=("/src/$program/${file##*/}"); done
    chroot "$build/root" env GO111MODULE=off GOPATH=/usr/share/gocode CGO_ENABLED=0 HOME=/tmp GOCACHE=/tmp/gocache \
      /usr/bin/go build -trimpath -ldflags=-s -o "/src/out/$program" "${sources[@]}"
  done
  for program in vcsim govc; do
    image="$build/$program"
    mkdir -p "$image/usr/local/bin" "$image/tmp" "$image/etc/ssl/certs"
    chmod 1777 "$image/tmp"
    cp "$build/root/src/out/$program" "$image/usr/local/bin/"
    cp "$build/root/etc/ssl/certs/ca-certificates.crt" "$image/etc/ssl/certs/"
    echo 'root:x:0:0:root:/root:/bin/sh' >"$image/etc/passwd"
  done
  mkdir -p "$build/govc/bin"
  cp "$build/root/bin/busybox" "$build/govc/bin/"
  chroot "$build/govc" /bin/busybox --install -s /bin
  tar -C "$build/vcsim" -c . | docker import --change 'ENTRYPOINT ["/usr/local/bin/vcsim"]' - "$VCSIM_IMAGE" >/dev/null
  tar -C "$build/govc" -c . | docker import \
    --change 'ENV PATH=/usr/local/bin:/bin' --change 'CMD ["/usr/local/bin/govc"]' - "$GOVC_IMAGE" >/dev/null
  rm -rf "$build"
  trap - EXIT
  echo "images: built $VCSIM_IMAGE and $GOVC_IMAGE"
}
if docker image inspect "$VCSIM_IMAGE" >/dev/null 2>&1 && docker image inspect "$GOVC_IMAGE" >/dev/null 2>&1; then
  echo "images: $VCSIM_IMAGE and $GOVC_IMAGE are cached"
else
  build_govmomi_images
fi
