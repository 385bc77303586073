//! Start-up: settings -> database, keys, hashing pool, mailer -> `AppState` -> a bound
//! listener and a running server. `Application::build` binds first (port 0 in tests) and
//! exposes the real port; `run_until_stopped` serves until SIGTERM/SIGINT, draining
//! in-flight requests for up to `server.shutdown_timeout`.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::middleware::{Condition, ErrorHandlers, from_fn};
use actix_web::{App, HttpServer, web};
use chrono::Utc;

use crate::auth::account_tokens::AccountTokens;
use crate::auth::hash_pool::HashPool;
use crate::auth::jwt::TokenService;
use crate::auth::keys::{KeyError, KeySet};
use crate::auth::password::PasswordHasher;
use crate::auth::totp::SecretBox;
use crate::config::{ConfigError, Settings};
use crate::console::Console;
use crate::db::models::tokens;
use crate::db::{Database, DatabaseUrl, DbError};
use crate::domain::PasswordPolicy;
use crate::email::{MailError, Mailer, worker};
use crate::http::account_limit::AccountLimit;
use crate::http::error::problem_for_foreign_errors;
use crate::http::extractors::json_config;
use crate::http::observe::observe;
use crate::http::routes;
use crate::http::shared_throttle::{RedisLimits, SharedThrottle, shared_throttle};
use crate::http::state::AppState;
use crate::http::throttle::{RouteLimits, Throttle};
use crate::metrics::{Metrics, OutcomeLabels};
use crate::webhooks::Webhooks;
use crate::webhooks::delivery::Sender;
use crate::webhooks::worker::Worker;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `latchkey webhooks send-test` did not get a 2xx.
    #[error("{0}")]
    Webhook(String),
    #[error("`database.url`: {0}")]
    Database(#[from] DbError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error("`server.bind` ({bind}): {source}")]
    Bind {
        bind: String,
        source: std::io::Error,
    },
    #[error("`{key}`: {source}")]
    Io {
        key: &'static str,
        source: std::io::Error,
    },
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        settings.check()?;
        let state = build_state(settings)?;
        state.hasher.warm_up();
        let bind = state.settings.server.bind.clone();
        let listener = TcpListener::bind(&bind).map_err(|source| StartupError::Bind {
            bind: bind.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { bind, source })?
            .port();
        let server_settings = state.settings.server.clone();
        let throttle = Throttle::new(&state.settings.throttle, RouteLimits::new(&routes::all()))?;
        throttle.spawn_purge(THROTTLE_PURGE_EVERY);
        let shared = state.shared_limits.as_ref().map(|limits| {
            web::Data::new(SharedThrottle {
                limits: Arc::clone(limits),
                throttle: throttle.clone(),
            })
        });
        state.account_limit.spawn_purge(THROTTLE_PURGE_EVERY);
        let origins = state.settings.cors.allowed_origins.clone();
        let console_enabled = state.settings.console.enabled;
        let console = web::Data::new(Console::new());
        let state = web::Data::new(state);
        spawn_token_purge(state.db.clone());
        crate::http::mailing::spawn_link_resolver(state.clone());
        let server = HttpServer::new(move || {
            // One governor per level: actix-governor's header middleware needs the service
            // it wraps to have an `Unpin` future, which only a router (app or scope) has.
            let api = web::scope("").wrap(throttle.mfa()).service(
                web::scope("").wrap(throttle.user()).service(
                    web::scope("")
                        .wrap(throttle.anon())
                        .configure(routes::configure)
                        .configure(|cfg| {
                            if console_enabled {
                                cfg.app_data(console.clone());
                                routes::configure_pages(cfg);
                            }
                        }),
                ),
            );
            // Middleware listed from the innermost out: a request meets them bottom-up.
            let mut app = App::new();
            if let Some(shared) = &shared {
                app = app.app_data(shared.clone());
            }
            app.app_data(state.clone())
                .app_data(json_config())
                .service(api)
                .wrap(throttle.login())
                .wrap(Condition::new(shared.is_some(), from_fn(shared_throttle)))
                .wrap(Condition::new(!origins.is_empty(), cors(&origins)))
                .wrap(ErrorHandlers::new().default_handler(problem_for_foreign_errors))
                .wrap(from_fn(observe))
                .default_service(web::to(routes::not_found))
        })
        .workers(server_settings.workers)
        .shutdown_timeout(server_settings.shutdown_timeout.as_secs())
        .max_connections(MAX_CONNECTIONS_PER_WORKER)
        .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
        .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
        .listen(listener)
        .map_err(|source| StartupError::Io {
            key: "server.bind",
            source,
        })?
        .run();
        log::info!(target: "latchkey", "listening on {} (port {port})", server_settings.bind);
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// How often idle throttle keys are forgotten.
const THROTTLE_PURGE_EVERY: Duration = Duration::from_secs(60);
/// How often expired refresh-token rows are deleted (`latchkey flush-expired` does the same).
const TOKEN_PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Open connections per worker thread beyond which new ones wait in the listen backlog.
const MAX_CONNECTIONS_PER_WORKER: usize = 10_000;
/// A client must send its request head within this (slowloris); 408 otherwise.
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Browser access for the configured origins only: exact matches, credentials allowed
/// for them, the headers the API uses, preflights cached for an hour.
fn cors(origins: &[String]) -> Cors {
    let cors = origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin));
    cors.allowed_methods(["GET", "POST", "PATCH", "DELETE"])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .allowed_header("x-request-id")
        .allowed_header(crate::http::browser::TRANSPORT_HEADER)
        .expose_headers([
            "retry-after",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-request-id",
        ])
        .supports_credentials()
        .max_age(3600)
}

/// Deletes expired refresh-token rows every [`TOKEN_PURGE_EVERY`], first one period after
/// start-up. Several replicas doing it too is harmless.
fn spawn_token_purge(db: Database) {
    drop(tokio::spawn(async move {
        let start = tokio::time::Instant::now() + TOKEN_PURGE_EVERY;
        let mut tick = tokio::time::interval_at(start, TOKEN_PURGE_EVERY);
        loop {
            tick.tick().await;
            let purged = db
                .write(|conn| {
                    // Expired second-step tokens go with the expired refresh tokens.
                    crate::db::models::mfa::delete_expired_tokens(conn, Utc::now())?;
                    tokens::delete_expired(conn, Utc::now(), tokens::PURGE_BATCH)
                })
                .await;
            match purged {
                Ok((tokens, families)) => log::info!(target: "latchkey::db",
                    "purged {tokens} expired refresh tokens and {families} token families"),
                Err(e) => log::warn!(target: "latchkey::db", "purging expired tokens failed: {e}"),
            }
        }
    }));
}

/// Everything the handlers share, from the settings. Starts the email and webhook workers, so it must
/// run inside the server's async runtime.
pub fn build_state(settings: Settings) -> Result<AppState, StartupError> {
    // Everything that can be checked without a connection is checked first: a failed start
    // must not leave pool threads half-way through connecting while the process exits.
    let url = DatabaseUrl::parse(settings.database.url.expose())
        .map_err(|e| ConfigError(format!("`database.url`: {e}")))?;
    let keys = KeySet::load(&settings.jwt, &url)?;
    let mailer = Mailer::new(&settings.email)?;
    let webhooks = Webhooks::load(&settings.webhooks).map_err(ConfigError)?;
    let sender = Sender::new(settings.webhooks.timeout).map_err(ConfigError)?;
    let db = Database::connect(&settings.database, settings.database.migrate_on_start)?;
    let account_secret = account_token_secret(&settings, &keys)?;
    let account_tokens = AccountTokens::new(&account_secret);
    let totp = SecretBox::new(&account_secret)
        .map_err(|e| ConfigError(format!("`accounts.token_secret`: {e}")))?;
    let metrics = Metrics::new();
    let mut tokens = TokenService::new(keys, settings.issuer(), &settings.jwt);
    // `_owned`: clones, not guards on the family's lock (a second `get_or_create` creating
    // a series while the first one's guard lives waits for ever).
    let hits = metrics
        .verified_cache
        .get_or_create_owned(&OutcomeLabels { outcome: "hit" });
    let misses = metrics
        .verified_cache
        .get_or_create_owned(&OutcomeLabels { outcome: "miss" });
    tokens.count_cache_lookups(hits, misses);
    let p = &settings.password;
    let pool = HashPool::new(p.hash_concurrency, p.queue_limit, metrics.hash_wait.clone())
        .map_err(|source| StartupError::Io {
            key: "password.hash_concurrency",
            source,
        })?;
    let hasher = PasswordHasher::new(p.bcrypt_cost, pool);
    let policy = PasswordPolicy {
        min_length: p.min_length,
    };
    let outbox = worker::spawn(
        db.clone(),
        mailer,
        settings.email.retry_base,
        metrics.emails.clone(),
    );
    let worker = Worker::new(sender, &settings.webhooks, metrics.webhooks.clone());
    crate::webhooks::worker::spawn(&db, &webhooks, worker);
    let throttle = &settings.throttle;
    let shared_limits = match &throttle.redis_url {
        Some(url) if throttle.enabled => {
            let fallbacks = metrics.throttle_fallback.clone();
            let limits = RedisLimits::new(url.expose(), fallbacks)
                .map_err(|e| ConfigError(format!("`throttle.redis_url`: {e}")))?;
            Some(Arc::new(limits))
        }
        _ => None,
    };
    let account_limit = Arc::new(AccountLimit::new(throttle, shared_limits.clone()));
    Ok(AppState {
        account_limit,
        shared_limits,
        settings,
        db,
        tokens,
        hasher,
        policy,
        account_tokens,
        totp,
        outbox,
        links: crate::http::mailing::LinkQueue::default(),
        webhooks,
        metrics,
    })
}

/// `accounts.token_secret` if set, else the signing key's material (from which the HMAC
/// key is derived, never used directly).
fn account_token_secret(settings: &Settings, keys: &KeySet) -> Result<Vec<u8>, StartupError> {
    match &settings.accounts.token_secret {
        Some(path) => {
            let secret = std::fs::read(path).map_err(|source| StartupError::Io {
                key: "accounts.token_secret",
                source,
            })?;
            if secret.trim_ascii().len() < 32 {
                return Err(ConfigError(
                    "`accounts.token_secret`: must hold at least 32 bytes".into(),
                )
                .into());
            }
            Ok(secret.trim_ascii().to_vec())
        }
        None => Ok(keys.encoding.as_bytes().to_vec()),
    }
}
