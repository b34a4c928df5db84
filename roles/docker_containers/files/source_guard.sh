#!/bin/bash
# source_guard.sh CHAIN BRIDGE [IP MAC]...
# Packets entering from the fleet's Docker bridge (to another of its containers,
# or routed on to the LXD bridge) must carry the source address and MAC of one
# of the fleet's containers: a container cannot pass itself off as another
# container, or as the gateway the controller's administration key is pinned
# to (from="..."). The rules live in CHAIN, jumped to from DOCKER-USER; a
# changed set is built beside the old one and swapped in, so no packet ever
# meets an empty chain. Prints "changed" or "unchanged".
set -euo pipefail
chain=$1 bridge=$2
shift 2
want=""
while [ $# -ge 2 ]; do
    mac=$(printf '%s' "$2" | tr 'A-F' 'a-f')
    want+="-A $chain -s $1/32 -i $bridge -m mac --mac-source $mac -j RETURN"$'\n'
    shift 2
done
want+="-A $chain -i $bridge -j DROP"
have=$(iptables -S "$chain" 2>/dev/null | grep -v -- "^-N " || true)
if [ "$have" = "$want" ] && iptables -C DOCKER-USER -i "$bridge" -j "$chain" 2>/dev/null; then
    echo unchanged
    exit 0
fi
new="$chain-new"
iptables -N "$new" 2>/dev/null || iptables -F "$new"
while IFS= read -r rule; do
    read -ra words <<<"${rule/#-A $chain /-A $new }"
    iptables "${words[@]}"
done <<<"$want"
iptables -I DOCKER-USER -i "$bridge" -j "$new"
while iptables -D DOCKER-USER -i "$bridge" -j "$chain" 2>/dev/null; do :; done
if iptables -S "$chain" >/dev/null 2>&1; then
    iptables -F "$chain"
    iptables -X "$chain"
fi
iptables -E "$new" "$chain"
echo changed
