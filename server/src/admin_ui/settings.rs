//! The Admin UI's settings: flattened into the node's [`Config`](crate::Config), so each is a
//! flag and an environment variable like every other option.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// What the Admin UI may see: `@socket.io/admin-ui`'s `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Server statistics only (`server_stats`): nothing per socket or per event leaves the node.
    Production,
    /// Also every socket (`all_sockets`) and the socket, room and event notifications.
    Development,
}

#[derive(Clone, Args)]
pub struct AdminUiSettings {
    /// The Admin UI's login; with `ADMIN_UI_PASSWORD_HASH` it turns the Admin UI on.
    #[arg(long, env = "ADMIN_UI_USERNAME")]
    pub admin_ui_username: Option<String>,
    /// A bcrypt hash of the Admin UI's password (`htpasswd -bnBC 12 "" pw | tr -d ':\n'`).
    #[arg(long, env = "ADMIN_UI_PASSWORD_HASH")]
    pub admin_ui_password_hash: Option<String>,
    /// The namespace the Admin UI connects to; never a chat namespace.
    #[arg(long, env = "ADMIN_UI_NAMESPACE", default_value = "/admin")]
    pub admin_ui_namespace: String,
    /// `production`: server statistics; `development`: also every socket and event.
    #[arg(long, env = "ADMIN_UI_MODE", value_enum, default_value_t = Mode::Production)]
    pub admin_ui_mode: Mode,
    /// Advertise and accept no action (join, leave, disconnect, emit): a window, not a lever.
    #[arg(long, env = "ADMIN_UI_READONLY", default_value_t = false, action = clap::ArgAction::Set)]
    pub admin_ui_readonly: bool,
    /// Where the UI's page is served (with a trailing slash: its assets are relative).
    #[arg(long, env = "ADMIN_UI_PATH", default_value = "/admin-ui/")]
    pub admin_ui_path: String,
    /// The built UI (`ui/dist` of the `@socket.io/admin-ui` package the web build installs).
    #[arg(
        long,
        env = "ADMIN_UI_DIR",
        default_value = "web/node_modules/@socket.io/admin-ui/ui/dist"
    )]
    pub admin_ui_dir: PathBuf,
    /// Development mode: notifications each node sends per second at most; beyond, they are
    /// dropped and counted (`admin_ui_notifications_dropped`).
    #[arg(long, env = "ADMIN_UI_EVENTS_PER_SEC", default_value_t = 200)]
    pub admin_ui_events_per_sec: u32,
}

/// The password hash stays out of logs.
impl std::fmt::Debug for AdminUiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminUiSettings")
            .field("admin_ui_username", &self.admin_ui_username)
            .field(
                "admin_ui_password_hash",
                &self.admin_ui_password_hash.as_ref().map(|_| "…"),
            )
            .field("admin_ui_namespace", &self.admin_ui_namespace)
            .field("admin_ui_mode", &self.admin_ui_mode)
            .field("admin_ui_readonly", &self.admin_ui_readonly)
            .field("admin_ui_path", &self.admin_ui_path)
            .field("admin_ui_dir", &self.admin_ui_dir)
            .field("admin_ui_events_per_sec", &self.admin_ui_events_per_sec)
            .finish()
    }
}

/// The login of an enabled Admin UI.
pub struct Credentials<'a> {
    pub username: &'a str,
    pub password_hash: &'a str,
}

impl AdminUiSettings {
    /// The login, when both halves are set (and not empty): the Admin UI is on.
    pub fn credentials(&self) -> Option<Credentials<'_>> {
        let username = self
            .admin_ui_username
            .as_deref()
            .filter(|s| !s.is_empty())?;
        let password_hash = self
            .admin_ui_password_hash
            .as_deref()
            .filter(|s| !s.is_empty())?;
        Some(Credentials {
            username,
            password_hash,
        })
    }

    /// Refuses settings that would half-enable the UI or clash with the chat.
    pub fn check(&self, socketio_path: &str) -> anyhow::Result<()> {
        let username = self
            .admin_ui_username
            .as_deref()
            .is_some_and(|s| !s.is_empty());
        let hash = self
            .admin_ui_password_hash
            .as_deref()
            .is_some_and(|s| !s.is_empty());
        anyhow::ensure!(
            username == hash,
            "ADMIN_UI_USERNAME and ADMIN_UI_PASSWORD_HASH turn the Admin UI on together: set both or neither"
        );
        let Some(credentials) = self.credentials() else {
            return Ok(());
        };
        credentials
            .password_hash
            .parse::<bcrypt::HashParts>()
            .map_err(|err| {
                anyhow::anyhow!("ADMIN_UI_PASSWORD_HASH is not a bcrypt hash ($2b$…): {err}")
            })?;
        let nsp = &self.admin_ui_namespace;
        anyhow::ensure!(
            nsp.len() > 1 && nsp.starts_with('/') && !nsp[1..].contains('/'),
            "ADMIN_UI_NAMESPACE must be a namespace like /admin, not {nsp}"
        );
        let path = &self.admin_ui_path;
        anyhow::ensure!(
            path.starts_with('/') && path.ends_with('/') && path.len() > 1,
            "ADMIN_UI_PATH must start and end with a slash, like /admin-ui/, not {path}"
        );
        let reserved = ["/api/", "/healthz/", "/readyz/", "/metrics/"];
        anyhow::ensure!(
            !path.starts_with(&format!("{socketio_path}/"))
                && !reserved.iter().any(|r| path.starts_with(r)),
            "ADMIN_UI_PATH {path} is taken by another endpoint"
        );
        anyhow::ensure!(
            self.admin_ui_events_per_sec > 0,
            "ADMIN_UI_EVENTS_PER_SEC must be at least 1"
        );
        Ok(())
    }

    /// Whether `nsp` is the namespace of an enabled Admin UI.
    pub fn serves(&self, nsp: &str) -> bool {
        self.credentials().is_some() && nsp == self.admin_ui_namespace
    }

    pub fn development(&self) -> bool {
        self.admin_ui_mode == Mode::Development
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        admin_ui: AdminUiSettings,
    }

    fn checked(args: &[&str]) -> anyhow::Result<AdminUiSettings> {
        let settings = Cli::parse_from(std::iter::once("t").chain(args.iter().copied())).admin_ui;
        settings.check("/socket.io").map(|()| settings)
    }

    const HASH: &str = "$2y$12$L6Bc/AlTQHyd9liGgGEZyOFLPHNgyxeEPfgYfBCVxJ7JIlwxyVU3u";

    #[test]
    fn off_unless_both_halves_of_the_login_are_set() {
        assert!(checked(&[]).unwrap().credentials().is_none());
        let empty = checked(&["--admin-ui-username", "", "--admin-ui-password-hash", ""]);
        assert!(empty.unwrap().credentials().is_none());
        assert!(checked(&["--admin-ui-username", "ops"]).is_err());
        assert!(checked(&["--admin-ui-password-hash", HASH]).is_err());
        let on = checked(&[
            "--admin-ui-username",
            "ops",
            "--admin-ui-password-hash",
            HASH,
        ]);
        assert!(on.unwrap().serves("/admin"));
    }

    #[test]
    fn refuses_a_password_instead_of_a_hash_and_paths_that_clash() {
        let login = ["--admin-ui-username", "ops", "--admin-ui-password-hash"];
        let with = |extra: &[&str]| {
            let mut args = login.to_vec();
            args.push(HASH);
            args.extend_from_slice(extra);
            checked(&args)
        };
        let mut plain = login.to_vec();
        plain.push("hunter2");
        assert!(checked(&plain).is_err());
        for bad in [
            ["--admin-ui-path", "/admin-ui"],
            ["--admin-ui-path", "/socket.io/ui/"],
            ["--admin-ui-path", "/api/ui/"],
            ["--admin-ui-namespace", "admin"],
            ["--admin-ui-namespace", "/a/b"],
            ["--admin-ui-events-per-sec", "0"],
        ] {
            assert!(with(&bad).is_err(), "{bad:?}");
        }
        assert!(with(&["--admin-ui-path", "/ops/ui/"]).is_ok());
    }
}
