//! Start-up: settings -> database, keys, hashing pool, mailer -> `AppState` -> a bound
//! listener and a running server. `Application::build` binds first (port 0 in tests) and
//! exposes the real port; `run_until_stopped` serves until SIGTERM/SIGINT, draining
//! in-flight requests for up to `server.shutdown_timeout`.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::{ErrorHandlers, Logger};
use actix_web::{App, HttpServer, web};

use crate::auth::account_tokens::AccountTokens;
use crate::auth::hash_pool::HashPool;
use crate::auth::jwt::TokenService;
use crate::auth::keys::{KeyError, KeySet};
use crate::auth::password::PasswordHasher;
use crate::config::{ConfigError, Settings};
use crate::db::{Database, DatabaseUrl, DbError};
use crate::domain::PasswordPolicy;
use crate::email::{MailError, Mailer, worker};
use crate::http::error::problem_for_foreign_errors;
use crate::http::extractors::json_config;
use crate::http::routes;
use crate::http::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
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
        let state = web::Data::new(state);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(json_config())
                // One line per request; no query strings or bodies, which may hold secrets.
                .wrap(ErrorHandlers::new().default_handler(problem_for_foreign_errors))
                .wrap(
                    Logger::new("%{r}a \"%{METHOD}xi %U\" %s %b %Dms")
                        .custom_request_replace("METHOD", |req| req.method().to_string()),
                )
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .workers(server_settings.workers)
        .shutdown_timeout(server_settings.shutdown_timeout.as_secs())
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

/// Everything the handlers share, from the settings. Starts the email worker, so it must
/// run inside the server's async runtime.
pub fn build_state(settings: Settings) -> Result<AppState, StartupError> {
    // Everything that can be checked without a connection is checked first: a failed start
    // must not leave pool threads half-way through connecting while the process exits.
    let url = DatabaseUrl::parse(settings.database.url.expose())
        .map_err(|e| ConfigError(format!("`database.url`: {e}")))?;
    let keys = KeySet::load(&settings.jwt, &url)?;
    let mailer = Mailer::new(&settings.email)?;
    let db = Database::connect(&settings.database, settings.database.migrate_on_start)?;
    let account_tokens = AccountTokens::new(&account_token_secret(&settings, &keys)?);
    let jwt = &settings.jwt;
    let tokens = TokenService::new(
        keys,
        settings.issuer(),
        jwt.audience.clone(),
        jwt.access_ttl,
        jwt.refresh_ttl,
        jwt.leeway,
    );
    let p = &settings.password;
    let pool =
        HashPool::new(p.hash_concurrency, p.queue_limit).map_err(|source| StartupError::Io {
            key: "password.hash_concurrency",
            source,
        })?;
    let hasher = PasswordHasher::new(p.bcrypt_cost, pool);
    let policy = PasswordPolicy {
        min_length: p.min_length,
    };
    let outbox = worker::spawn(db.clone(), mailer, settings.email.retry_base);
    Ok(AppState {
        settings,
        db,
        tokens,
        hasher,
        policy,
        account_tokens,
        outbox,
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
