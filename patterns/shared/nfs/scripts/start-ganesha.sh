#!/bin/sh
# Starts rpcbind (NFSv3 clients such as ESXi find mountd and nfsd through it), waits until it
# answers, creates each export's directory on the exports volume, then runs nfs-ganesha in the
# foreground.
set -eu
mkdir -p /run/rpcbind /var/lib/nfs/ganesha
while IFS= read -r name; do
  [ -z "$name" ] || mkdir -p "/exports/$name"
done < /pmesh/exports.txt
rpcbind -w
tries=0
until rpcinfo -p 127.0.0.1 > /dev/null 2>&1; do
  tries=$((tries + 1))
  [ "$tries" -le 50 ] || { echo "start: rpcbind did not answer" >&2; exit 1; }
  sleep 0.1
done
exec ganesha.nfsd -F -L STDERR -f /etc/ganesha/pmesh.conf -p /run/ganesha.pid
