//! A Redis Cluster of three masters (no replicas) in one container of the local `redis:7` image,
//! started with testcontainers.
//!
//! One container, because the three `redis-server`s must reach each other on their cluster bus
//! ports (`P + 10000`), which stay inside it: nothing to network between containers. Each node
//! listens on a host port mapped to the same port inside, and announces `127.0.0.1:P`, so the
//! addresses the cluster hands out (`CLUSTER SLOTS`/`SHARDS`, `MOVED` redirects) work from the
//! host, where the clients under test run.

use std::collections::BTreeSet;

use anyhow::Context;
use testcontainers_modules::testcontainers::{
    ContainerAsync, GenericImage, ImageExt,
    core::{IntoContainerPort, WaitFor},
    runners::AsyncRunner,
};

use crate::process::free_port;

/// What the container prints once every node reports `cluster_state:ok`.
const READY: &str = "CLUSTER READY";

/// Three masters sharing the 16384 slots, as `redis-cli --cluster create` splits them.
pub struct RedisCluster {
    container: ContainerAsync<GenericImage>,
    ports: [u16; 3],
}

impl RedisCluster {
    /// Starts the cluster and returns once all three nodes agree it is up (`cluster_state:ok`).
    pub async fn start() -> anyhow::Result<Self> {
        let ports = cluster_ports()?;
        let [p0, p1, p2] = ports;
        let script = format!(
            "set -e; \
             for p in {p0} {p1} {p2}; do \
               redis-server --port $p --cluster-enabled yes --cluster-config-file /tmp/nodes-$p.conf \
                 --cluster-announce-ip 127.0.0.1 --cluster-node-timeout 2000 \
                 --protected-mode no --save '' --appendonly no --dir /tmp --daemonize yes; \
             done; \
             for p in {p0} {p1} {p2}; do until redis-cli -p $p ping >/dev/null 2>&1; do sleep 0.05; done; done; \
             redis-cli --cluster create 127.0.0.1:{p0} 127.0.0.1:{p1} 127.0.0.1:{p2} \
               --cluster-replicas 0 --cluster-yes; \
             for p in {p0} {p1} {p2}; do \
               until redis-cli -p $p cluster info | grep -q cluster_state:ok; do sleep 0.1; done; \
             done; \
             echo {READY}; \
             exec tail -f /dev/null"
        );
        let container = GenericImage::new("redis", "7")
            .with_wait_for(WaitFor::message_on_stdout(READY))
            .with_cmd(["sh", "-c", &script])
            .with_mapped_port(p0, p0.tcp())
            .with_mapped_port(p1, p1.tcp())
            .with_mapped_port(p2, p2.tcp())
            .start()
            .await
            .context(
                "starting a 3-master Redis Cluster in redis:7 (run scripts/test-env.sh to prepare Docker and the image)",
            )?;
        Ok(Self { container, ports })
    }

    /// fred's URL for a clustered config: the first node, the others as `node` parameters (any
    /// one would do: fred discovers the rest from `CLUSTER SLOTS`).
    pub fn url(&self) -> String {
        let [p0, p1, p2] = self.ports;
        format!("redis-cluster://127.0.0.1:{p0}?node=127.0.0.1:{p1}&node=127.0.0.1:{p2}")
    }

    /// The nodes' ports, the same on the host and in the container.
    pub fn ports(&self) -> [u16; 3] {
        self.ports
    }

    /// The container, to run `redis-cli` in it (for example to shut one master down).
    pub fn container(&self) -> &ContainerAsync<GenericImage> {
        &self.container
    }
}

/// Three distinct free host ports whose cluster bus ports (`P + 10000`) exist.
fn cluster_ports() -> anyhow::Result<[u16; 3]> {
    let mut ports = BTreeSet::new();
    for _ in 0..100 {
        let port = free_port()?;
        if port < u16::MAX - 10_000 {
            ports.insert(port);
        }
        if let [p0, p1, p2] = ports.iter().copied().collect::<Vec<_>>()[..] {
            return Ok([p0, p1, p2]);
        }
    }
    anyhow::bail!("no three free ports below {}", u16::MAX - 10_000)
}
