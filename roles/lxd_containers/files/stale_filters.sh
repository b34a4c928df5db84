#!/bin/bash
# LXD's filters against spoofing (security.mac_filtering, ipv4_filtering) are
# ebtables rules naming each container's host-side interface, and each bridge
# of LXD's has iptables rules of its own ("generated for LXD network NAME").
# With Debian's xtables (nftables underneath) LXD makes them but cannot delete
# them: a container stopped, restarted or deleted leaves its old interface's
# ebtables rules, a bridge deleted leaves its iptables rules. This removes the
# rules that name an interface no longer there (they match nothing; container
# interface names are random, so one is not taken again in practice).
# Prints how many it removed.
set -euo pipefail
removed=0
gone() { [ -n "$1" ] && [ ! -e "/sys/class/net/$1" ]; }

for chain in INPUT FORWARD; do
    while IFS= read -r rule; do
        dev=$(grep -o -- '-i veth[0-9a-zA-Z]*' <<<"$rule" | head -n 1 | cut -c 4-)
        if gone "$dev"; then
            read -ra words <<<"$rule"
            ebtables -D "$chain" "${words[@]}"
            removed=$((removed + 1))
        fi
    done < <(ebtables -L "$chain" 2>/dev/null | grep -- '-i veth' || true)
done

for tool in iptables ip6tables; do
    command -v "$tool-save" >/dev/null || continue
    for table in filter nat mangle; do
        while IFS= read -r rule; do
            bridge=$(grep -o 'generated for LXD network [^"]*' <<<"$rule" | cut -d' ' -f5)
            if gone "$bridge"; then
                # iptables-save quotes its output for a shell: "-A CHAIN ..." as words.
                eval "set -- $rule"
                "$tool" -t "$table" -D "${@:2}"
                removed=$((removed + 1))
            fi
        done < <("$tool-save" -t "$table" 2>/dev/null | grep -- '^-A .*generated for LXD network' || true)
    done
done
echo "$removed"
