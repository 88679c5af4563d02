#!/bin/sh
# Starts slapd in the foreground as the openldap user, on the volumes the pattern mounts: the
# database in /var/lib/pmesh-ldap, the ldapi socket in /run/pmesh-ldapi.
set -eu
install -d -o openldap -g openldap -m 0750 /var/lib/pmesh-ldap /run/pmesh-ldapi
chown -R openldap:openldap /var/lib/pmesh-ldap
rm -f /run/pmesh-ldapi/ldapi /run/pmesh-ldapi/slapd.pid
exec slapd -d 0 -u openldap -g openldap -f /etc/ldap/pmesh/slapd.conf \
  -h "ldap:/// ldaps:/// ldapi://%2Frun%2Fpmesh-ldapi%2Fldapi"
