//! What every handler shares; built once by `app`, one per running application, so several
//! instances can live in one process (the tests do that).

use crate::auth::account_tokens::AccountTokens;
use crate::auth::jwt::TokenService;
use crate::auth::password::PasswordHasher;
use crate::config::Settings;
use crate::db::Database;
use crate::domain::PasswordPolicy;
use crate::email::worker::Outbox;
use crate::metrics::Metrics;

pub struct AppState {
    pub settings: Settings,
    pub db: Database,
    pub tokens: TokenService,
    pub hasher: PasswordHasher,
    pub policy: PasswordPolicy,
    pub account_tokens: AccountTokens,
    pub outbox: Outbox,
    pub metrics: Metrics,
}
