//! Typed settings, one struct per section of OPERATIONS.md, loaded in layers:
//! built-in defaults -> `config/default.toml` -> `$LATCHKEY_CONFIG` -> `LATCHKEY_<SECTION>__<KEY>`
//! environment variables -> `DATABASE_URL`. Every bad value stops start-up with an error that
//! names the key (figment carries the key path in its errors).

pub mod redact;

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// All of latchkey's configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub jwt: JwtSettings,
    pub password: PasswordSettings,
    pub accounts: AccountsSettings,
    pub email: EmailSettings,
    pub throttle: ThrottleSettings,
    pub cors: CorsSettings,
    pub cookies: CookieSettings,
    pub console: ConsoleSettings,
    pub mfa: MfaSettings,
    pub webhooks: WebhookSettings,
}

/// Webhooks (API.md "Webhooks"): where account events are delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    #[serde(with = "endpoints")]
    pub endpoints: Vec<WebhookEndpoint>,
    /// Longest a delivery attempt may take, connection to last byte.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Delay before the first retry of a failed delivery; doubles with each attempt.
    #[serde(with = "duration")]
    pub retry_base: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(5),
        }
    }
}

/// One receiver of webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    pub url: String,
    /// A file holding the signing secret, `whsec_<base64>`.
    pub secret: PathBuf,
    /// Event types to deliver, or `["*"]` for all of them.
    #[serde(default = "every_event")]
    pub events: Vec<String>,
}

impl WebhookSettings {
    /// Each endpoint's URL (unique: it names the endpoint in the outbox) and event types;
    /// the secret files are read when the service starts.
    fn check(&self) -> Result<(), ConfigError> {
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let fail = |key: &str, why: String| {
                Err(ConfigError(format!(
                    "`webhooks.endpoints[{i}].{key}`: {why}"
                )))
            };
            let url = &endpoint.url;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return fail("url", "must start with http:// or https://".into());
            }
            if self.endpoints[..i].iter().any(|e| &e.url == url) {
                return fail("url", format!("{url} is configured twice"));
            }
            if endpoint.events.is_empty() {
                return fail(
                    "events",
                    "must name at least one event type, or \"*\"".into(),
                );
            }
            if let Some(unknown) = endpoint
                .events
                .iter()
                .find(|e| *e != "*" && !crate::webhooks::EVENT_TYPES.contains(&e.as_str()))
            {
                let known = crate::webhooks::EVENT_TYPES.join(", ");
                return fail(
                    "events",
                    format!("unknown event type {unknown:?} (known: {known})"),
                );
            }
        }
        Ok(())
    }
}

fn every_event() -> Vec<String> {
    vec!["*".into()]
}

/// TOTP two-factor login (API.md "Two-factor login").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MfaSettings {
    /// The issuer authenticator apps show; unset: `accounts.site_name`.
    pub issuer: Option<String>,
    /// Staff endpoints answer 403 `mfa_required` to a session that did not pass TOTP.
    pub required_for_staff: bool,
    /// Lifetime of the `mfa_token` between the password and the code.
    #[serde(with = "duration")]
    pub token_ttl: Duration,
}

impl Default for MfaSettings {
    fn default() -> Self {
        Self {
            issuer: None,
            required_for_staff: false,
            token_ttl: Duration::from_secs(300),
        }
    }
}

/// The web console and the pages behind the email links.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Off: every page answers 404; the API is unchanged.
    pub enabled: bool,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    pub public_url: String,
    #[serde(with = "list")]
    pub trusted_proxies: Vec<ProxyNet>,
    pub workers: usize,
    /// How long SIGTERM waits for in-flight requests before closing them.
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8000".into(),
            public_url: "http://127.0.0.1:8000".into(),
            trusted_proxies: Vec::new(),
            workers: cores(),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: Secret<String>,
    /// Unset: 16 on PostgreSQL, a small multiple of the cores on SQLite (one writer at a time).
    pub pool_size: Option<u32>,
    pub migrate_on_start: bool,
    /// How long a request waits for a pooled connection (and start-up for the first one).
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret("sqlite://latchkey.db".into()),
            pool_size: None,
            migrate_on_start: true,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The JWS algorithms latchkey signs with; exactly one is accepted at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum JwtAlgorithm {
    #[value(name = "ES256")]
    ES256,
    #[value(name = "RS256")]
    RS256,
    #[value(name = "EdDSA")]
    EdDSA,
    #[value(name = "HS256")]
    HS256,
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtSettings {
    pub algorithm: JwtAlgorithm,
    pub signing_key: Option<PathBuf>,
    #[serde(with = "list")]
    pub verification_keys: Vec<PathBuf>,
    pub issuer: Option<String>,
    pub audience: String,
    #[serde(with = "duration")]
    pub access_ttl: Duration,
    #[serde(with = "duration")]
    pub refresh_ttl: Duration,
    #[serde(with = "duration")]
    pub rotation_grace: Duration,
    #[serde(with = "duration")]
    pub leeway: Duration,
    /// The HS256 key file of refresh tokens; unset: derived from the signing key (see
    /// `auth::keys`), so refresh tokens then end with a signing-key rotation.
    #[serde(default)]
    pub refresh_secret: Option<PathBuf>,
    /// How many verified access tokens are remembered, so that a token's signature is
    /// checked once rather than on every request (`auth::verified_cache`); 0: none.
    pub verified_cache_entries: usize,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            algorithm: JwtAlgorithm::ES256,
            signing_key: None,
            verification_keys: Vec::new(),
            issuer: None,
            audience: "latchkey".into(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(14 * 24 * 3600),
            rotation_grace: Duration::from_secs(10),
            leeway: Duration::from_secs(30),
            refresh_secret: None,
            verified_cache_entries: 20_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordSettings {
    pub bcrypt_cost: u32,
    pub min_length: usize,
    pub hash_concurrency: usize,
    pub queue_limit: usize,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        Self {
            bcrypt_cost: 12,
            min_length: 8,
            hash_concurrency: cores(),
            queue_limit: 256,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsSettings {
    pub require_email_verification: bool,
    pub require_admin_approval: bool,
    #[serde(with = "duration")]
    pub activation_ttl: Duration,
    #[serde(with = "duration")]
    pub reset_ttl: Duration,
    /// How long the link confirming an email change works.
    #[serde(with = "duration")]
    pub email_change_ttl: Duration,
    pub activation_url: String,
    pub reset_url: String,
    /// Link template in email-change confirmations.
    pub email_change_url: String,
    pub site_name: String,
    /// Path to a file with at least 32 bytes keying activation/reset tokens. Unset: derived
    /// (HKDF) from the signing key, so the two never share key material directly.
    pub token_secret: Option<PathBuf>,
}

impl Default for AccountsSettings {
    fn default() -> Self {
        Self {
            require_email_verification: true,
            require_admin_approval: false,
            activation_ttl: Duration::from_secs(3 * 24 * 3600),
            reset_ttl: Duration::from_secs(3600),
            email_change_ttl: Duration::from_secs(24 * 3600),
            activation_url: "{public_url}/activate/{uid}/{token}".into(),
            reset_url: "{public_url}/password/reset/{uid}/{token}".into(),
            email_change_url: "{public_url}/email/confirm/{uid}/{token}".into(),
            site_name: "latchkey".into(),
            token_secret: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailBackend {
    Console,
    File,
    Smtp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailSettings {
    pub backend: EmailBackend,
    pub from: String,
    pub file_dir: PathBuf,
    pub smtp: SmtpSettings,
    /// Delay before the first retry of a failed delivery; doubles with each attempt.
    #[serde(with = "duration")]
    pub retry_base: Duration,
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            backend: EmailBackend::Console,
            from: "latchkey <no-reply@localhost>".into(),
            file_dir: PathBuf::from("mail"),
            smtp: SmtpSettings::default(),
            retry_base: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
    pub tls: SmtpTls,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 25,
            username: None,
            password: None,
            tls: SmtpTls::None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleSettings {
    pub enabled: bool,
    pub anon: Rate,
    pub user: Rate,
    pub login: Rate,
    /// Per client IP, `/auth/login/mfa`.
    pub mfa: Rate,
    /// `redis://…`: the limits are shared by every replica (see `http::shared_throttle`).
    pub redis_url: Option<Secret<String>>,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            anon: Rate::per(120, RateUnit::Minute),
            user: Rate::per(1200, RateUnit::Minute),
            login: Rate::per(10, RateUnit::Minute),
            mfa: Rate::per(10, RateUnit::Minute),
            redis_url: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsSettings {
    #[serde(with = "list")]
    pub allowed_origins: Vec<String>,
}

/// The refresh cookie of browser sessions (API.md "Browser sessions"). It is always
/// `HttpOnly` and `Secure`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CookieSettings {
    pub name: String,
    pub path: String,
    /// Unset: a host-only cookie (the safest: no sibling host receives it).
    pub domain: Option<String>,
    pub same_site: SameSite,
}

impl Default for CookieSettings {
    fn default() -> Self {
        Self {
            name: "latchkey_refresh".into(),
            path: "/auth".into(),
            domain: None,
            same_site: SameSite::Strict,
        }
    }
}

/// The paths the refresh cookie must reach: a cookie whose `Path` misses one of them
/// would be set and never come back.
const COOKIE_PATHS: [&str; 2] = ["/auth/token/refresh", "/auth/logout"];

impl CookieSettings {
    fn check(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: &str| Err(ConfigError(format!("`cookies.{key}`: {why}")));
        // RFC 6265 §4.1.1: a cookie name is an RFC 2616 token.
        let token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
        if self.name.is_empty() || !self.name.chars().all(token) {
            return fail(
                "name",
                "must be a non-empty token (letters, digits, `!#$%&'*+-.^_`|~`)",
            );
        }
        let covers = |path: &str| {
            let prefix = self.path.trim_end_matches('/');
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        let path_ok = self.path.starts_with('/')
            && self.path.chars().all(|c| c.is_ascii_graphic() && c != ';')
            && COOKIE_PATHS.iter().all(|p| covers(p));
        if !path_ok {
            return fail(
                "path",
                "must be a path that covers /auth/token/refresh and /auth/logout (`/auth` or `/`)",
            );
        }
        let domain_ok = |d: &String| {
            !d.is_empty()
                && d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        };
        if self.domain.as_ref().is_some_and(|d| !domain_ok(d)) {
            return fail("domain", "must be a host name such as `example.com`");
        }
        // RFC 6265bis §4.1.3.2: browsers drop a `__Host-` cookie with a `Domain` or
        // another `Path` without a word; the service would set a cookie that never comes.
        if self.name.starts_with("__Host-") && (self.path != "/" || self.domain.is_some()) {
            return fail(
                "name",
                "a `__Host-` cookie needs `cookies.path = \"/\"` and no `cookies.domain`",
            );
        }
        Ok(())
    }
}

/// The refresh cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    Strict,
    Lax,
    /// Only where the app and latchkey are on different sites; `Secure` is set anyway.
    None,
}

/// A request rate such as `60/minute`: up to `count` requests at once, refilled evenly
/// over the unit (a token bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub unit: RateUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Rate {
    pub const fn per(count: u32, unit: RateUnit) -> Self {
        Self { count, unit }
    }

    /// The time it takes to earn back one request.
    pub fn replenish_interval(&self) -> Duration {
        let unit = match self.unit {
            RateUnit::Second => 1,
            RateUnit::Minute => 60,
            RateUnit::Hour => 3600,
            RateUnit::Day => 86400,
        };
        Duration::from_secs(unit) / self.count.max(1)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid rate {s:?}; use N/second, N/minute, N/hour or N/day");
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let unit = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => RateUnit::Second,
            "m" | "min" | "minute" => RateUnit::Minute,
            "h" | "hour" => RateUnit::Hour,
            "d" | "day" => RateUnit::Day,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(format!("invalid rate {s:?}: the count must be at least 1"));
        }
        Ok(Self { count, unit })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            RateUnit::Second => "second",
            RateUnit::Minute => "minute",
            RateUnit::Hour => "hour",
            RateUnit::Day => "day",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// An entry of `server.trusted_proxies`: a CIDR network, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNet(pub IpNet);

impl ProxyNet {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.contains(ip)
    }
}

impl FromStr for ProxyNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map(Self)
            .map_err(|_| format!("invalid address or CIDR network {s:?}"))
    }
}

impl fmt::Display for ProxyNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Settings values written as text: serialized with `Display`, read with `FromStr`.
macro_rules! serde_as_text {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    )*};
}

serde_as_text!(Rate, ProxyNet);

/// A configuration or start-up error that names what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// The figment of every layer of OPERATIONS.md, in order (later wins).
    pub fn figment() -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file("config/default.toml"));
        if let Ok(path) = std::env::var("LATCHKEY_CONFIG") {
            figment = figment.merge(Toml::file_exact(path));
        }
        // Only `SECTION__KEY` variables are settings: LATCHKEY_CONFIG, LATCHKEY_LOG_FORMAT and
        // the test suite's variables share the prefix but are not.
        figment = figment.merge(
            Env::prefixed("LATCHKEY_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        if let Ok(url) = std::env::var("DATABASE_URL") {
            figment = figment.merge(Serialized::default("database.url", url));
        }
        figment
    }

    /// Loads every layer and checks the values that serde cannot.
    pub fn load() -> Result<Settings, ConfigError> {
        Self::from_figment(Self::figment())
    }

    pub fn from_figment(figment: Figment) -> Result<Settings, ConfigError> {
        let settings: Settings = figment.extract().map_err(|e| ConfigError(e.to_string()))?;
        settings.check()?;
        Ok(settings)
    }

    /// Cross-field and range checks, each naming its key.
    pub fn check(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: &str| Err(ConfigError(format!("`{key}`: {why}")));
        if !(4..=31).contains(&self.password.bcrypt_cost) {
            return fail("password.bcrypt_cost", "must be between 4 and 31");
        }
        if self.password.hash_concurrency == 0 {
            return fail("password.hash_concurrency", "must be at least 1");
        }
        if self.password.min_length == 0 || self.password.min_length > 256 {
            return fail("password.min_length", "must be between 1 and 256");
        }
        if self.server.workers == 0 {
            return fail("server.workers", "must be at least 1");
        }
        for (key, value, range) in self.durations() {
            if !range.contains(&value) {
                let (min, max) = range.into_inner();
                let (min, max) = (
                    humantime::format_duration(min),
                    humantime::format_duration(max),
                );
                return fail(key, &format!("must be between {min} and {max}"));
            }
        }
        if self.jwt.refresh_secret.is_some() && self.jwt.refresh_secret == self.jwt.signing_key {
            // Under HS256 resource servers hold the signing secret: it must not verify
            // refresh tokens too.
            return fail("jwt.refresh_secret", "must not be the signing key's file");
        }
        if !self.server.public_url.starts_with("http://")
            && !self.server.public_url.starts_with("https://")
        {
            return fail("server.public_url", "must start with http:// or https://");
        }
        crate::db::DatabaseUrl::parse(self.database.url.expose())
            .map_err(|e| ConfigError(format!("`database.url`: {e}")))?;
        self.webhooks.check()?;
        if let Some(url) = &self.throttle.redis_url {
            let url = url.expose();
            if !url.starts_with("redis://") && !url.starts_with("unix://") {
                return fail(
                    "throttle.redis_url",
                    "must start with redis:// (or unix:// for a socket)",
                );
            }
        }
        self.cookies.check()
    }

    /// Every duration setting with the values it may take. The maxima are what a careful
    /// operator could want, far inside what the code represents (chrono's date range,
    /// JWT `exp` seconds, timers): an out-of-range value stops start-up here, naming its
    /// key, instead of overflowing later. Zero is refused where it would break the
    /// service (a pool that never waits, tokens or links that are never valid).
    fn durations(&self) -> [(&'static str, Duration, RangeInclusive<Duration>); 13] {
        const MS: Duration = Duration::from_millis(1);
        const S: Duration = Duration::from_secs(1);
        const MINUTE: Duration = Duration::from_secs(60);
        const HOUR: Duration = Duration::from_secs(3600);
        const YEAR: Duration = Duration::from_secs(366 * 24 * 3600);
        let (server, db, jwt) = (&self.server, &self.database, &self.jwt);
        let accounts = &self.accounts;
        [
            (
                "server.shutdown_timeout",
                server.shutdown_timeout,
                Duration::ZERO..=HOUR,
            ),
            ("database.connect_timeout", db.connect_timeout, MS..=HOUR),
            ("jwt.access_ttl", jwt.access_ttl, S..=YEAR),
            ("jwt.refresh_ttl", jwt.refresh_ttl, S..=YEAR),
            (
                "jwt.rotation_grace",
                jwt.rotation_grace,
                Duration::ZERO..=5 * MINUTE,
            ),
            ("jwt.leeway", jwt.leeway, Duration::ZERO..=5 * MINUTE),
            ("accounts.activation_ttl", accounts.activation_ttl, S..=YEAR),
            ("accounts.reset_ttl", accounts.reset_ttl, S..=YEAR),
            ("mfa.token_ttl", self.mfa.token_ttl, S..=HOUR),
            (
                "accounts.email_change_ttl",
                accounts.email_change_ttl,
                S..=YEAR,
            ),
            (
                "email.retry_base",
                self.email.retry_base,
                Duration::ZERO..=crate::email::worker::MAX_BACKOFF,
            ),
            ("webhooks.timeout", self.webhooks.timeout, MS..=5 * MINUTE),
            (
                "webhooks.retry_base",
                self.webhooks.retry_base,
                Duration::ZERO..=crate::webhooks::MAX_BACKOFF,
            ),
        ]
    }

    /// `iss` of issued tokens: `jwt.issuer`, defaulting to `server.public_url`.
    pub fn issuer(&self) -> String {
        self.jwt
            .issuer
            .clone()
            .unwrap_or_else(|| self.public_url().to_owned())
    }

    /// The origin (RFC 6454) of `server.public_url` as a browser sends it in `Origin`:
    /// scheme and host lower-cased, the port only when it is not the scheme's default.
    pub fn public_origin(&self) -> String {
        let url = self.public_url();
        let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
        let scheme = scheme.to_ascii_lowercase();
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let host = host.to_ascii_lowercase();
        let default_port = if scheme == "https" { ":443" } else { ":80" };
        let host = host.strip_suffix(default_port).unwrap_or(&host);
        format!("{scheme}://{host}")
    }

    /// The issuer authenticator apps show: `mfa.issuer`, defaulting to `accounts.site_name`.
    pub fn mfa_issuer(&self) -> &str {
        self.mfa
            .issuer
            .as_deref()
            .unwrap_or(&self.accounts.site_name)
    }

    /// The public URL without a trailing slash, ready to have paths appended.
    pub fn public_url(&self) -> &str {
        self.server.public_url.trim_end_matches('/')
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A value that must never reach a log line or an error message.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(pub T);

impl<T> Secret<T> {
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret<String> {
    /// Serialization is for `check-config` and for the defaults layer, and always masks:
    /// the built-in database URL, the one value the defaults layer carries, has no secret
    /// part and comes through unchanged.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact::url(&self.0))
    }
}

/// Durations as humantime strings (`900s`, `15m`, `14d`).
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Seconds(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(text) => humantime::parse_duration(text.trim()).map_err(|e| {
                D::Error::custom(format!(
                    "invalid duration {text:?} ({e}); use e.g. 900s, 15m, 14d"
                ))
            }),
            Raw::Seconds(secs) => Ok(Duration::from_secs(secs)),
        }
    }
}

/// `webhooks.endpoints`: a TOML array of tables, or (from the environment, where commas
/// cannot separate tables) the text of a JSON array.
mod endpoints {
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

    use super::WebhookEndpoint;

    pub fn serialize<S: Serializer>(value: &[WebhookEndpoint], s: S) -> Result<S::Ok, S::Error> {
        value.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<WebhookEndpoint>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Json(String),
            Items(Vec<WebhookEndpoint>),
        }
        match Raw::deserialize(d)? {
            Raw::Json(text) => serde_json::from_str(&text)
                .map_err(|e| D::Error::custom(format!("not a JSON array of endpoints: {e}"))),
            Raw::Items(items) => Ok(items),
        }
    }
}

/// Lists from a TOML array or from a comma-separated environment variable; each item is
/// parsed with `FromStr`, and a bad item is named in the error.
mod list {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

    pub fn serialize<T: Serialize, S: Serializer>(value: &[T], s: S) -> Result<S::Ok, S::Error> {
        value.serialize(s)
    }

    pub fn deserialize<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: FromStr,
        T::Err: Display,
    {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Items(Vec<String>),
        }
        let items = match Raw::deserialize(d)? {
            Raw::Text(text) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            Raw::Items(items) => items,
        };
        items
            .iter()
            .map(|item| item.parse().map_err(D::Error::custom))
            .collect()
    }
}

#[cfg(test)]
// figment's `Jail` closures return its (large) error type by design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn the_public_origin_is_what_a_browser_sends() {
        let origin = |url: &str| {
            let mut s = Settings::default();
            s.server.public_url = url.into();
            s.public_origin()
        };
        assert_eq!(origin("http://127.0.0.1:8000"), "http://127.0.0.1:8000");
        assert_eq!(
            origin("HTTPS://Auth.Example.COM:443/base/"),
            "https://auth.example.com"
        );
        assert_eq!(origin("http://auth.example:80"), "http://auth.example");
        assert_eq!(
            origin("https://auth.example:8443/x?y#z"),
            "https://auth.example:8443"
        );
    }

    #[test]
    fn the_cookie_must_be_able_to_come_back() {
        let check = |f: fn(&mut CookieSettings)| {
            let mut s = Settings::default();
            f(&mut s.cookies);
            s.check().map_err(|e| e.to_string())
        };
        assert_eq!(check(|_| {}), Ok(()));
        assert_eq!(check(|c| c.path = "/".into()), Ok(()));
        assert_eq!(check(|c| c.path = "/auth/".into()), Ok(()));
        assert_eq!(check(|c| c.domain = Some("example.com".into())), Ok(()));
        for bad in ["/au", "/auth/token", "auth", "/auth;x", "/authx"] {
            let mut s = Settings::default();
            s.cookies.path = bad.into();
            let err = s.check().expect_err(bad).to_string();
            assert!(err.contains("`cookies.path`"), "{bad}: {err}");
        }
        for bad in ["", "a b", "a;b", "a=b", "é"] {
            let mut s = Settings::default();
            s.cookies.name = bad.into();
            let err = s.check().expect_err(bad).to_string();
            assert!(err.contains("`cookies.name`"), "{bad:?}: {err}");
        }
        let err = check(|c| c.domain = Some("example.com; Secure".into())).expect_err("domain");
        assert!(err.contains("`cookies.domain`"), "{err}");
        let host = |c: &mut CookieSettings| {
            c.name = "__Host-rt".into();
            c.path = "/".into();
        };
        assert_eq!(check(host), Ok(()));
        let err = check(|c| c.name = "__Host-rt".into()).expect_err("path /auth");
        assert!(err.contains("`cookies.name`"), "{err}");
    }

    #[test]
    fn env_overrides_nest_and_lists_split_on_commas() {
        Jail::expect_with(|jail| {
            jail.set_env("LATCHKEY_JWT__ACCESS_TTL", "5m");
            jail.set_env("LATCHKEY_EMAIL__SMTP__PORT", "2525");
            jail.set_env("LATCHKEY_SERVER__TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1");
            jail.set_env("LATCHKEY_LOG_FORMAT", "json");
            jail.set_env("DATABASE_URL", "postgres://u:pw@db/x");
            let s = Settings::load().map_err(|e| e.to_string())?;
            assert_eq!(s.jwt.access_ttl, Duration::from_secs(300));
            assert_eq!(s.email.smtp.port, 2525);
            let proxies: Vec<String> = s
                .server
                .trusted_proxies
                .iter()
                .map(|p| p.to_string())
                .collect();
            assert_eq!(proxies, ["10.0.0.0/8", "127.0.0.1/32"]);
            assert_eq!(s.database.url.expose(), "postgres://u:pw@db/x");
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_their_key() {
        Jail::expect_with(|jail| {
            jail.set_env("LATCHKEY_JWT__REFRESH_TTL", "fortnight");
            let err = Settings::load()
                .expect_err("bad duration must fail")
                .to_string()
                .to_lowercase();
            assert!(err.contains("jwt.refresh_ttl"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("LATCHKEY_JWT__ALGORITM", "ES256");
            let err = Settings::load()
                .expect_err("unknown key must fail")
                .to_string()
                .to_lowercase();
            assert!(err.contains("algoritm"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("LATCHKEY_PASSWORD__BCRYPT_COST", "3");
            let err = Settings::load().expect_err("cost 3 must fail").to_string();
            assert!(err.contains("password.bcrypt_cost"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn config_file_layer_is_read() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                "[jwt]\naudience = \"svc\"\n[throttle]\nenabled = false\n",
            )?;
            jail.set_env("LATCHKEY_CONFIG", "custom.toml");
            let s = Settings::load().map_err(|e| e.to_string())?;
            assert_eq!(s.jwt.audience, "svc");
            assert!(!s.throttle.enabled);
            Ok(())
        });
    }

    #[test]
    fn secrets_are_redacted() {
        let url = Secret("postgres://app:hunter2@db:5432/latchkey".to_owned());
        assert_eq!(format!("{url:?}"), "[redacted]");
        let json = serde_json::to_string(&url).unwrap_or_default();
        assert!(
            !json.contains("hunter2") && json.contains("app:********@db"),
            "{json}"
        );
    }
}
