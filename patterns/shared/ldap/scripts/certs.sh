#!/bin/sh
# Puts the LDAPS certificate in the certs volume: the one given as params, or one issued by a
# CA the pattern generates once and keeps (so clients that trust it keep trusting it). The
# server certificate is issued again when its request (names, addresses) changes.
set -eu
umask 077
cd /certs
days="${CERT_DAYS:-825}"

if [ -s /given/server.pem ] || [ -s /given/server.key ] || [ -s /given/ca.pem ]; then
  for part in server.pem server.key ca.pem; do
    [ -s "/given/$part" ] || { echo "certs: tls_certificate, tls_key and tls_ca go together; $part is missing" >&2; exit 1; }
  done
  openssl x509 -noout -in /given/server.pem || { echo "certs: tls_certificate is not a PEM certificate" >&2; exit 1; }
  if [ "$(openssl x509 -noout -pubkey -in /given/server.pem)" != "$(openssl pkey -pubout -in /given/server.key)" ]; then
    echo "certs: tls_key is not the key of tls_certificate" >&2
    exit 1
  fi
  openssl verify -CAfile /given/ca.pem /given/server.pem >/dev/null \
    || { echo "certs: tls_ca did not sign tls_certificate" >&2; exit 1; }
  cp /given/server.pem server.pem
  cp /given/server.key server.key
  cp /given/ca.pem ca.pem
  rm -f ca.key issued.cnf
  echo "certs: installed the given certificate"
else
  if [ ! -s ca.key ] || [ ! -s ca.pem ]; then
    openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout ca.key -out ca.pem \
      -subj "/O=pmesh lab/CN=pmesh LDAP CA $(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    rm -f issued.cnf
    echo "certs: generated a CA"
  fi
  if ! cmp -s /pmesh/tls.cnf issued.cnf || [ ! -s server.pem ] \
    || ! openssl verify -CAfile ca.pem server.pem >/dev/null 2>&1 \
    || ! openssl x509 -checkend 2592000 -noout -in server.pem >/dev/null; then
    openssl req -new -newkey rsa:2048 -nodes -sha256 -keyout server.key -out server.csr -config /pmesh/tls.cnf 2>/dev/null
    openssl x509 -req -sha256 -in server.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" \
      -days "$days" -extfile /pmesh/tls.cnf -extensions server -out server.pem 2>/dev/null
    rm -f server.csr
    cp /pmesh/tls.cnf issued.cnf
    echo "certs: issued the server certificate"
  else
    echo "certs: the server certificate is current"
  fi
fi
# slapd reads its key as the openldap user; clients may read the certificates.
chown openldap:openldap server.key
chmod 0640 server.key
chmod 0644 server.pem ca.pem
openssl x509 -noout -subject -ext subjectAltName -enddate -in server.pem
