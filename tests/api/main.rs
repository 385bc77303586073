//! Black-box tests of the HTTP contract in API.md.
//!
//! One test binary (instead of one per file) so the crate and its dependencies are
//! linked once. Every scenario is an `async fn(Backend)` run against SQLite and, when
//! `LATCHKEY_TEST_POSTGRES_URL` is set, against PostgreSQL, via `dual_backend_tests!`.

/// Generates, for each listed `async fn name(backend: Backend)` of the calling module,
/// `sqlite::name` and `postgres::name` test cases. The PostgreSQL variant passes (after
/// printing why) when no server is configured, so a plain `cargo test` needs no set-up.
macro_rules! dual_backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = crate::helpers::Backend::postgres() {
                        super::$name(backend).await
                    }
                }
            )*
        }
    };
}

mod helpers;
mod ops_helpers;
#[allow(dead_code)]
#[path = "../support/pg.rs"]
mod pg;

mod admin_search;
mod admin_users;
mod adversarial;
mod browser_sessions;
mod console_pages;
mod cors;
mod email_change;
mod errors;
mod failover;
mod flush_expired;
mod groups;
mod hashing;
mod hostile_tokens;
mod jwks;
mod key_rotation;
mod limits;
mod login;
mod mfa;
mod observability;
mod openapi;
mod password_reset;
mod probes;
mod refresh;
mod register;
mod sabotage;
mod session_races;
mod sessions;
mod shared_throttle;
mod smtp;
mod smtp_sink;
mod throttle;
mod username_change;
mod users_me;
mod verify_logout;
mod webhook_receiver;
mod webhooks;
