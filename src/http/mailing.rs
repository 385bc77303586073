//! Account emails, queued in the background so a response never waits for (or reveals
//! anything through the timing of) the queueing or the delivery.
//!
//! Emailed account links have a per-recipient limit ([`LINK_LIMIT`]): without one, anyone
//! (a botnet slips past the per-IP `login` throttle) could have latchkey mail a victim
//! without end. The limit is checked in the outbox table, so it holds across replicas; a
//! request over it is answered exactly like any other (202, `{}`), and only the metric
//! `latchkey_emails_total{outcome="limited"}` and an info log line tell.

use actix_web::web;
use chrono::Utc;

use super::state::AppState;
use crate::auth::account_tokens::{Binding, Purpose};
use crate::db::models::outbox::{self, NewEmail, RecipientLimit};
use crate::db::models::users::User;
use crate::domain::UserId;
use crate::email::{Email, templates};
use crate::metrics::OutcomeLabels;

/// At most two links of one purpose per address in 10 minutes (the first email may be
/// slow or filtered, so asking once more at once is normal), and five links of any purpose
/// in an hour. A link stays valid far longer (reset: 1 h, activation: 3 d, email change:
/// 1 d by default), so nobody needs more. Email-change links count too
/// ([`crate::account_changes`] queues them within this limit). Constants: OPERATIONS.md has no keys for them.
pub(crate) const LINK_LIMIT: RecipientLimit = RecipientLimit {
    per_purpose: 2,
    purpose_window: std::time::Duration::from_secs(10 * 60),
    total: 5,
    total_window: outbox::SENT_RETENTION,
};

/// Builds the `purpose` email for `user` with a fresh uid/token link and sends it later.
pub fn send_account_link(state: &web::Data<AppState>, user: &User, purpose: Purpose) {
    let Ok(id) = user.id.parse::<UserId>() else {
        log::error!(target: "latchkey::accounts", "user id {} is not a UUID", user.id);
        return;
    };
    let binding = binding(user);
    let token = state.account_tokens.make(purpose, &binding, Utc::now());
    let accounts = &state.settings.accounts;
    let template = match purpose {
        Purpose::Activation => &accounts.activation_url,
        Purpose::PasswordReset => &accounts.reset_url,
    };
    let link = templates::link(template, state.settings.public_url(), &id.to_uid(), &token);
    let (site, to, name) = (&accounts.site_name, &user.email, &user.username);
    let (email, label) = match purpose {
        Purpose::Activation => (templates::activation(site, to, name, &link), "activation"),
        Purpose::PasswordReset => (
            templates::password_reset(site, to, name, &link),
            "password_reset",
        ),
    };
    queue_link(state, email, label, user.id.clone());
}

/// Queues the link `email` in the outbox (off the request path, within [`LINK_LIMIT`])
/// and wakes the worker.
fn queue_link(state: &web::Data<AppState>, email: Email, purpose: &'static str, user_id: String) {
    let state = state.clone();
    actix_web::rt::spawn(async move {
        let user = user_id.clone();
        let queued = state
            .db
            .write(move |conn| {
                let new = NewEmail {
                    recipient: &email.to,
                    subject: &email.subject,
                    text_body: &email.text,
                    html_body: &email.html,
                };
                outbox::enqueue_link(conn, &new, purpose, &user_id, &LINK_LIMIT, Utc::now())
            })
            .await;
        match queued {
            Ok(true) => state.outbox.wake(),
            Ok(false) => {
                log::info!(target: "latchkey::email", "{purpose} link for user {user} not queued: its address has had enough links lately");
                let limited = OutcomeLabels { outcome: "limited" };
                state.metrics.emails.get_or_create(&limited).inc();
            }
            Err(e) => log::error!(target: "latchkey::email", "cannot queue email: {e}"),
        }
    });
}

/// What an activation or reset link of `user` is bound to: the row as it is now.
pub fn binding(user: &User) -> Binding<'_> {
    Binding {
        user_id: &user.id,
        password_hash: &user.password_hash,
        last_login: user.last_login,
        email_verified: user.email_verified,
        email: &user.email,
    }
}
