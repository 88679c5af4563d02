#!/bin/sh
# Converges the directory on /pmesh/directory.ldif: entries missing are added, entries present
# get their attributes replaced (so their entryUUID stays), users, groups and service accounts
# no longer listed are deleted; then every account's password is set from the secret files
# unless it already binds with it. It administers slapd as root over the ldapi socket (SASL
# EXTERNAL), so no administrator password exists. Passwords are read from files and piped to
# the LDAP tools: none is ever an argument of a process.
set -eu
. /pmesh/layout.sh
ldapi="ldapi://%2Frun%2Fpmesh-ldapi%2Fldapi"
# /dev/shm is the container's own tmpfs: nothing written there outlives the container.
work="$(mktemp -d /dev/shm/directory.XXXXXX)"
trap 'rm -rf "$work"' EXIT
umask 077

fail() { echo "directory: $*" >&2; exit 1; }
lower() { tr '[:upper:]' '[:lower:]'; }

# The desired entries, one file each, and their DNs.
awk -v dir="$work" '
  /^#/ { next }
  /^$/ { if (open) { close(file); open = 0 } next }
  { if (!open) { count++; file = sprintf("%s/entry.%04d", dir, count); open = 1 } print > file }
' /pmesh/directory.ldif
for entry in "$work"/entry.*; do sed -n 's/^dn: //p' "$entry"; done > "$work/desired"

# Refuse names the layout does not allow: a uid or group name with a comma would make
# another DN, one with a space or a quote would not survive the LDIF.
while IFS= read -r dn; do
  case "$dn" in
    "$BASE_DN" | "$USERS_DN" | "$GROUPS_DN" | "$SERVICES_DN") continue ;;
  esac
  rdn="${dn%%,*}"
  parent="${dn#*,}"
  name="${rdn#*=}"
  case "$parent" in
    "$USERS_DN" | "$GROUPS_DN" | "$SERVICES_DN") ;;
    *) fail "$dn is outside the directory's layout" ;;
  esac
  printf '%s' "$name" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9._-]*$' \
    || fail "\"$name\" is not a valid name: use letters, digits, '.', '_' and '-'"
done < "$work/desired"
lower < "$work/desired" > "$work/desired.lower"
grep -h '^uniqueMember: ' "$work"/entry.* 2>/dev/null | sed 's/^uniqueMember: //' | while IFS= read -r member; do
  grep -qxF "$(printf '%s' "$member" | lower)" "$work/desired.lower" \
    || fail "a group lists ${member%%,*}, which is not one of the users"
done

# Private copies: the mounted files are readable by every user of the container.
cp /pmesh/secrets/bind.password "$work/bind.password"
[ -s "$work/bind.password" ] || fail "bind_password is empty"

# Every user's password, checked before anything changes: a line "uid:password" per user.
grep -h '^uid: ' "$work"/entry.* | sed 's/^uid: //' > "$work/uids" || true
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in '' | '#'*) continue ;; esac
  uid="${line%%:*}"
  [ "$uid" != "$line" ] || fail "a line of user_passwords is not \"uid:password\""
  grep -qxF "$uid" "$work/uids" || fail "user_passwords has a password for \"$uid\", which is not one of the users"
  printf '%s' "${line#*:}" > "$work/password.$uid"
  [ -s "$work/password.$uid" ] || fail "the password of $uid is empty"
done < /pmesh/secrets/passwords
while IFS= read -r uid; do
  [ -s "$work/password.$uid" ] || fail "user $uid has no password in user_passwords"
done < "$work/uids"

exists() {
  set +e
  ldapsearch -Q -LLL -Y EXTERNAL -H "$ldapi" -b "$1" -s base dn > /dev/null 2>&1
  status=$?
  set -e
  case "$status" in
    0) return 0 ;;
    32) return 1 ;;
    *) fail "cannot read $1 (ldapsearch exit $status)" ;;
  esac
}

# Add what is missing; replace the attributes of what is there. Parents come first in the
# file, so adds succeed in order.
for entry in "$work"/entry.*; do
  dn="$(sed -n 's/^dn: //p' "$entry")"
  if exists "$dn"; then
    awk '
      /^dn: / { print; print "changetype: modify"; next }
      {
        name = substr($0, 1, index($0, ":") - 1)
        if (name != last) { if (last != "") print "-"; print "replace: " name; last = name }
        print
      }
      END { if (last != "") print "-" }
    ' "$entry" | ldapmodify -Q -Y EXTERNAL -H "$ldapi" > /dev/null || fail "updating $dn failed"
  else
    if [ "$dn" = "$BIND_DN" ]; then
      # simpleSecurityObject must have a password from the start.
      hash="$(slappasswd -h '{SSHA}' -T "$work/bind.password")" || fail "hashing the password of $dn failed"
      printf 'userPassword: %s\n' "$hash" >> "$entry"
    fi
    ldapadd -Q -Y EXTERNAL -H "$ldapi" -f "$entry" > /dev/null || fail "adding $dn failed"
    echo "directory: added $dn"
  fi
done

# Delete the users, groups and service accounts that are no longer listed.
for container in "$USERS_DN" "$GROUPS_DN" "$SERVICES_DN"; do
  ldapsearch -Q -LLL -o ldif-wrap=no -Y EXTERNAL -H "$ldapi" -b "$container" -s one dn | sed -n 's/^dn: //p' \
    | while IFS= read -r dn; do
      if ! grep -qxF "$(printf '%s' "$dn" | lower)" "$work/desired.lower"; then
        ldapdelete -Q -Y EXTERNAL -H "$ldapi" "$dn" || fail "deleting $dn failed"
        echo "directory: removed $dn"
      fi
    done
done

# Passwords: set unless the account already binds with it.
set_password() { # DN FILE
  if ldapwhoami -x -H "$ldapi" -D "$1" -y "$2" > /dev/null 2>&1; then
    return 0
  fi
  hash="$(slappasswd -h '{SSHA}' -T "$2")" || fail "hashing the password of $1 failed"
  printf 'dn: %s\nchangetype: modify\nreplace: userPassword\nuserPassword: %s\n' "$1" "$hash" \
    | ldapmodify -Q -Y EXTERNAL -H "$ldapi" > /dev/null || fail "setting the password of $1 failed"
  echo "directory: set the password of $1"
}
set_password "$BIND_DN" "$work/bind.password"
while IFS= read -r uid; do
  set_password "uid=$uid,$USERS_DN" "$work/password.$uid"
done < "$work/uids"

# The end-to-end check: the bind account reads the directory over LDAPS, verifying the
# server's certificate against the CA.
users="$(LDAPTLS_CACERT=/certs/ca.pem LDAPTLS_REQCERT=demand ldapsearch -x -LLL -H ldaps://slapd:636 \
  -D "$BIND_DN" -y "$work/bind.password" -b "$USERS_DN" -s one '(objectClass=inetOrgPerson)' dn)" \
  || fail "the bind account cannot read $USERS_DN over LDAPS"
echo "directory: $(printf '%s\n' "$users" | grep -c '^dn: ' || true) users; $BIND_DN reads them over LDAPS"
