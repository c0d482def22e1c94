# Runs a Redis Cluster of three masters in one container, for the tests
# (tests/src/redis_cluster.rs) and the benchmark (bench/src/redis.rs), which pass it to `sh -c`.
# Arguments: the three masters' ports P (each node's cluster bus is on P + 10000), optionally
# `replicas` and three more ports for one replica of each master, then optionally an address to
# bind. Each node announces 127.0.0.1:P, so clients on the host reach the addresses the cluster
# hands out. Prints CLUSTER READY once every node reports cluster_state:ok, then stays up.
set -e
p0=$1 p1=$2 p2=$3
shift 3
replicas=0 nodes="$p0 $p1 $p2"
if [ "${1:-}" = replicas ]; then
  replicas=1 nodes="$nodes $2 $3 $4"
  shift 4
fi
bind=${1:-}
for p in $nodes; do
  redis-server ${bind:+--bind "$bind"} --port "$p" --protected-mode no \
    --cluster-enabled yes --cluster-config-file "/tmp/nodes-$p.conf" \
    --cluster-announce-ip 127.0.0.1 --cluster-node-timeout 2000 \
    --save '' --appendonly no --dir /tmp --daemonize yes
done
addresses=""
for p in $nodes; do
  until redis-cli -p "$p" ping >/dev/null 2>&1; do sleep 0.05; done
  addresses="$addresses 127.0.0.1:$p"
done
# With replicas, the first three addresses become the masters and the others their replicas.
redis-cli --cluster create $addresses --cluster-replicas "$replicas" --cluster-yes
for p in $nodes; do
  until redis-cli -p "$p" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
done
echo CLUSTER READY
exec tail -f /dev/null
