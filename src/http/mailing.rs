//! Account emails. A request for an activation or reset link is written to
//! `link_requests` before it is answered, for any address, known or not: every answer costs
//! one insert, so its timing reveals nothing, and a crash right after the answer loses no
//! email. The link resolver ([`spawn_link_resolver`]) then finds the account, decides
//! whether it gets a link (by the same rules the handlers state), and queues the email.
//!
//! Emailed account links have a per-recipient limit ([`LINK_LIMIT`]): without one, anyone
//! (a botnet slips past the per-IP `login` throttle) could have latchkey mail a victim
//! without end. The limit is checked in the outbox table, so it holds across replicas; a
//! request over it is answered exactly like any other (202, `{}`), and only the metric
//! `latchkey_emails_total{outcome="limited"}` and an info log line tell.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use chrono::{DateTime, Utc};
use diesel::Connection;
use tokio::sync::Notify;

use super::state::AppState;
use crate::auth::account_tokens::{Binding, Purpose};
use crate::db::models::lease::chrono_duration;
use crate::db::models::link_requests::{self, LinkRequest};
use crate::db::models::outbox::{self, NewEmail, RecipientLimit};
use crate::db::models::users::User;
use crate::db::{DbConnection, DbError};
use crate::domain::UserId;
use crate::email::templates;
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

/// Wakes the link resolver after a request was recorded.
#[derive(Clone, Default)]
pub struct LinkQueue {
    wake: Arc<Notify>,
}

impl LinkQueue {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Records a request for a `purpose` link to the account of the address whose key is
/// `email_key` (if there is one), on `conn`: call it in the transaction that decides it.
pub fn request_link(
    conn: &mut DbConnection,
    purpose: Purpose,
    email_key: &str,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    link_requests::insert(conn, label(purpose), email_key, now)
}

/// Records a request for a `purpose` link to `email_key`'s account and wakes the resolver.
pub async fn ask_for_link(
    state: &AppState,
    purpose: Purpose,
    email_key: String,
) -> Result<(), DbError> {
    state
        .db
        .write(move |conn| request_link(conn, purpose, &email_key, Utc::now()))
        .await?;
    state.links.wake();
    Ok(())
}

fn label(purpose: Purpose) -> &'static str {
    match purpose {
        Purpose::Activation => "activation",
        Purpose::PasswordReset => "password_reset",
    }
}

/// Claiming and resolving a request are one transaction, so a crash half-way leaves the
/// request as it was; the lease only keeps two resolvers off one request meanwhile.
const LEASE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_secs(1);
const RETRY_BASE: Duration = Duration::from_secs(1);
/// A request that could not be resolved for this long is given up: its sender has long
/// asked again.
const MAX_AGE: Duration = Duration::from_secs(3600);

/// Resolves recorded link requests, one at a time, as long as the server's runtime runs.
pub fn spawn_link_resolver(state: web::Data<AppState>) {
    drop(tokio::spawn(async move {
        loop {
            let owner = state.clone();
            match state.db.write(move |conn| resolve_next(&owner, conn)).await {
                Ok(Some(Ok(resolved))) => {
                    match resolved {
                        Resolved::Queued => state.outbox.wake(),
                        Resolved::Limited => {
                            let limited = OutcomeLabels { outcome: "limited" };
                            state.metrics.emails.get_or_create(&limited).inc();
                        }
                        Resolved::Nobody => {}
                    }
                    continue;
                }
                Ok(Some(Err(e))) => {
                    log::warn!(target: "latchkey::email", "link request not resolved: {e}");
                }
                Ok(None) => {}
                Err(e) => {
                    log::warn!(target: "latchkey::email", "cannot resolve link requests: {e}")
                }
            }
            tokio::select! {
                () = state.links.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }));
}

/// What resolving a request came to.
enum Resolved {
    Queued,
    Limited,
    /// No account, or one that gets no link of this purpose: nothing to send.
    Nobody,
}

/// Claims the next due request and resolves it, in one transaction; `None` when none is
/// due. A resolution that fails is rolled back alone and the request retried later (given
/// up after [`MAX_AGE`]).
fn resolve_next(
    state: &AppState,
    conn: &mut DbConnection,
) -> Result<Option<Result<Resolved, DbError>>, DbError> {
    conn.transaction(|conn| {
        let now = Utc::now();
        let Some(request) = link_requests::claim_next(conn, now, LEASE, &[])? else {
            return Ok(None);
        };
        let outcome = conn.transaction(|conn| queue_for(state, conn, &request));
        let id = &request.id;
        match &outcome {
            Ok(_) => link_requests::done(conn, id, now, Duration::ZERO)?,
            Err(e)
                if (now.naive_utc() - request.created_at)
                    .to_std()
                    .unwrap_or_default()
                    >= MAX_AGE =>
            {
                link_requests::give_up(conn, id, &e.to_string(), now)?;
            }
            Err(e) => {
                let retry_at = now + chrono_duration(RETRY_BASE);
                link_requests::retry_later(conn, id, &e.to_string(), retry_at)?;
            }
        }
        Ok(Some(outcome))
    })
}

/// Finds the request's account and, if it gets a link of that purpose, queues the email
/// (within [`LINK_LIMIT`]).
fn queue_for(
    state: &AppState,
    conn: &mut DbConnection,
    request: &LinkRequest,
) -> Result<Resolved, DbError> {
    let purpose = match request.purpose.as_str() {
        "activation" => Purpose::Activation,
        _ => Purpose::PasswordReset,
    };
    let Some(user) = User::find_by_email_key(conn, &request.email_key)? else {
        return Ok(Resolved::Nobody);
    };
    let eligible = match purpose {
        // Reset: an active account. Activation: one still waiting for it, unless staff
        // disabled it (an unverified account must not reactivate itself).
        Purpose::PasswordReset => user.is_active,
        Purpose::Activation => !user.email_verified && !user.disabled_by_staff,
    };
    if !eligible {
        return Ok(Resolved::Nobody);
    }
    let Ok(uid) = user.id.parse::<UserId>() else {
        log::error!(target: "latchkey::accounts", "user id {} is not a UUID", user.id);
        return Ok(Resolved::Nobody);
    };
    let now = Utc::now();
    let token = state.account_tokens.make(purpose, &binding(&user), now);
    let accounts = &state.settings.accounts;
    let template = match purpose {
        Purpose::Activation => &accounts.activation_url,
        Purpose::PasswordReset => &accounts.reset_url,
    };
    let link = templates::link(template, state.settings.public_url(), &uid.to_uid(), &token);
    let (site, to, name) = (&accounts.site_name, &user.email, &user.username);
    let email = match purpose {
        Purpose::Activation => templates::activation(site, to, name, &link),
        Purpose::PasswordReset => templates::password_reset(site, to, name, &link),
    };
    let new = NewEmail {
        recipient: &email.to,
        subject: &email.subject,
        text_body: &email.text,
        html_body: &email.html,
    };
    let purpose = label(purpose);
    if outbox::enqueue_link(conn, &new, purpose, &user.id, &LINK_LIMIT, now)? {
        Ok(Resolved::Queued)
    } else {
        log::info!(target: "latchkey::email", "{purpose} link for user {} not queued: its address has had enough links lately", user.id);
        Ok(Resolved::Limited)
    }
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
