//! Who a socket is, decided at the handshake: a verified JWT (`AUTH_SECRET` set), or the user id
//! the client claims in its auth payload or query string, or a fresh anonymous chatter id.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::protocol::{MAX_ID_LEN, MAX_NAME_LEN, Member, check_name};

/// The socket data every node can see: `{ userId, name }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub user_id: String,
    pub name: String,
    /// A server-made chatter id the client may replace by the one it had before a refresh.
    #[serde(skip)]
    pub anonymous: bool,
}

impl Identity {
    pub fn member(&self) -> Member {
        Member {
            id: self.user_id.clone(),
            name: self.name.clone(),
        }
    }

    /// Takes over the chatter id an anonymous client kept from an earlier connection.
    pub fn adopt_chatter_id(&mut self, chatter_id: &str) -> bool {
        if !self.anonymous || !is_chatter_id(chatter_id) {
            return false;
        }
        if self.name == default_name(&self.user_id, true) {
            self.name = default_name(chatter_id, true);
        }
        self.user_id = chatter_id.to_string();
        true
    }
}

/// Why a handshake is refused; the message is the connect error the client sees.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unauthorized")]
    Unauthorized,
    #[error("bad_request: {0}")]
    BadRequest(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
}

/// Decides the identity of a connecting socket from its auth payload and query string.
pub fn identify(
    auth: &Value,
    query: Option<&str>,
    secret: Option<&str>,
) -> Result<Identity, AuthError> {
    let claimed_name = match auth.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => {
            check_name("name", name, MAX_NAME_LEN).map_err(|e| AuthError::BadRequest(e.message))?;
            Some(name.trim().to_string())
        }
        Some(_) => return Err(AuthError::BadRequest("name must be a string".into())),
    };
    let (user_id, token_name, anonymous) = match secret {
        Some(secret) => {
            let token = auth
                .get("token")
                .and_then(Value::as_str)
                .ok_or(AuthError::Unauthorized)?;
            let claims = verify(token, secret)?;
            (claims.sub, claims.name, false)
        }
        None => match claimed_user_id(auth, query)? {
            Some(id) => (id, None, false),
            None => (new_chatter_id(), None, true),
        },
    };
    check_name("userId", &user_id, MAX_ID_LEN).map_err(|e| AuthError::BadRequest(e.message))?;
    // A verified token's claims win over what the client says of itself.
    let name = token_name
        .or(claimed_name)
        .unwrap_or_else(|| default_name(&user_id, anonymous));
    Ok(Identity {
        user_id,
        name,
        anonymous,
    })
}

/// Clock skew tolerated between the token's issuer and this node, for `exp` and `nbf`.
const TOKEN_LEEWAY_SECS: u64 = 30;

fn verify(token: &str, secret: &str) -> Result<Claims, AuthError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims = HashSet::from(["sub".to_string(), "exp".to_string()]);
    validation.validate_nbf = true;
    validation.leeway = TOKEN_LEEWAY_SECS;
    jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map(|data| data.claims)
    .map_err(|err| {
        tracing::info!(%err, "handshake refused: invalid token");
        AuthError::Unauthorized
    })
}

/// `auth.userId` (string or number), else `?userId=` of the query string.
fn claimed_user_id(auth: &Value, query: Option<&str>) -> Result<Option<String>, AuthError> {
    match auth.get("userId") {
        Some(Value::String(id)) => return Ok(Some(id.clone())),
        Some(Value::Number(n)) => return Ok(Some(n.to_string())),
        None | Some(Value::Null) => {}
        Some(_) => return Err(AuthError::BadRequest("userId must be a string".into())),
    }
    Ok(query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find_map(|(k, v)| (k == "userId" && !v.is_empty()).then(|| v.into_owned()))
    }))
}

const CHATTER_PREFIX: &str = "anon-";

fn new_chatter_id() -> String {
    format!(
        "{CHATTER_PREFIX}{:012x}",
        rand::random::<u64>() & 0xffff_ffff_ffff
    )
}

fn is_chatter_id(id: &str) -> bool {
    id.strip_prefix(CHATTER_PREFIX)
        .is_some_and(|hex| hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn default_name(user_id: &str, anonymous: bool) -> String {
    if anonymous {
        format!("Guest {}", &user_id[user_id.len().saturating_sub(4)..])
    } else {
        user_id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn in_secs(secs: u64) -> u64 {
        jsonwebtoken::get_current_timestamp() + secs
    }

    fn token(secret: &str, claims: Value) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn user_id_comes_from_auth_then_query_then_a_new_chatter_id() {
        let id = identify(
            &json!({ "userId": "u1", "name": "Ann" }),
            Some("userId=q"),
            None,
        )
        .unwrap();
        assert_eq!(
            (id.user_id.as_str(), id.name.as_str(), id.anonymous),
            ("u1", "Ann", false)
        );
        let id = identify(&json!({}), Some("EIO=4&userId=5"), None).unwrap();
        assert_eq!((id.user_id.as_str(), id.name.as_str()), ("5", "5"));
        let id = identify(&json!({ "userId": 7 }), None, None).unwrap();
        assert_eq!(id.user_id, "7");
        let id = identify(&json!({}), Some("userId=%EA%B9%80%EC%9E%AC%ED%99%98"), None).unwrap();
        assert_eq!(
            (id.user_id.as_str(), id.name.as_str()),
            ("김재환", "김재환")
        );
        let id = identify(&json!({}), Some("userId=a%40b.com"), None).unwrap();
        assert_eq!(id.user_id, "a@b.com");
        let anon = identify(&Value::Null, None, None).unwrap();
        assert!(anon.anonymous && is_chatter_id(&anon.user_id));
    }

    #[test]
    fn bad_types_are_refused() {
        assert!(matches!(
            identify(&json!({ "userId": [1] }), None, None),
            Err(AuthError::BadRequest(_))
        ));
        assert!(matches!(
            identify(&json!({ "name": 3 }), None, None),
            Err(AuthError::BadRequest(_))
        ));
        assert!(matches!(
            identify(&json!({ "userId": "" }), None, None),
            Err(AuthError::BadRequest(_))
        ));
    }

    #[test]
    fn with_a_secret_only_a_valid_token_gets_in() {
        let good = token(
            "s3cret",
            json!({ "sub": "alice", "name": "Alice", "exp": in_secs(600) }),
        );
        let id = identify(
            &json!({ "token": good, "userId": "mallory", "name": "Mallory" }),
            Some("userId=mallory"),
            Some("s3cret"),
        )
        .unwrap();
        assert_eq!((id.user_id.as_str(), id.name.as_str()), ("alice", "Alice"));
        let unnamed = token("s3cret", json!({ "sub": "bob", "exp": in_secs(600) }));
        let id = identify(
            &json!({ "token": unnamed, "name": "Bobby" }),
            None,
            Some("s3cret"),
        )
        .unwrap();
        assert_eq!(
            (id.user_id.as_str(), id.name.as_str()),
            ("bob", "Bobby"),
            "a name the token does not give may come from the client"
        );
        let without_exp = token("s3cret", json!({ "sub": "alice" }));
        let not_yet = token(
            "s3cret",
            json!({ "sub": "alice", "exp": in_secs(600), "nbf": in_secs(300) }),
        );
        for refused in [without_exp, not_yet] {
            assert!(matches!(
                identify(&json!({ "token": refused }), None, Some("s3cret")),
                Err(AuthError::Unauthorized)
            ));
        }
        let forged = token("other", json!({ "sub": "alice" }));
        assert!(matches!(
            identify(&json!({ "token": forged }), None, Some("s3cret")),
            Err(AuthError::Unauthorized)
        ));
        let expired = token("s3cret", json!({ "sub": "alice", "exp": 1 }));
        assert!(matches!(
            identify(&json!({ "token": expired }), None, Some("s3cret")),
            Err(AuthError::Unauthorized)
        ));
        assert!(matches!(
            identify(&json!({}), None, Some("s3cret")),
            Err(AuthError::Unauthorized)
        ));
        assert!(matches!(
            identify(&json!({ "token": "garbage" }), None, Some("s3cret")),
            Err(AuthError::Unauthorized)
        ));
    }

    #[test]
    fn anonymous_chatters_keep_their_id_across_refreshes() {
        let mut anon = identify(&json!({}), None, None).unwrap();
        assert!(anon.adopt_chatter_id("anon-00000000abcd"));
        assert_eq!(
            (anon.user_id.as_str(), anon.name.as_str()),
            ("anon-00000000abcd", "Guest abcd")
        );
        assert!(
            !anon.adopt_chatter_id("alice"),
            "a named user cannot be taken over"
        );
        let mut named = identify(&json!({ "userId": "bob" }), None, None).unwrap();
        assert!(!named.adopt_chatter_id("anon-00000000abcd"));
    }
}
