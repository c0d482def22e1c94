//! Lua scripts run by hash: Redis keeps compiled scripts, so only the 40-byte hash travels, and a
//! script Redis does not know (first use, or after a restart) is sent once in full.

use fred::{clients::Client, interfaces::LuaInterface, types::FromValue, util::sha1_hash};

/// A Lua script and its SHA-1.
pub struct Script {
    source: &'static str,
    hash: String,
}

impl Script {
    pub fn new(source: &'static str) -> Self {
        Self {
            source,
            hash: sha1_hash(source),
        }
    }

    /// Runs the script with `keys` and `args`.
    pub async fn run<R: FromValue>(
        &self,
        client: &Client,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<R, fred::error::Error> {
        match client
            .evalsha::<R, _, _, _>(&self.hash, keys.clone(), args.clone())
            .await
        {
            Err(err) if err.details().starts_with("NOSCRIPT") => {
                client.eval(self.source, keys, args).await
            }
            other => other,
        }
    }
}
