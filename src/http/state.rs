//! What every handler shares; built once by `app`, one per running application, so several
//! instances can live in one process (the tests do that).

use super::account_limit::AccountLimit;
use super::error::ApiError;
use super::mailing::LinkQueue;
use super::shared_throttle::RedisLimits;
use crate::auth::account_tokens::AccountTokens;
use crate::auth::jwt::TokenService;
use crate::auth::password::PasswordHasher;
use crate::auth::totp::SecretBox;
use crate::config::Settings;
use crate::db::Database;
use crate::domain::{Password, PasswordPolicy, Problems};
use crate::email::worker::Outbox;
use crate::metrics::Metrics;
use crate::webhooks::Webhooks;

pub struct AppState {
    pub account_limit: std::sync::Arc<AccountLimit>,
    /// `throttle.redis_url`: the limits every replica shares.
    pub shared_limits: Option<std::sync::Arc<RedisLimits>>,
    pub settings: Settings,
    pub db: Database,
    pub tokens: TokenService,
    pub hasher: PasswordHasher,
    pub policy: PasswordPolicy,
    pub account_tokens: AccountTokens,
    /// Seals the TOTP secrets stored in the database.
    pub totp: SecretBox,
    pub outbox: Outbox,
    /// Wakes the link resolver (`mailing`).
    pub links: LinkQueue,
    /// Where account events go (recorded in the transaction of their change).
    pub webhooks: Webhooks,
    pub metrics: Metrics,
}

impl AppState {
    /// A new password checked against the policy, off the async workers; the outer error
    /// is a full hashing queue (503), the inner one the policy's messages for the field.
    pub async fn check_password(
        &self,
        raw: &str,
        attributes: &[&str],
    ) -> Result<Result<Password, Problems>, ApiError> {
        let attributes = attributes.iter().map(|a| (*a).to_owned()).collect();
        Ok(self
            .hasher
            .check_policy(self.policy, raw.to_owned(), attributes)
            .await?)
    }
}
