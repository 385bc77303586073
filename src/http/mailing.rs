//! Account emails, queued in the background so a response never waits for (or reveals
//! anything through the timing of) the queueing or the delivery.

use actix_web::web;
use chrono::Utc;

use super::state::AppState;
use crate::auth::account_tokens::{Binding, Purpose};
use crate::db::models::outbox::{self, NewEmail};
use crate::db::models::users::User;
use crate::domain::UserId;
use crate::email::{Email, templates};

/// Builds the `purpose` email for `user` with a fresh uid/token link and sends it later.
pub fn send_account_link(state: &web::Data<AppState>, user: &User, purpose: Purpose) {
    let Ok(id) = user.id.parse::<UserId>() else {
        log::error!(target: "latchkey::accounts", "user id {} is not a UUID", user.id);
        return;
    };
    let binding = Binding {
        user_id: &user.id,
        password_hash: &user.password_hash,
        last_login: user.last_login,
        email_verified: user.email_verified,
    };
    let token = state.account_tokens.make(purpose, &binding, Utc::now());
    let accounts = &state.settings.accounts;
    let template = match purpose {
        Purpose::Activation => &accounts.activation_url,
        Purpose::PasswordReset => &accounts.reset_url,
    };
    let link = templates::link(template, state.settings.public_url(), &id.to_uid(), &token);
    let (site, to, name) = (&accounts.site_name, &user.email, &user.username);
    let email = match purpose {
        Purpose::Activation => templates::activation(site, to, name, &link),
        Purpose::PasswordReset => templates::password_reset(site, to, name, &link),
    };
    send_later(state, email);
}

/// Queues `email` in the outbox (off the request path) and wakes the worker.
pub fn send_later(state: &web::Data<AppState>, email: Email) {
    let state = state.clone();
    actix_web::rt::spawn(async move {
        let queued = state
            .db
            .write(move |conn| {
                let new = NewEmail {
                    recipient: &email.to,
                    subject: &email.subject,
                    text_body: &email.text,
                    html_body: &email.html,
                };
                outbox::enqueue(conn, &new, Utc::now())
            })
            .await;
        match queued {
            Ok(()) => state.outbox.wake(),
            Err(e) => log::error!(target: "latchkey::email", "cannot queue email: {e}"),
        }
    });
}
