#!/bin/sh
# pmesh's BIND9 wrapper for the dns pattern; edits are replaced on the next apply.
#
#   pmesh-named.sh start    prepare the zones, then become named (PID 1)
#   pmesh-named.sh reload   prepare the zones, then make the running named reload them
#   pmesh-named.sh check    check the configuration and zones named serves
#
# pmesh renders $SRC/named.conf and $SRC/zones.txt (every zone, each after a
# ";; pmesh-zone NAME" line, its SOA serial written @SERIAL@). Preparing splits zones.txt into
# one file per zone under $OUT/zones and stamps each zone's serial: unchanged content keeps
# its serial, changed content gets max(previous + 1, seconds since 1970), so serials only
# rise, even across a replaced container ($OUT is on the instance's volume). Everything is
# checked (named-checkzone, named-checkconf) before the files named reads are replaced, so a
# bad zone leaves the running server as it was.
set -eu

SRC=/etc/bind/pmesh
OUT=/var/cache/bind/pmesh
STAGE="$OUT/stage"

prepare() {
    rm -rf "$STAGE"
    mkdir -p "$STAGE/zones" "$OUT/zones" "$OUT/serials"
    : > "$STAGE/list"
    zone=""
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            ";; pmesh-zone "*)
                zone=${line#";; pmesh-zone "}
                printf '%s\n' "$zone" >> "$STAGE/list"
                : > "$STAGE/zones/$zone.in"
                ;;
            *) if [ -n "$zone" ]; then printf '%s\n' "$line" >> "$STAGE/zones/$zone.in"; fi ;;
        esac
    done < "$SRC/zones.txt"

    cp "$SRC/named.conf" "$STAGE/named.conf"
    now=$(date +%s)
    while IFS= read -r zone; do
        digest=$(sha256sum < "$STAGE/zones/$zone.in" | cut -d' ' -f1)
        serial=$now
        if [ -f "$OUT/serials/$zone" ]; then
            read -r old_digest old_serial < "$OUT/serials/$zone"
            if [ "$old_digest" = "$digest" ]; then
                serial=$old_serial
            elif [ "$serial" -le "$old_serial" ]; then
                serial=$((old_serial + 1))
            fi
        fi
        sed "s/@SERIAL@/$serial/" "$STAGE/zones/$zone.in" > "$STAGE/zones/$zone.db"
        named-checkzone -q -i local "$zone" "$STAGE/zones/$zone.db" || {
            echo "zone $zone does not load:" >&2
            named-checkzone -i local "$zone" "$STAGE/zones/$zone.db" >&2 || true
            exit 1
        }
        printf '%s %s\n' "$digest" "$serial" > "$STAGE/zones/$zone.serial"
        printf 'zone "%s" { type primary; file "%s/zones/%s.db"; };\n' "$zone" "$OUT" "$zone" >> "$STAGE/named.conf"
    done < "$STAGE/list"
    named-checkconf "$STAGE/named.conf"

    # Checked: now replace what named reads, each file by rename.
    while IFS= read -r zone; do
        # An unchanged zone keeps its file, so named does not load it again.
        cmp -s "$STAGE/zones/$zone.db" "$OUT/zones/$zone.db" || mv "$STAGE/zones/$zone.db" "$OUT/zones/$zone.db"
        mv "$STAGE/zones/$zone.serial" "$OUT/serials/$zone"
    done < "$STAGE/list"
    mv "$STAGE/named.conf" "$OUT/named.conf"
    # Every zone served, forward and reverse, one per line: the pattern's `zones` output.
    cp "$STAGE/list" "$OUT/zones.list"
    for file in "$OUT"/zones/*.db; do
        zone=$(basename "$file" .db)
        grep -qxF "$zone" "$STAGE/list" || rm -f "$file"
    done
    chmod -R a+rX "$OUT"
}

case "${1:-}" in
    start)
        prepare
        exec /usr/sbin/named -g -c "$OUT/named.conf" -u bind
        ;;
    reload)
        prepare
        # named is PID 1 (start execs it); SIGHUP reloads the configuration and every zone
        # whose file changed, while it keeps answering.
        kill -HUP 1
        echo "reloaded: $(wc -l < "$STAGE/list") zones"
        ;;
    check)
        named-checkconf -z "$OUT/named.conf"
        echo OK
        ;;
    *)
        echo "usage: $0 start|reload|check" >&2
        exit 2
        ;;
esac
