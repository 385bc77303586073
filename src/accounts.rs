//! Account operations shared by the HTTP API and operators: approving a pending account
//! (with `accounts.require_admin_approval`) and telling its owner.

use chrono::Utc;
use diesel::Connection;

use crate::config::Settings;
use crate::db::models::outbox::{self, NewEmail};
use crate::db::models::users::User;
use crate::db::{DbConnection, DbError};
use crate::email::templates;

/// Approves a pending account and queues the "account approved" email (delivered by the
/// running service's outbox worker). `false` when the user was not pending approval.
pub fn approve(
    conn: &mut DbConnection,
    settings: &Settings,
    user_id: &str,
) -> Result<bool, DbError> {
    let verification = settings.accounts.require_email_verification;
    conn.transaction(|conn| {
        let Some(user) = User::approve(conn, user_id, verification)? else {
            return Ok(false);
        };
        let email = templates::approved(
            &settings.accounts.site_name,
            &user.email,
            &user.username,
            settings.public_url(),
        );
        let new = NewEmail {
            recipient: &email.to,
            subject: &email.subject,
            text_body: &email.text,
            html_body: &email.html,
        };
        outbox::enqueue(conn, &new, Utc::now())?;
        log::info!(target: "latchkey::accounts", "user {} approved", user.id);
        Ok(true)
    })
}
