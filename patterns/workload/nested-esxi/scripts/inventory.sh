# Writes the outputs: /out/hosts ("NAME FQDN ADDRESS" per line) and /out/records (DNS
# records "NAME A ADDRESS", for shared/dns), for the hosts in /pmesh/hosts.txt, each checked
# to be this instance's VM and to report its address.
. /pmesh/common.sh
mkdir -p /out
: >/out/hosts
: >/out/records
index=0
grep . /pmesh/hosts.txt | while read -r name; do
  index=$((index + 1))
  path=$(vm_path "$name")
  if [ -z "$path" ] || ! owned "$path"; then
    echo "error: $name is not a VM of this instance" >&2
    exit 1
  fi
  address=$(govc vm.ip -wait 10s "$path")
  printf '%s %s.%s %s\n' "$name" "$name" "$DOMAIN" "$address" >>/out/hosts
  printf '%s A %s\n' "$name" "$address" >>/out/records
done
cat /out/hosts
