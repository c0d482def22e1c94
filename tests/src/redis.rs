//! Redis 7 in a container, started with testcontainers. On a fixed host port, so a restarted
//! container comes back at the same address.

use anyhow::Context;

use crate::process::free_port;
use testcontainers_modules::{
    redis::Redis,
    testcontainers::{ContainerAsync, ImageExt, core::IntoContainerPort, runners::AsyncRunner},
};

pub struct TestRedis {
    container: ContainerAsync<Redis>,
    port: u16,
}

impl TestRedis {
    pub async fn start() -> anyhow::Result<Self> {
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
        Ok(Self { container, port })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops and starts the container: every connection is cut and the data is gone.
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.container.stop().await?;
        self.container.start().await?;
        Ok(())
    }
}
