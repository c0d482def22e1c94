//! A Redis function library of one function, loaded when Redis does not know it yet: what a
//! script becomes when it must keep state of its own Redis between calls (see `lua/post.lua`).

use fred::{
    clients::Client,
    interfaces::FunctionInterface,
    types::{FromValue, Value},
    util::sha1_hash,
};

/// A function library: the Lua of one `.lua` file that defines a local function `entry`, and
/// the registration of it under a name taken from the code's hash, so nodes of two versions in
/// one Redis each call their own and never replace each other's library.
pub struct RedisFunction {
    name: String,
    library: String,
}

impl RedisFunction {
    pub fn new(lua: &str, entry: &str) -> Self {
        let version = &sha1_hash(lua)[..16];
        let name = format!("chat_{entry}_{version}");
        let library =
            format!("#!lua name={name}\n{lua}\nredis.register_function('{name}', {entry})\n");
        Self { name, library }
    }

    /// `FCALL`s the function, after loading its library on every master if Redis answers that
    /// it has no such function (a Redis that restarted empty, a master added to a cluster).
    pub async fn call<R>(
        &self,
        client: &Client,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<R, fred::error::Error>
    where
        R: FromValue,
    {
        match client
            .fcall(self.name.as_str(), keys.clone(), args.clone())
            .await
        {
            Err(error) if error.details().contains("Function not found") => {
                client
                    .function_load_cluster::<(), _>(true, self.library.as_str())
                    .await?;
                client.fcall(self.name.as_str(), keys, args).await
            }
            result => result,
        }
    }
}
