#!/bin/bash
# LXD's filters against spoofing (security.mac_filtering, ipv4_filtering) are
# ebtables rules naming each container's host-side interface. With Debian's
# ebtables (nftables underneath) LXD makes them but cannot delete them: a
# container stopped, restarted or deleted leaves its old interface's rules.
# This removes the rules that name an interface no longer there (they match
# nothing; interface names are random, so one is not taken again in practice).
# Prints how many it removed.
set -euo pipefail
removed=0
for chain in INPUT FORWARD; do
    while IFS= read -r rule; do
        dev=$(grep -o -- '-i veth[0-9a-zA-Z]*' <<<"$rule" | head -n 1 | cut -c 4-)
        if [ -n "$dev" ] && [ ! -e "/sys/class/net/$dev" ]; then
            read -ra words <<<"$rule"
            ebtables -D "$chain" "${words[@]}"
            removed=$((removed + 1))
        fi
    done < <(ebtables -L "$chain" 2>/dev/null | grep -- '-i veth' || true)
done
echo "$removed"
