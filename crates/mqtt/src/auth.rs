//! Users and access rules: the `--mqtt-auth` file.
//!
//! ```toml
//! allow_anonymous = false          # default: false once a file is given
//!
//! [users.alice]
//! password = "$argon2id$v=19$..."  # `strata mqtt passwd` prints this
//! publish = ["sensors/%u/#"]       # filters the user may publish to (%u user, %c client id)
//! subscribe = ["sensors/#"]        # filters that must cover each requested subscription
//!
//! [everyone]                       # every client, anonymous ones included
//! publish = ["public/#"]
//! subscribe = ["public/#"]
//! ```
//!
//! Without a file every client is let in and may do anything, as Mosquitto does with no
//! configuration; with one, a client may do only what a rule allows.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::Deserialize;

use crate::error::{MqttError, Result};
use crate::topic::{covers, matches};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rules {
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    password: String,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    allow_anonymous: bool,
    #[serde(default)]
    users: BTreeMap<String, UserEntry>,
    #[serde(default)]
    everyone: Rules,
}

#[derive(Debug)]
struct User {
    hash: String,
    rules: Arc<Rules>,
}

/// The loaded authentication and authorisation rules.
#[derive(Debug)]
pub struct Auth {
    /// No file: everyone in, everything allowed.
    open: bool,
    allow_anonymous: bool,
    users: BTreeMap<String, User>,
    everyone: Arc<Rules>,
}

/// The outcome of a login.
#[derive(Debug)]
pub enum Login {
    /// Let in, with these rights.
    Allowed(Identity),
    /// Unknown user or wrong password.
    BadCredentials,
    /// Anonymous, and anonymous clients are not allowed.
    NotAuthorized,
}

/// A connected client's rights.
#[derive(Debug, Clone)]
pub struct Identity {
    /// User name, when the client logged in as a user.
    pub user: Option<Arc<str>>,
    client_id: Arc<str>,
    open: bool,
    rules: Vec<Arc<Rules>>,
}

fn check_filters(what: &str, filters: &[String]) -> Result<()> {
    for f in filters {
        let probe = f.replace("%u", "u").replace("%c", "c");
        if mqtt_proto::TopicFilter::try_from(probe.as_str()).is_err() {
            return Err(MqttError::AuthInvalid(format!(
                "{what}: {f:?} is not a valid topic filter"
            )));
        }
    }
    Ok(())
}

impl Auth {
    /// No rules: every client is let in and allowed everything.
    pub fn open() -> Self {
        Auth {
            open: true,
            allow_anonymous: true,
            users: BTreeMap::new(),
            everyone: Arc::new(Rules::default()),
        }
    }

    /// Reads and checks an auth file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| MqttError::AuthRead {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| {
            MqttError::AuthInvalid(format!("in the MQTT auth file {}: {e}", path.display()))
        })
    }

    /// Parses the text of an auth file.
    pub fn parse(text: &str) -> Result<Self> {
        let file: AuthFile =
            toml::from_str(text).map_err(|e| MqttError::AuthInvalid(e.to_string()))?;
        check_filters("everyone.publish", &file.everyone.publish)?;
        check_filters("everyone.subscribe", &file.everyone.subscribe)?;
        let mut users = BTreeMap::new();
        for (name, u) in file.users {
            PasswordHash::new(&u.password).map_err(|e| {
                MqttError::AuthInvalid(format!(
                    "users.{name}.password is not a password hash ({e}); make one with `strata mqtt passwd`"
                ))
            })?;
            check_filters(&format!("users.{name}.publish"), &u.publish)?;
            check_filters(&format!("users.{name}.subscribe"), &u.subscribe)?;
            users.insert(
                name,
                User {
                    hash: u.password,
                    rules: Arc::new(Rules {
                        publish: u.publish,
                        subscribe: u.subscribe,
                    }),
                },
            );
        }
        Ok(Auth {
            open: false,
            allow_anonymous: file.allow_anonymous,
            users,
            everyone: Arc::new(file.everyone),
        })
    }

    /// Checks a CONNECT's credentials. Verifying a hash takes milliseconds of CPU: call it
    /// off the async threads.
    pub fn login(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
        client_id: &Arc<str>,
    ) -> Login {
        if self.open {
            return Login::Allowed(Identity {
                user: username.map(Arc::from),
                client_id: client_id.clone(),
                open: true,
                rules: Vec::new(),
            });
        }
        let Some(name) = username else {
            if password.is_some() {
                return Login::BadCredentials;
            }
            return if self.allow_anonymous {
                Login::Allowed(Identity {
                    user: None,
                    client_id: client_id.clone(),
                    open: false,
                    rules: vec![self.everyone.clone()],
                })
            } else {
                Login::NotAuthorized
            };
        };
        let Some(user) = self.users.get(name) else {
            return Login::BadCredentials;
        };
        let Some(password) = password else {
            return Login::BadCredentials;
        };
        let Ok(hash) = PasswordHash::new(&user.hash) else {
            return Login::BadCredentials;
        };
        if Argon2::default().verify_password(password, &hash).is_err() {
            return Login::BadCredentials;
        }
        Login::Allowed(Identity {
            user: Some(Arc::from(name)),
            client_id: client_id.clone(),
            open: false,
            rules: vec![user.rules.clone(), self.everyone.clone()],
        })
    }
}

impl Identity {
    fn expand(&self, filter: &str) -> Option<String> {
        if !filter.contains('%') {
            return Some(filter.to_owned());
        }
        if filter.contains("%u") && self.user.is_none() {
            return None;
        }
        let user = self.user.as_deref().unwrap_or("");
        Some(filter.replace("%u", user).replace("%c", &self.client_id))
    }

    /// Whether the client may publish to the topic name `topic`.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.open
            || self.rules.iter().any(|r| {
                r.publish
                    .iter()
                    .any(|f| self.expand(f).is_some_and(|f| matches(&f, topic)))
            })
    }

    /// Whether the client may subscribe to `filter` (without any `$share/group/` prefix).
    pub fn may_subscribe(&self, filter: &str) -> bool {
        self.open
            || self.rules.iter().any(|r| {
                r.subscribe
                    .iter()
                    .any(|f| self.expand(f).is_some_and(|f| covers(&f, filter)))
            })
    }
}

/// Hashes a password for the auth file (Argon2id with the crate's recommended parameters).
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| MqttError::Hash(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| MqttError::Hash(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> String {
        let hash = hash_password("secret").unwrap();
        format!(
            r#"
allow_anonymous = true
[users.alice]
password = "{hash}"
publish = ["sensors/%u/#"]
subscribe = ["sensors/#"]
[everyone]
publish = ["public/#"]
subscribe = ["public/#"]
"#
        )
    }

    #[test]
    fn logins_and_rules() {
        let auth = Auth::parse(&file()).unwrap();
        let cid: Arc<str> = Arc::from("c1");
        let Login::Allowed(alice) = auth.login(Some("alice"), Some(b"secret"), &cid) else {
            panic!("alice must get in");
        };
        assert!(alice.may_publish("sensors/alice/t"));
        assert!(!alice.may_publish("sensors/bob/t"));
        assert!(alice.may_publish("public/x"));
        assert!(alice.may_subscribe("sensors/+/t"));
        assert!(!alice.may_subscribe("#"));
        assert!(matches!(
            auth.login(Some("alice"), Some(b"wrong"), &cid),
            Login::BadCredentials
        ));
        assert!(matches!(
            auth.login(Some("mallory"), Some(b"secret"), &cid),
            Login::BadCredentials
        ));
        let Login::Allowed(anon) = auth.login(None, None, &cid) else {
            panic!("anonymous allowed");
        };
        assert!(anon.may_publish("public/a"));
        assert!(!anon.may_publish("sensors/alice/t"));
        assert!(!anon.may_subscribe("sensors/#"));
    }

    #[test]
    fn anonymous_refused_by_default_and_bad_files_rejected() {
        let auth = Auth::parse("").unwrap();
        assert!(matches!(
            auth.login(None, None, &Arc::from("c")),
            Login::NotAuthorized
        ));
        assert!(Auth::parse("[users.x]\npassword = \"plain\"\n").is_err());
        assert!(Auth::parse("[everyone]\npublish = [\"a/#/b\"]\n").is_err());
        assert!(Auth::parse("unknown = 1\n").is_err());
    }
}
