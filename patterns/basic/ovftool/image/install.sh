#!/bin/sh
# Installs OVF Tool from the user's download, told apart by its content: a .zip (4.6.3 and
# later: unzipped to /opt/ovftool and put on PATH) or a .bundle installer (4.6.2 and older:
# run with the installer's non-interactive flags). Missing libraries are installed with
# apt-get when the base has it, and named otherwise.
set -eu
download="$1"

missing=""
for lib in libnsl.so.1 libcrypt.so.1 libncurses.so.5; do
  ldconfig -p | grep -q "$lib" || missing="$missing $lib"
done
[ "$(head -c 2 "$download")" = "PK" ] && ! command -v unzip >/dev/null && missing="$missing unzip"
if [ -n "$missing" ]; then
  if command -v apt-get >/dev/null; then
    echo "installing what OVF Tool needs:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libnsl2 libcrypt1 libncurses5 unzip
    rm -rf /var/lib/apt/lists/*
  else
    echo "the base image lacks$missing and has no apt-get to install them; choose another base_image" >&2
    exit 1
  fi
fi

if [ "$(head -c 2 "$download")" = "PK" ]; then
  echo "installing OVF Tool from a .zip"
  unzip -q "$download" -d /opt
  [ -x /opt/ovftool/ovftool ] || { echo "the .zip holds no ovftool/ovftool" >&2; exit 1; }
  ln -sf /opt/ovftool/ovftool /usr/local/bin/ovftool
else
  echo "installing OVF Tool from a .bundle"
  sh "$download" --console --required --eulas-agreed
fi
ovftool --version
