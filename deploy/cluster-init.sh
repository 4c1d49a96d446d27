#!/bin/sh
# Creates the engine cluster once: the 16,384 slots spread over the masters, each master
# with VALKEY_REPLICAS replicas (valkey-cli picks which nodes are which). Run by
# compose.yaml's one-shot cluster-init service after the nodes answer. A cluster that
# already has its slots (a restart) is left as it is. Either way it exits 0 once the cluster
# reports cluster_state:ok and every replica is in sync with its master, which is what the
# servers wait for (with GIFTING_REPLICA_ACKS they need the replicas to accept writes).
#
# VALKEY_NODES: the nodes as host:port, space-separated.
# VALKEY_REPLICAS: replicas per master (default 0: every node a master).
set -eu

VALKEY_NODES=${VALKEY_NODES:-"valkey-1:6379 valkey-2:6379 valkey-3:6379"}
VALKEY_REPLICAS=${VALKEY_REPLICAS:-0}

cluster_info() {
    valkey-cli -h "${1%:*}" -p "${1##*:}" cluster info | tr -d '\r'
}

replication_info() {
    valkey-cli -h "${1%:*}" -p "${1##*:}" info replication | tr -d '\r'
}

for node in $VALKEY_NODES; do
    until valkey-cli -h "${node%:*}" -p "${node##*:}" ping >/dev/null 2>&1; do
        echo "waiting for $node"
        sleep 1
    done
done

first=${VALKEY_NODES%% *}
if cluster_info "$first" | grep -q '^cluster_slots_assigned:0$'; then
    # CLUSTER MEET takes addresses, not names.
    addresses=""
    for node in $VALKEY_NODES; do
        address=$(getent hosts "${node%:*}" | cut -d ' ' -f 1)
        addresses="$addresses $address:${node##*:}"
    done
    # shellcheck disable=SC2086 # one argument per node
    valkey-cli --cluster create $addresses --cluster-replicas "$VALKEY_REPLICAS" --cluster-yes
fi

until cluster_info "$first" | grep -q '^cluster_state:ok$'; do
    echo "waiting for cluster_state:ok"
    sleep 1
done
for node in $VALKEY_NODES; do
    while replication_info "$node" | grep -q '^role:slave$' &&
        ! replication_info "$node" | grep -q '^master_link_status:up$'; do
        echo "waiting for replica $node to sync"
        sleep 1
    done
done
echo "cluster ready: $VALKEY_NODES"
