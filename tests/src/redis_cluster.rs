//! A Redis Cluster of three masters (and, if asked, one replica of each) in one container of the
//! local `redis:7` image, started with testcontainers.
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

/// Starts the three nodes and the cluster in the container (shared with the benchmark).
const NODES_SCRIPT: &str = include_str!("../../scripts/redis-cluster-nodes.sh");

/// Three masters sharing the 16384 slots, as `redis-cli --cluster create` splits them.
pub struct RedisCluster {
    container: ContainerAsync<GenericImage>,
    ports: [u16; 3],
    replicas: Option<[u16; 3]>,
}

impl RedisCluster {
    /// Starts the cluster and returns once all three nodes agree it is up (`cluster_state:ok`).
    pub async fn start() -> anyhow::Result<Self> {
        Self::launch(false).await
    }

    /// As [`RedisCluster::start`], each master with a replica that takes over when it fails
    /// (after the cluster's node timeout, 2 s).
    pub async fn with_replicas() -> anyhow::Result<Self> {
        Self::launch(true).await
    }

    async fn launch(with_replicas: bool) -> anyhow::Result<Self> {
        let all = cluster_ports(if with_replicas { 6 } else { 3 })?;
        let ports = [all[0], all[1], all[2]];
        let replicas = with_replicas.then(|| [all[3], all[4], all[5]]);
        let mut cmd = vec![
            "sh".to_string(),
            "-c".to_string(),
            NODES_SCRIPT.to_string(),
            "redis-cluster-nodes".to_string(),
        ];
        cmd.extend(ports.iter().map(u16::to_string));
        if let Some(replicas) = replicas {
            cmd.push("replicas".to_string());
            cmd.extend(replicas.iter().map(u16::to_string));
        }
        let mut image = GenericImage::new("redis", "7")
            .with_wait_for(WaitFor::message_on_stdout(READY))
            .with_cmd(cmd);
        for port in &all {
            image = image.with_mapped_port(*port, port.tcp());
        }
        let container = image.start().await.context(
            "starting a Redis Cluster in redis:7 (run scripts/test-env.sh to prepare Docker and the image)",
        )?;
        Ok(Self {
            container,
            ports,
            replicas,
        })
    }

    /// fred's URL for a clustered config: the first node, the others as `node` parameters (any
    /// one would do: fred discovers the rest from `CLUSTER SLOTS`).
    pub fn url(&self) -> String {
        let [p0, p1, p2] = self.ports;
        format!("redis-cluster://127.0.0.1:{p0}?node=127.0.0.1:{p1}&node=127.0.0.1:{p2}")
    }

    /// The masters' ports, the same on the host and in the container.
    pub fn ports(&self) -> [u16; 3] {
        self.ports
    }

    /// The replicas' ports (of the masters in the same order), if it has replicas.
    pub fn replica_ports(&self) -> Option<[u16; 3]> {
        self.replicas
    }

    /// The container, to run `redis-cli` in it (for example to shut one master down).
    pub fn container(&self) -> &ContainerAsync<GenericImage> {
        &self.container
    }
}

/// `n` distinct free host ports whose cluster bus ports (`P + 10000`) exist.
fn cluster_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let mut ports = BTreeSet::new();
    for _ in 0..100 {
        let port = free_port()?;
        if port < u16::MAX - 10_000 {
            ports.insert(port);
        }
        if ports.len() == n {
            return Ok(ports.into_iter().collect());
        }
    }
    anyhow::bail!("no {n} free ports below {}", u16::MAX - 10_000)
}
