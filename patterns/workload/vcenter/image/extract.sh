#!/bin/sh
# Extracts the VCSA ISO's installer (vcsa-cli-installer) and appliance (vcsa) into $2 with
# bsdtar, installing libarchive-tools first when the base lacks it.
set -eu
iso="$1"
dest="$2"
if ! command -v bsdtar >/dev/null 2>&1; then
  echo "installing bsdtar (libarchive-tools) to read the ISO"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends libarchive-tools >/dev/null
fi
mkdir -p "$dest"
bsdtar -xf "$iso" -C "$dest" vcsa-cli-installer vcsa
test -x "$dest/vcsa-cli-installer/lin64/vcsa-deploy" || {
  echo "the ISO has no vcsa-cli-installer/lin64/vcsa-deploy: is it the VCSA ISO?" >&2
  exit 1
}
# Files on an ISO are read-only; the installer writes logs and temporary files beside itself.
chmod -R u+w "$dest"
echo "extracted $(ls "$dest/vcsa" | wc -l) appliance files and vcsa-deploy"
