//! The server's configuration file (TOML): users with SCRAM-SHA-256
//! verifiers and roles, TLS, login throttling, limits per role, and the
//! store's privacy policy.
//!
//! ```toml
//! [server]
//! tls_cert = "server.crt"
//! tls_key = "server.key"
//! require_tls = true
//! allow_plaintext_on_network = false   # listen beyond loopback without TLS
//!
//! [server.logins]
//! max_failures = 5        # consecutive failures that lock a user
//! lockout_seconds = 900
//! base_delay_ms = 250     # first failure's delay; doubles, up to max_delay_ms
//! max_delay_ms = 4000
//!
//! [limits.analyst]
//! statement_timeout = "5min"
//! max_connections_per_user = 10
//! max_concurrent_statements_per_user = 4
//! memory_per_query = "2G"
//!
//! [privacy]          # optional: overrides the store manifest's [privacy]
//! k = 10
//! rounding = 5
//!
//! [privacy.viewer]   # optional: stricter numbers for the read-only viewer role
//! k = 20
//! rounding = 10
//!
//! [[user]]
//! name = "ana"
//! role = "analyst"
//! scram = "SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>"
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use pgwire::api::auth::sasl::scram::{ScramSecret, gen_salted_password};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{PgWireError, PgWireResult};
use serde::{Deserialize, Serialize};
use tsunagu_engine::{Policy, Role};

/// SCRAM iteration count for new verifiers (PostgreSQL's default).
const ITERATIONS: usize = 4096;

/// The parsed configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default)]
    pub server: ServerSection,
    /// Disclosure policy; overrides the store manifest's `[privacy]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<Policy>,
    /// Limits per role.
    #[serde(default, skip_serializing_if = "LimitsSection::is_empty")]
    pub limits: LimitsSection,
    #[serde(default, rename = "user")]
    pub users: Vec<UserEntry>,
}

/// `[server]`: listening and TLS.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// PEM certificate chain for TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Refuse connections that do not use TLS.
    #[serde(default)]
    pub require_tls: bool,
    /// Allow listening on a non-loopback address without TLS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_plaintext_on_network: bool,
    /// Throttling and lockout of failed logins.
    #[serde(default, skip_serializing_if = "LoginSettings::is_default")]
    pub logins: LoginSettings,
}

/// `[server.logins]`: failed logins are delayed, and too many in a row lock the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginSettings {
    /// Consecutive failures after which a user is locked.
    pub max_failures: u32,
    /// How long a lock lasts (and how long failures are remembered).
    pub lockout_seconds: u64,
    /// Delay after the first failure; it doubles with each further failure.
    pub base_delay_ms: u64,
    /// The longest delay.
    pub max_delay_ms: u64,
}

impl Default for LoginSettings {
    fn default() -> Self {
        LoginSettings {
            max_failures: 5,
            lockout_seconds: 900,
            base_delay_ms: 250,
            max_delay_ms: 4000,
        }
    }
}

impl LoginSettings {
    fn is_default(&self) -> bool {
        self == &LoginSettings::default()
    }
}

/// `[limits.analyst]`, `[limits.steward]` and `[limits.viewer]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    #[serde(default, skip_serializing_if = "RoleLimits::is_empty")]
    pub analyst: RoleLimits,
    #[serde(default, skip_serializing_if = "RoleLimits::is_empty")]
    pub steward: RoleLimits,
    /// Unset values: the analysts' defaults.
    #[serde(default, skip_serializing_if = "RoleLimits::is_empty")]
    pub viewer: RoleLimits,
}

impl LimitsSection {
    fn is_empty(&self) -> bool {
        self == &LimitsSection::default()
    }

    /// The limits in force for a role: the configured ones over the role's defaults.
    pub fn for_role(&self, role: Role) -> Result<Limits, String> {
        let (set, default) = match role {
            Role::Analyst => (&self.analyst, Limits::analyst()),
            Role::Viewer => (&self.viewer, Limits::analyst()),
            Role::Steward => (&self.steward, Limits::steward()),
        };
        let timeout = match &set.statement_timeout {
            Some(t) => {
                parse_duration(t).map_err(|e| format!("[limits.{role}] statement_timeout: {e}"))?
            }
            None => default.statement_timeout,
        };
        let memory = match &set.memory_per_query {
            Some(m) => {
                Some(parse_size(m).map_err(|e| format!("[limits.{role}] memory_per_query: {e}"))?)
                    .filter(|&n| n > 0)
            }
            None => default.memory_per_query,
        };
        Ok(Limits {
            statement_timeout: timeout,
            max_connections: set
                .max_connections_per_user
                .map(|n| n as usize)
                .unwrap_or(default.max_connections),
            max_statements: set
                .max_concurrent_statements_per_user
                .map(|n| n as usize)
                .unwrap_or(default.max_statements),
            memory_per_query: memory,
        })
    }
}

/// The limits of one role, as written (unset: the role's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleLimits {
    /// Longest a statement may run, e.g. `"30s"`, `"5min"`, `"1h"`; `"0"` for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_timeout: Option<String>,
    /// Open connections per user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_user: Option<u32>,
    /// Connections of one user running a statement at the same time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_statements_per_user: Option<u32>,
    /// Memory one query may hold, e.g. `"2G"`; `"0"` for none (the server's
    /// `--memory-limit` still applies to all queries together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_per_query: Option<String>,
}

impl RoleLimits {
    fn is_empty(&self) -> bool {
        self == &RoleLimits::default()
    }
}

/// The limits in force for one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `None`: statements run until done.
    pub statement_timeout: Option<Duration>,
    pub max_connections: usize,
    pub max_statements: usize,
    /// `None`: only the server-wide memory limit.
    pub memory_per_query: Option<usize>,
}

impl std::fmt::Display for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.statement_timeout {
            Some(t) => write!(f, "statements end after {t:?}")?,
            None => write!(f, "no statement timeout")?,
        }
        write!(
            f,
            ", {} connections and {} statements at once per user",
            self.max_connections, self.max_statements
        )?;
        match self.memory_per_query {
            Some(m) => write!(f, ", {} MiB per query", m >> 20),
            None => write!(f, ", no memory limit per query"),
        }
    }
}

impl Limits {
    /// Analysts' defaults: five minutes a statement, ten connections, four statements at once.
    pub fn analyst() -> Limits {
        Limits {
            statement_timeout: Some(Duration::from_secs(300)),
            max_connections: 10,
            max_statements: 4,
            memory_per_query: None,
        }
    }

    /// Stewards' defaults: an hour a statement, 32 connections, 16 statements at once.
    pub fn steward() -> Limits {
        Limits {
            statement_timeout: Some(Duration::from_secs(3600)),
            max_connections: 32,
            max_statements: 16,
            memory_per_query: None,
        }
    }
}

/// The longest duration a setting takes: ten years.
const MAX_DURATION_SECS: f64 = 10.0 * 365.0 * 86400.0;

/// Parses a duration: `250ms`, `30s`, `5min`, `2h`, `1d`; a bare number is
/// milliseconds (as PostgreSQL's `statement_timeout`); `0` means none.
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let n: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (e.g. \"30s\", \"5min\", \"1h\")"))?;
    let unit_secs = match unit {
        "" | "ms" => 1e-3,
        "s" | "sec" => 1.0,
        "min" | "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(format!("unknown unit in {text:?} (ms, s, min, h, d)")),
    };
    let secs = n * unit_secs;
    if !secs.is_finite() || secs > MAX_DURATION_SECS {
        return Err(format!("not a duration of at most ten years: {text:?}"));
    }
    Ok(Some(Duration::from_secs_f64(secs)).filter(|d| !d.is_zero()))
}

/// Parses a size: `512M`, `4G`, `64K`, or bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1usize << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: f64 = num.parse().map_err(|_| format!("not a size: {s}"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("not a size: {s}"));
    }
    Ok((n * mult as f64) as usize)
}

/// One user: a role and a SCRAM-SHA-256 verifier, never a password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    pub role: Role,
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64), as PostgreSQL stores it.
    pub scram: String,
}

impl ServerConfig {
    /// Reads a configuration file; paths in it are relative to its folder.
    pub fn load(path: &Path) -> Result<ServerConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let mut config: ServerConfig = toml::from_str(&text)
            .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut config.server.tls_cert, &mut config.server.tls_key]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        for u in &config.users {
            parse_verifier(&u.scram)
                .map_err(|e| format!("{}: user {:?}: {e}", path.display(), u.name))?;
        }
        if let Some(p) = &config.privacy {
            p.validate()
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        for role in [Role::Analyst, Role::Steward, Role::Viewer] {
            config
                .limits
                .for_role(role)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(config)
    }

    /// Adds or replaces a user and writes the file atomically (mode 0600).
    pub fn add_user(path: &Path, name: &str, role: Role, password: &str) -> Result<(), String> {
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("invalid user name {name:?}"));
        }
        if password.is_empty() {
            return Err("the password is empty".into());
        }
        let mut config = if path.exists() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            toml::from_str::<ServerConfig>(&text)
                .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim_end()))?
        } else {
            ServerConfig::default()
        };
        config.users.retain(|u| u.name != name);
        config.users.push(UserEntry {
            name: name.to_owned(),
            role,
            scram: make_verifier(password),
        });
        let text = toml::to_string_pretty(&config).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("toml.tmp");
        write_private(&tmp, text.as_bytes())
            .map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: cannot write: {e}", path.display()))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// A PostgreSQL-format SCRAM-SHA-256 verifier for a password, with a random salt.
pub fn make_verifier(password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    let salted = gen_salted_password(password, &salt, ITERATIONS);
    match ScramSecret::verifier_from_salted_password(salt.to_vec(), salted, ITERATIONS) {
        ScramSecret::Verifier {
            salt,
            iterations,
            stored_key,
            server_key,
        } => format!(
            "SCRAM-SHA-256${iterations}:{}${}:{}",
            B64.encode(salt),
            B64.encode(stored_key),
            B64.encode(server_key)
        ),
        ScramSecret::SaltedPassword { .. } => unreachable!("a verifier was asked for"),
    }
}

/// Parses a PostgreSQL-format verifier.
fn parse_verifier(text: &str) -> Result<ScramSecret, String> {
    let bad = || {
        "not a SCRAM-SHA-256 verifier (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)"
            .to_string()
    };
    let rest = text.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
    let (params, keys) = rest.split_once('$').ok_or_else(bad)?;
    let (iterations, salt) = params.split_once(':').ok_or_else(bad)?;
    let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| B64.decode(s).map_err(|_| bad());
    Ok(ScramSecret::Verifier {
        salt: decode(salt)?,
        iterations: iterations.parse().map_err(|_| bad())?,
        stored_key: decode(stored)?,
        server_key: decode(server)?,
    })
}

/// The users the server accepts, by name.
#[derive(Debug)]
pub struct Users {
    by_name: HashMap<String, (Role, String)>,
}

impl Users {
    /// The users of a configuration.
    pub fn from_config(config: &ServerConfig) -> Arc<Users> {
        Arc::new(Users {
            by_name: config
                .users
                .iter()
                .map(|u| (u.name.clone(), (u.role, u.scram.clone())))
                .collect(),
        })
    }

    /// The built-in demo logins: `analyst` and `steward`, password [`DEMO_PASSWORD`].
    pub fn demo() -> Arc<Users> {
        let mut config = ServerConfig::default();
        for (name, role) in [("analyst", Role::Analyst), ("steward", Role::Steward)] {
            config.users.push(UserEntry {
                name: name.into(),
                role,
                scram: make_verifier(DEMO_PASSWORD),
            });
        }
        Users::from_config(&config)
    }

    /// Every user and role.
    pub fn list(&self) -> Vec<(String, Role)> {
        let mut v: Vec<_> = self
            .by_name
            .iter()
            .map(|(n, (r, _))| (n.clone(), *r))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The role of a user.
    pub fn role(&self, user: &str) -> Option<Role> {
        self.by_name.get(user).map(|(r, _)| *r)
    }

    /// Checks a password given in the clear (the dashboard's login form)
    /// against the user's stored verifier: the role when it matches. An
    /// unknown user costs the same work as a known one.
    pub fn check_password(&self, user: &str, password: &str) -> Option<Role> {
        let known = self
            .by_name
            .get(user)
            .and_then(|(role, v)| Some((*role, parse_verifier(v).ok()?)));
        let (salt, iterations, stored) = match &known {
            Some((
                _,
                ScramSecret::Verifier {
                    salt,
                    iterations,
                    stored_key,
                    ..
                },
            )) => (salt.clone(), *iterations, stored_key.clone()),
            _ => (
                rand::random::<[u8; 16]>().to_vec(),
                ITERATIONS,
                rand::random::<[u8; 32]>().to_vec(),
            ),
        };
        let salted = gen_salted_password(password, &salt, iterations);
        let ScramSecret::Verifier { stored_key, .. } =
            ScramSecret::verifier_from_salted_password(salt, salted, iterations)
        else {
            return None;
        };
        // Compared in constant time.
        let differ = stored_key.len() != stored.len()
            || stored_key
                .iter()
                .zip(&stored)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                != 0;
        match known {
            Some((role, _)) if !differ => Some(role),
            _ => None,
        }
    }
}

/// The password of the demo logins.
pub const DEMO_PASSWORD: &str = "tsunagu";

#[async_trait]
impl AuthSource for Users {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(
            login.user().unwrap_or_default().to_owned(),
        ))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let user = login.user().unwrap_or_default();
        match self.by_name.get(user).map(|(_, v)| parse_verifier(v)) {
            Some(Ok(secret)) => Ok((secret, None)),
            // Unknown users go through the same exchange with a key that never matches.
            _ => Ok((
                ScramSecret::Verifier {
                    salt: rand::random::<[u8; 16]>().to_vec(),
                    iterations: ITERATIONS,
                    stored_key: rand::random::<[u8; 32]>().to_vec(),
                    server_key: rand::random::<[u8; 32]>().to_vec(),
                },
                None,
            )),
        }
    }
}

/// A TLS acceptor from PEM files; any problem is an error (the server does not start).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<pgwire::tokio::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {}: no certificate found",
            cert.display()
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("TLS key {}: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key do not work together: {e}"))?;
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_checked_against_verifiers_postgresql_wrote() {
        // Written by PostgreSQL 15 for `CREATE ROLE ... PASSWORD 'kanji-秘密'`.
        let config: ServerConfig = toml::from_str(
            "[[user]]\nname = \"ana\"\nrole = \"analyst\"\nscram = \"SCRAM-SHA-256$4096:JqZx1dWm8E/0V8kNKXBaYg==$R9p1Q0JhGCdl1JVXhyRGjxo65AHBQ8wup2MX/AyT1Q8=:iyF5juMd/rFbbcmH0QhyZmAsap6Errk+sOmRX0xCRto=\"\n",
        )
        .unwrap();
        let users = Users::from_config(&config);
        assert_eq!(
            users.check_password("ana", "kanji-秘密"),
            Some(Role::Analyst)
        );
        assert_eq!(users.check_password("ana", "kanji-秘"), None);
        assert_eq!(users.check_password("ana", ""), None);
        assert_eq!(users.check_password("bob", "kanji-秘密"), None);
        let demo = Users::demo();
        assert_eq!(
            demo.check_password("steward", DEMO_PASSWORD),
            Some(Role::Steward)
        );
        assert_eq!(demo.check_password("steward", "Tsunagu"), None);
    }

    #[test]
    fn durations_sizes_and_limits_per_role() {
        let secs = |t: &str| parse_duration(t).map(|d| d.map(|d| d.as_secs_f64()));
        assert_eq!(secs("5min"), Ok(Some(300.0)));
        assert_eq!(secs("250ms"), Ok(Some(0.25)));
        assert_eq!(secs("1500"), Ok(Some(1.5)));
        assert_eq!(secs("0"), Ok(None));
        assert!(secs("soon").is_err() && secs("5 weeks").is_err() && secs("9e99h").is_err());
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        let config: ServerConfig = toml::from_str(
            "[server.logins]\nmax_failures = 3\n\n[limits.analyst]\nstatement_timeout = \"30s\"\nmemory_per_query = \"1G\"\n",
        )
        .unwrap();
        assert_eq!(config.server.logins.max_failures, 3);
        assert_eq!(config.server.logins.lockout_seconds, 900);
        let analyst = config.limits.for_role(Role::Analyst).unwrap();
        assert_eq!(analyst.statement_timeout, Some(Duration::from_secs(30)));
        assert_eq!(analyst.memory_per_query, Some(1 << 30));
        assert_eq!(analyst.max_connections, Limits::analyst().max_connections);
        assert_eq!(config.limits.for_role(Role::Steward), Ok(Limits::steward()));
        assert!(toml::from_str::<ServerConfig>("[limits.analyst]\ntimeout = 1\n").is_err());
    }
}
