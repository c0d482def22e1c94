//! Redis 7 in a container, started with testcontainers. On a fixed host port, so a restarted
//! container comes back at the same address.
//!
//! With `TEST_REDIS=cluster`, [`TestRedis::start`] starts a 3-master Redis Cluster instead, and
//! its URL (`redis-cluster://…`) puts the nodes in sharded mode: the same suites then run on it.

use anyhow::Context;

use crate::{process::free_port, redis_cluster::RedisCluster};
use testcontainers_modules::{
    redis::Redis,
    testcontainers::{ContainerAsync, ImageExt, core::IntoContainerPort, runners::AsyncRunner},
};

pub struct TestRedis {
    backing: Backing,
}

enum Backing {
    Single {
        container: ContainerAsync<Redis>,
        port: u16,
    },
    Cluster(RedisCluster),
}

/// Whether the suites run on a Redis Cluster, in sharded mode (`TEST_REDIS=cluster`).
pub fn on_cluster() -> bool {
    std::env::var("TEST_REDIS").as_deref() == Ok("cluster")
}

impl TestRedis {
    /// A standalone Redis, or a Redis Cluster with `TEST_REDIS=cluster`.
    pub async fn start() -> anyhow::Result<Self> {
        if on_cluster() {
            return Ok(Self {
                backing: Backing::Cluster(RedisCluster::start().await?),
            });
        }
        Self::start_on(free_port()?).await
    }

    /// Starts Redis on the host port `port`.
    pub async fn start_on(port: u16) -> anyhow::Result<Self> {
        let container = Redis::default()
            .with_tag("7")
            .with_mapped_port(port, 6379.tcp())
            .start()
            .await
            .context(
                "starting redis:7 (run scripts/test-env.sh to prepare Docker and the image)",
            )?;
        Ok(Self {
            backing: Backing::Single { container, port },
        })
    }

    pub fn url(&self) -> String {
        match &self.backing {
            Backing::Single { port, .. } => format!("redis://127.0.0.1:{port}"),
            Backing::Cluster(cluster) => cluster.url(),
        }
    }

    /// Stops and starts the container: every connection is cut and the data is gone.
    pub async fn restart(&self) -> anyhow::Result<()> {
        let Backing::Single { container, .. } = &self.backing else {
            anyhow::bail!("restarting a Redis Cluster is not supported");
        };
        container.stop().await?;
        container.start().await?;
        Ok(())
    }
}
