//! Changing the email address or the username of an account (API.md, "Email and username
//! change"): the parts that span rows and so must be one transaction.
//!
//! An email change is two steps. The request records the new address on the user row
//! (`pending_email`, `email_change_requested_at`) and queues, in the same transaction, the
//! confirmation link to the new address and a notice without a link to the current one:
//! either the request and both messages happen, or nothing does (a link the per-recipient
//! limit refuses leaves the earlier request, and its link, as they were). The link's token
//! is bound to that row state ([`EmailChangeBinding`]); confirming replaces the address
//! with a write conditional on the very state the token was checked against, so a link
//! works once, and not after a newer request or a password change.
//!
//! Uniqueness is the unique index's: whoever commits an address first has it, and the
//! other write gets a unique violation, answered as `conflict`. An *unclaimed* account
//! holding the address (see `db::models::users`) is replaced by a confirmed change as it
//! is by a new registration: the confirmer has just shown the address is theirs, and
//! otherwise anyone could keep an address from its owner by registering it and never
//! activating.

use chrono::{DateTime, Utc};
use diesel::Connection;

use crate::auth::account_tokens::{AccountTokens, EmailChangeBinding};
use crate::config::Settings;
use crate::db::models::groups;
use crate::db::models::outbox::{self, NewEmail, RecipientLimit};
use crate::db::models::users::{PendingEmailChange, Taken, User};
use crate::db::{DbConnection, DbError};
use crate::domain::Email;
use crate::email::{self, templates};
use crate::webhooks::{Event, UserChange, Webhooks};

/// The `purpose` of confirmation links in the outbox (for the per-recipient limit).
pub const EMAIL_CHANGE_PURPOSE: &str = "email_change";

/// A requested email change, its password already verified.
pub struct EmailChangeRequest<'a> {
    pub user_id: &'a str,
    /// The `uid` of the user's links.
    pub uid: &'a str,
    /// The hash the request verified `current_password` against.
    pub verified_hash: &'a str,
    pub new_email: &'a Email,
}

/// Why a requested email change was not recorded.
#[derive(Debug, PartialEq, Eq)]
pub enum NotRequested {
    /// The user is gone or their password changed since the request checked it.
    Stale,
    /// The new address has been sent enough links lately (the per-recipient limit).
    Limited,
}

/// Why a confirmation changed nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum NotConfirmed {
    /// The row moved on since the token was checked: the link was used a moment ago, or
    /// a newer request or a password change superseded it.
    Stale,
    /// Another account has the address.
    Taken,
}

/// Ends a transaction early with its work rolled back.
enum Abort<W> {
    Refused(W),
    Db(DbError),
}

impl<W> From<DbError> for Abort<W> {
    fn from(e: DbError) -> Self {
        Self::Db(e)
    }
}

impl<W> From<diesel::result::Error> for Abort<W> {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.into())
    }
}

fn settle<T, W>(outcome: Result<T, Abort<W>>) -> Result<Result<T, W>, DbError> {
    match outcome {
        Ok(done) => Ok(Ok(done)),
        Err(Abort::Refused(why)) => Ok(Err(why)),
        Err(Abort::Db(e)) => Err(e),
    }
}

fn new_email(email: &email::Email) -> NewEmail<'_> {
    NewEmail {
        recipient: &email.to,
        subject: &email.subject,
        text_body: &email.text,
        html_body: &email.html,
    }
}

/// Records the requested address (superseding any earlier request) and queues the
/// confirmation link to it, within `limit`, and the notice to the current address, in one
/// transaction. The caller wakes the outbox worker.
pub fn request_email_change(
    conn: &mut DbConnection,
    settings: &Settings,
    tokens: &AccountTokens,
    limit: &RecipientLimit,
    request: &EmailChangeRequest<'_>,
    now: DateTime<Utc>,
) -> Result<Result<(), NotRequested>, DbError> {
    let outcome = conn.transaction(|conn| {
        let new = request.new_email.as_str();
        let user =
            User::request_email_change(conn, request.user_id, request.verified_hash, new, now)?
                .ok_or(Abort::Refused(NotRequested::Stale))?;
        let requested_at = user
            .email_change_requested_at
            .ok_or(Abort::Refused(NotRequested::Stale))?;
        let binding = EmailChangeBinding {
            user_id: &user.id,
            password_hash: &user.password_hash,
            email: &user.email,
            new_email: new,
            requested_at,
        };
        let token = tokens.make_email_change(&binding, now);
        let accounts = &settings.accounts;
        let link = templates::link(
            &accounts.email_change_url,
            settings.public_url(),
            request.uid,
            &token,
        );
        let site = &accounts.site_name;
        let confirmation = templates::email_change(site, new, &user.username, &link);
        let queued = outbox::enqueue_link(
            conn,
            &new_email(&confirmation),
            EMAIL_CHANGE_PURPOSE,
            &user.id,
            limit,
            now,
        )?;
        if !queued {
            return Err(Abort::Refused(NotRequested::Limited));
        }
        // Not under the link limit: an attacker could otherwise spend the old address's
        // allowance (password-reset requests cost nothing) to change it unannounced.
        let notice = templates::email_change_notice(site, &user.email, &user.username, new);
        outbox::enqueue(conn, &new_email(&notice), now)?;
        Ok(())
    });
    settle(outcome)
}

/// The user row's pending change, if it has one, as the confirmation token must match it.
pub fn pending_change(user: &User) -> Option<PendingEmailChange<'_>> {
    Some(PendingEmailChange {
        id: &user.id,
        password_hash: &user.password_hash,
        email: &user.email,
        pending_email: user.pending_email.as_deref()?,
        requested_at: user.email_change_requested_at?,
    })
}

/// The binding the confirmation token of `change` was made for.
pub fn binding<'a>(change: &PendingEmailChange<'a>) -> EmailChangeBinding<'a> {
    EmailChangeBinding {
        user_id: change.id,
        password_hash: change.password_hash,
        email: change.email,
        new_email: change.pending_email,
        requested_at: change.requested_at,
    }
}

/// Makes the pending address the user's, verified, if the row is still `change` (the
/// state whose token the caller checked). With `replace_unclaimed` (email verification
/// on), an unclaimed account holding the address is deleted first (see the module docs).
/// Returns the user with their groups.
pub fn confirm_email_change(
    conn: &mut DbConnection,
    change: &PendingEmailChange<'_>,
    replace_unclaimed: bool,
    hooks: &Webhooks,
) -> Result<Result<(User, Vec<String>), NotConfirmed>, DbError> {
    let key = Email::key_of(change.pending_email);
    let now = Utc::now();
    let outcome = conn.transaction(|conn| {
        if replace_unclaimed {
            for old in User::delete_unclaimed_email(conn, &key, change.id)? {
                log::info!(target: "latchkey::accounts",
                    "unclaimed user {} replaced by user {}'s confirmed email change", old.id, change.id);
                hooks.record(conn, &Event::UserDeleted(&old), now)?;
            }
        }
        let user = match User::confirm_email_change(conn, change, &key) {
            Ok(Some(user)) => user,
            Ok(None) => return Err(Abort::Refused(NotConfirmed::Stale)),
            Err(e) if User::taken(&e) == Some(Taken::Email) => {
                return Err(Abort::Refused(NotConfirmed::Taken));
            }
            Err(e) => return Err(Abort::Db(e)),
        };
        hooks.record(conn, &Event::User(UserChange::Updated, &user), now)?;
        let names = groups::names_of(conn, &user.id)?;
        Ok((user, names))
    });
    settle(outcome)
}
