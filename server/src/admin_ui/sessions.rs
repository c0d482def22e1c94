//! Admin UI sessions: a login answers a session id, which the UI stores and presents instead of
//! the password when the page is reloaded. In Redis they are shared, so a reload that a balancer
//! sends to another node still works; a single node keeps them in memory.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use fred::{
    clients::Client,
    interfaces::KeysInterface,
    types::{Expiration, SetOptions},
};

/// How long a session lasts, as Node's Redis session store.
pub const SESSION_TTL: Duration = Duration::from_secs(24 * 3600);

/// Hex characters of a session id (128 random bits).
const ID_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("the admin session store failed: {0}")]
pub struct SessionError(#[from] fred::error::Error);

pub struct Sessions(Store);

enum Store {
    Redis { client: Client, prefix: String },
    Memory(Mutex<HashMap<String, Instant>>),
}

impl Sessions {
    /// Sessions in Redis, under `{key}:admin-ui:session:`.
    pub fn redis(client: Client, key: &str) -> Self {
        Self(Store::Redis {
            client,
            prefix: format!("{key}:admin-ui:session:"),
        })
    }

    pub fn memory() -> Self {
        Self(Store::Memory(Mutex::default()))
    }

    /// A new session, valid for [`SESSION_TTL`].
    pub async fn open(&self) -> Result<String, SessionError> {
        let id = format!("{:032x}", rand::random::<u128>());
        match &self.0 {
            Store::Redis { client, prefix } => {
                let ttl = Expiration::EX(SESSION_TTL.as_secs() as i64);
                let _: () = client
                    .set(
                        format!("{prefix}{id}"),
                        1,
                        Some(ttl),
                        Some(SetOptions::NX),
                        false,
                    )
                    .await?;
            }
            Store::Memory(sessions) => {
                let mut sessions = sessions.lock().unwrap();
                let now = Instant::now();
                sessions.retain(|_, expires| *expires > now);
                sessions.insert(id.clone(), now + SESSION_TTL);
            }
        }
        Ok(id)
    }

    /// Whether `id` names a live session. Anything that is not a session id's shape is refused
    /// without asking the store.
    pub async fn is_open(&self, id: &str) -> Result<bool, SessionError> {
        if id.len() != ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        match &self.0 {
            Store::Redis { client, prefix } => {
                let found: u32 = client.exists(format!("{prefix}{id}")).await?;
                Ok(found == 1)
            }
            Store::Memory(sessions) => Ok(sessions
                .lock()
                .unwrap()
                .get(id)
                .is_some_and(|expires| *expires > Instant::now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_opens_and_only_its_id_is_accepted() {
        let sessions = Sessions::memory();
        let id = sessions.open().await.unwrap();
        assert_eq!(id.len(), ID_LEN);
        assert!(sessions.is_open(&id).await.unwrap());
        assert!(!sessions.is_open(&"0".repeat(ID_LEN)).await.unwrap());
        assert!(!sessions.is_open("").await.unwrap());
        assert!(!sessions.is_open(&format!("{id}x")).await.unwrap());
    }
}
