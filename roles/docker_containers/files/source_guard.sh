#!/bin/bash
# source_guard.sh CHAIN BRIDGE NETWORK
# Packets entering from the fleet's Docker bridge (to another of its containers,
# or routed on to the LXD bridge) must carry the source address and MAC of one
# of the containers on the fleet's Docker NETWORK, as Docker reports them (so
# every run on this machine builds the same set, whichever of the fleet's
# containers its inventory placed here): a container cannot pass itself off as
# another container, or as the gateway the controller's administration key is
# pinned to (from="..."). The rules live in CHAIN, jumped to from DOCKER-USER; a
# changed set is built beside the old one and swapped in, so no packet ever
# meets an empty chain. Prints "changed" or "unchanged".
set -euo pipefail
chain=$1 bridge=$2 network=$3
want=""
while read -r address mac; do
    [ -n "$address" ] || continue
    mac=$(printf '%s' "$mac" | tr 'A-F' 'a-f')
    want+="-A $chain -s ${address%/*}/32 -i $bridge -m mac --mac-source $mac -j RETURN"$'\n'
done < <(docker network inspect "$network" \
             -f '{{range .Containers}}{{.IPv4Address}} {{.MacAddress}}{{println}}{{end}}' | sort)
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
