//! What the examples share: their ports, and the choice of Redis or an in-process hub.

/// The port in the environment variable `var`, else `default`.
pub fn port(var: &str, default: u16) -> anyhow::Result<u16> {
    Ok(std::env::var(var).map_or(Ok(default), |p| p.parse())?)
}

/// Runs `serve(driver, port)` for each port at once: each node on a connection of its own to the
/// Redis of `REDIS_URL` or, without it, to one in-process hub. A cluster either way, same code.
macro_rules! on_each_node {
    ($serve:ident, $($port:expr),+ $(,)?) => {
        match std::env::var("REDIS_URL") {
            Ok(url) => {
                let connect = || {
                    socketio_cluster::RedisDriver::connect(
                        socketio_cluster::RedisDriverConfig::new(url.clone()),
                    )
                };
                tokio::try_join!($(async { $serve(connect().await?, $port).await }),+)?;
            }
            Err(_) => {
                let hub = socketio_cluster::MemoryHub::new();
                tokio::try_join!($($serve(hub.driver(), $port)),+)?;
            }
        }
    };
}
