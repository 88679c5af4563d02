# Destroy: powers off and removes every VM under $ROOT that carries this instance's marks,
# and nothing else.
. /pmesh/common.sh
govc find "$ROOT" -type m | while read -r path; do
  owned "$path" || continue
  if [ "$(power_state "$path")" = poweredOn ]; then
    govc vm.power -off "$path"
  fi
  govc vm.destroy "$path"
  echo "removed $path"
done
