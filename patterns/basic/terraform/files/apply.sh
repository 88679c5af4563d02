#!/bin/sh
# basic/terraform's step: unpack the provider mirror, put the configuration in the work
# directory (a volume, so the state survives between runs), init offline, apply.
set -eu
mkdir -p /tmp/pmesh-mirror
tar -xf /pmesh/providers.tar -C /tmp/pmesh-mirror
cp /pmesh/config/main.tf /work/main.tf
cd /work
terraform init -input=false -no-color
terraform apply -input=false -auto-approve -no-color
