//! The Admin UI's login, as `@socket.io/admin-ui`'s `auth: { type: "basic" }`: the handshake's
//! `auth` holds `{username, password}` (checked against a bcrypt hash) or `{sessionId}` (a
//! session an earlier login opened). A refusal's message is `invalid credentials`, on which the
//! UI reopens its login form.
//!
//! A bcrypt check costs tens of milliseconds of CPU by design, so password tries are rationed
//! before any is checked: a few per address, then one every few seconds, and a bounded number per
//! second for the whole node; a try beyond that is refused at the cost of a map lookup.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use serde_json::Value;
use subtle::ConstantTimeEq;

use super::sessions::{SessionError, Sessions};
use crate::rate_limit::RateLimiter;

/// The message the UI recognizes as a wrong login.
pub const INVALID_CREDENTIALS: &str = "invalid credentials";
/// The message of a try beyond the ration.
pub const TOO_MANY_TRIES: &str = "too many login attempts: wait a minute";

/// Password tries per address: a burst, then one per this many seconds.
const TRIES_PER_ADDRESS_BURST: f64 = 5.0;
const SECONDS_PER_TRY: f64 = 12.0;
/// Password checks per second of the whole node (bcrypt at cost 12 takes ~0.25 s of a core).
const CHECKS_PER_SEC: f64 = 4.0;
/// Addresses remembered; beyond, the fullest buckets (the least suspicious) are forgotten.
const MAX_ADDRESSES: usize = 10_000;

/// What a handshake's `auth` offers.
#[derive(Debug, PartialEq)]
pub enum Offer {
    Password { username: String, password: String },
    Session(String),
    Nothing,
}

impl Offer {
    pub fn of(auth: Option<&Value>) -> Self {
        let field = |name: &str| auth.and_then(|a| a.get(name)).and_then(Value::as_str);
        if let Some(id) = field("sessionId") {
            return Self::Session(id.to_string());
        }
        match (field("username"), field("password")) {
            (Some(username), Some(password)) => Self::Password {
                username: username.to_string(),
                password: password.to_string(),
            },
            _ => Self::Nothing,
        }
    }
}

/// How a login ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// A password login: the new session to hand to the UI.
    NewSession(String),
    /// A known session.
    Resumed,
    Refused(&'static str),
}

pub struct Login {
    username: String,
    password_hash: Arc<str>,
    sessions: Sessions,
    per_address: Mutex<HashMap<IpAddr, RateLimiter>>,
    node: Mutex<RateLimiter>,
}

impl Login {
    pub fn new(username: &str, password_hash: &str, sessions: Sessions) -> Self {
        Self {
            username: username.to_string(),
            password_hash: password_hash.into(),
            sessions,
            per_address: Mutex::default(),
            node: Mutex::new(RateLimiter::new(CHECKS_PER_SEC, CHECKS_PER_SEC)),
        }
    }

    pub async fn attempt(&self, offer: Offer, from: IpAddr) -> Result<Outcome, SessionError> {
        match offer {
            Offer::Session(id) => Ok(if self.sessions.is_open(&id).await? {
                Outcome::Resumed
            } else {
                Outcome::Refused(INVALID_CREDENTIALS)
            }),
            Offer::Password { username, password } => {
                if !self.may_try(from) {
                    return Ok(Outcome::Refused(TOO_MANY_TRIES));
                }
                if self.check(&username, password).await {
                    Ok(Outcome::NewSession(self.sessions.open().await?))
                } else {
                    Ok(Outcome::Refused(INVALID_CREDENTIALS))
                }
            }
            Offer::Nothing => Ok(Outcome::Refused(INVALID_CREDENTIALS)),
        }
    }

    /// Takes a try from the address's ration and the node's.
    fn may_try(&self, from: IpAddr) -> bool {
        let mut addresses = self.per_address.lock().unwrap();
        if addresses.len() >= MAX_ADDRESSES && !addresses.contains_key(&from) {
            addresses.retain(|_, bucket| !bucket.is_full());
            if addresses.len() >= MAX_ADDRESSES {
                return false;
            }
        }
        let bucket = addresses
            .entry(from)
            .or_insert_with(|| RateLimiter::new(1.0 / SECONDS_PER_TRY, TRIES_PER_ADDRESS_BURST));
        bucket.try_take() && self.node.lock().unwrap().try_take()
    }

    /// The username compared in constant time, the password by bcrypt off the async threads.
    /// The hash is checked even for a wrong username, so both fail in the same time.
    async fn check(&self, username: &str, password: String) -> bool {
        let user_ok: bool = username.as_bytes().ct_eq(self.username.as_bytes()).into();
        let hash = self.password_hash.clone();
        let password_ok = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        user_ok && password_ok
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn login() -> Login {
        let hash = bcrypt::hash("secret", 4).unwrap();
        Login::new("ops", &hash, Sessions::memory())
    }

    #[test]
    fn an_offer_is_a_session_a_password_or_nothing() {
        assert_eq!(
            Offer::of(Some(&json!({"sessionId": "ab"}))),
            Offer::Session("ab".into())
        );
        assert_eq!(
            Offer::of(Some(&json!({"username": "u", "password": "p"}))),
            Offer::Password {
                username: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(Offer::of(Some(&json!({"sessionId": null}))), Offer::Nothing);
        assert_eq!(
            Offer::of(Some(&json!({"username": 1, "password": "p"}))),
            Offer::Nothing
        );
        assert_eq!(Offer::of(None), Offer::Nothing);
    }

    #[tokio::test]
    async fn a_password_opens_a_session_that_is_resumed_later() {
        let login = login();
        let from = IpAddr::from([10, 0, 0, 1]);
        let offer = |u: &str, p: &str| Offer::Password {
            username: u.into(),
            password: p.into(),
        };
        let Outcome::NewSession(id) = login.attempt(offer("ops", "secret"), from).await.unwrap()
        else {
            panic!("the right password is refused");
        };
        assert_eq!(
            login.attempt(Offer::Session(id), from).await.unwrap(),
            Outcome::Resumed
        );
        for (u, p) in [("ops", "wrong"), ("other", "secret")] {
            assert_eq!(
                login.attempt(offer(u, p), from).await.unwrap(),
                Outcome::Refused(INVALID_CREDENTIALS)
            );
        }
    }

    #[tokio::test]
    async fn password_tries_beyond_the_ration_are_refused_unchecked() {
        let login = login();
        let from = IpAddr::from([10, 0, 0, 2]);
        let mut refused_unchecked = 0;
        for _ in 0..20 {
            let offer = Offer::Password {
                username: "ops".into(),
                password: "guess".into(),
            };
            if login.attempt(offer, from).await.unwrap() == Outcome::Refused(TOO_MANY_TRIES) {
                refused_unchecked += 1;
            }
        }
        // The node's ration (4) is smaller than the address's burst (5).
        assert_eq!(refused_unchecked, 16);
    }
}
