//! Account operations shared by the HTTP API and operators: starting a session, replacing
//! a password, approving a pending account (with `accounts.require_admin_approval`), staff
//! changes to a user and deletion, each in one transaction with the invariants that span
//! rows (at least one active staff user remains; a deactivated user keeps no live refresh
//! token; no session outlives a password change, a reset or a deactivation).
//!
//! That last one holds because every operation on a user's sessions writes the user row
//! first: a session starts with a write that is conditional on the password hash and the
//! active flag its request verified ([`User::claim_for_session`]), and a password change
//! or a deactivation writes the row before revoking the sessions. The row's lock (on
//! PostgreSQL; SQLite's single writer serialises everything) orders the two: a login that
//! commits first has its session revoked by the change, and one that comes second finds
//! the new hash or the inactive account and starts nothing.

use chrono::{DateTime, Utc};
use diesel::Connection;

use crate::config::Settings;
use crate::db::models::outbox::{self, NewEmail};
use crate::db::models::tokens::{Opening, Revoke};
use crate::db::models::users::{User, UserChanges};
use crate::db::models::{groups, tokens};
use crate::db::{DbConnection, DbError};
use crate::email::templates;
use crate::webhooks::{Event, UserChange, Webhooks};

/// Why an account operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("no such user")]
    NotFound,
    #[error("unknown groups: {0:?}")]
    UnknownGroups(Vec<String>),
    #[error("the last active staff user cannot lose staff status or be removed")]
    LastStaff,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for AccountError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.into())
    }
}

/// A session to start: its first refresh token (with where from and how authenticated)
/// and the password hash the request verified.
pub struct NewSession<'a> {
    pub opening: Opening<'a>,
    pub verified_hash: &'a str,
    /// A login moves `last_login`; a password change does not.
    pub touch_login: bool,
    /// Told of the new session (`session.created`).
    pub hooks: &'a Webhooks,
}

/// Why a session did not start: the user row no longer is what the request verified.
pub enum Refused {
    /// The user is gone, or their password changed since the request checked it.
    Credentials,
    /// The account is not active; the row as it is now.
    Inactive(Box<User>),
}

/// A started session's user, as the session starts, with their groups.
pub type Started = (User, Vec<String>);

/// Starts a session against the password hash and active flag its request verified: the
/// conditional write on the user row, then the new family, in one transaction.
pub fn start_session(
    conn: &mut DbConnection,
    new: &NewSession<'_>,
    now: DateTime<Utc>,
) -> Result<Result<Started, Refused>, DbError> {
    conn.transaction(|conn| start_in(conn, new, now))
}

fn start_in(
    conn: &mut DbConnection,
    new: &NewSession<'_>,
    now: DateTime<Utc>,
) -> Result<Result<Started, Refused>, DbError> {
    let id = new.opening.first.user_id;
    let login_at = new.touch_login.then_some(now);
    let Some(user) = User::claim_for_session(conn, id, new.verified_hash, login_at)? else {
        return Ok(Err(match User::find(conn, id)? {
            Some(user) if user.password_hash == new.verified_hash => {
                Refused::Inactive(Box::new(user))
            }
            _ => Refused::Credentials,
        }));
    };
    tokens::start_family(conn, &new.opening, now, new.hooks)?;
    let groups = groups::names_of(conn, id)?;
    Ok(Ok((user, groups)))
}

/// A password replacement: the hash the request checked, the new one, why sessions end,
/// and, for a password change, the first token of the caller's new session.
pub struct PasswordChange<'a> {
    pub user_id: &'a str,
    pub old_hash: &'a str,
    pub new_hash: &'a str,
    pub why: &'static str,
    pub new_session: Option<Opening<'a>>,
    /// Told of the change, the sessions it ends and the one it starts.
    pub hooks: &'a Webhooks,
}

/// Why [`replace_password`] changed nothing.
pub enum NotReplaced {
    /// The hash was no longer the one checked: a concurrent change won.
    Stale,
    /// The new session could not start: the account was deactivated meanwhile.
    Inactive,
}

/// Ends a transaction early with its work rolled back.
enum Abort {
    Refused(NotReplaced),
    Db(DbError),
}

impl From<DbError> for Abort {
    fn from(e: DbError) -> Self {
        Self::Db(e)
    }
}

impl From<diesel::result::Error> for Abort {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.into())
    }
}

/// Replaces the password hash if it is still the one the request checked (a reset link
/// used twice at once changes the password once), revokes every session of the user and
/// starts the new one if asked, all in one transaction: a failure half-way changes
/// nothing. Returns the new session, if one was asked for.
pub fn replace_password(
    conn: &mut DbConnection,
    change: &PasswordChange<'_>,
    now: DateTime<Utc>,
) -> Result<Result<Option<Started>, NotReplaced>, DbError> {
    let id = change.user_id;
    let outcome = conn.transaction(|conn| {
        if !User::replace_password_hash(conn, id, change.old_hash, change.new_hash)? {
            return Err(Abort::Refused(NotReplaced::Stale));
        }
        let revoke = Revoke {
            why: change.why,
            now,
            hooks: change.hooks,
        };
        tokens::revoke_user_families(conn, id, None, &revoke)?;
        change
            .hooks
            .record(conn, &Event::PasswordChanged { user_id: id }, now)?;
        let Some(opening) = change.new_session else {
            return Ok(None);
        };
        let new = NewSession {
            opening,
            verified_hash: change.new_hash,
            touch_login: false,
            hooks: change.hooks,
        };
        match start_in(conn, &new, now)? {
            Ok(started) => Ok(Some(started)),
            Err(Refused::Inactive(_)) => Err(Abort::Refused(NotReplaced::Inactive)),
            Err(Refused::Credentials) => Err(Abort::Refused(NotReplaced::Stale)),
        }
    });
    match outcome {
        Ok(started) => Ok(Ok(started)),
        Err(Abort::Refused(why)) => Ok(Err(why)),
        Err(Abort::Db(e)) => Err(e),
    }
}

/// Approves a pending account and queues the "account approved" email (delivered by the
/// running service's outbox worker). `false` when the user was not pending approval.
pub fn approve(
    conn: &mut DbConnection,
    settings: &Settings,
    hooks: &Webhooks,
    user_id: &str,
) -> Result<bool, DbError> {
    let verification = settings.accounts.require_email_verification;
    conn.transaction(|conn| {
        let Some(user) = User::approve(conn, user_id, verification)? else {
            return Ok(false);
        };
        let now = Utc::now();
        hooks.record(conn, &Event::User(UserChange::Approved, &user), now)?;
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
        outbox::enqueue(conn, &new, now)?;
        log::info!(target: "latchkey::accounts", "user {} approved", user.id);
        Ok(true)
    })
}

/// What a staff member changes on a user: row fields, and optionally the exact set of
/// groups (names, checked to exist here).
#[derive(Default)]
pub struct StaffUpdate {
    pub changes: UserChanges,
    pub groups: Option<Vec<String>>,
}

/// Applies a staff member's changes to a user and returns the user with their groups.
/// `is_active: false` disables the account (activation will not lift that) and revokes
/// every refresh token of the user; `is_active: true` lifts it and activates the account,
/// or, on an account pending approval, approves it (the approval email is queued, and the
/// account activates once its email is verified).
pub fn update_by_staff(
    conn: &mut DbConnection,
    settings: &Settings,
    hooks: &Webhooks,
    user_id: &str,
    mut update: StaffUpdate,
) -> Result<(User, Vec<String>), AccountError> {
    conn.transaction(|conn| {
        // Always taken first: the transaction starts with a write (see `db`).
        let last_staff = is_last_staff(conn, user_id)?;
        let demotes =
            update.changes.is_staff == Some(false) || update.changes.is_active == Some(false);
        if demotes && last_staff {
            return Err(AccountError::LastStaff);
        }
        let user = User::find(conn, user_id)?.ok_or(AccountError::NotFound)?;
        // The row is written before the sessions are revoked below (see the module docs).
        if let Some(active) = update.changes.is_active {
            User::set_disabled_by_staff(conn, user_id, !active)?;
        }
        if let Some(names) = &update.groups {
            let unknown = groups::unknown(conn, names)?;
            if !unknown.is_empty() {
                return Err(AccountError::UnknownGroups(unknown));
            }
            groups::set_for_user(conn, user_id, names)?;
        }
        if update.changes.is_active == Some(true) && user.approval_pending {
            approve(conn, settings, hooks, user_id)?;
            // Approval decides: active now, or once the email is verified.
            update.changes.is_active = None;
        }
        let user = User::update(conn, user_id, &update.changes)?.ok_or(AccountError::NotFound)?;
        let now = Utc::now();
        hooks.record(conn, &Event::User(UserChange::Updated, &user), now)?;
        if update.changes.is_active == Some(false) {
            let revoke = Revoke {
                why: "deactivated",
                now,
                hooks,
            };
            let revoked = tokens::revoke_user_families(conn, user_id, None, &revoke)?;
            log::info!(target: "latchkey::accounts",
                "user {user_id} disabled by staff; {revoked} refresh-token famil{} revoked",
                if revoked == 1 { "y" } else { "ies" });
        }
        let names = groups::names_of(conn, user_id)?;
        Ok((user, names))
    })
}

/// Deletes a user with their tokens and memberships, unless they are the last active
/// staff user. `NotFound` if there is no such user. Their live sessions are revoked first,
/// so that `session.revoked` tells of each before `user.deleted`.
pub fn delete(
    conn: &mut DbConnection,
    hooks: &Webhooks,
    user_id: &str,
) -> Result<(), AccountError> {
    conn.transaction(|conn| {
        if is_last_staff(conn, user_id)? {
            return Err(AccountError::LastStaff);
        }
        let user = User::find(conn, user_id)?.ok_or(AccountError::NotFound)?;
        let now = Utc::now();
        let revoke = Revoke {
            why: "deleted",
            now,
            hooks,
        };
        tokens::revoke_user_families(conn, user_id, None, &revoke)?;
        if !User::delete(conn, user_id)? {
            return Err(AccountError::NotFound);
        }
        hooks.record(conn, &Event::UserDeleted(&user), now)?;
        Ok(())
    })
}

/// Runs `change`, a write that returns the user it changed (`None`: nothing changed), and
/// records that as a `kind` event, in one transaction.
pub fn change_user(
    conn: &mut DbConnection,
    hooks: &Webhooks,
    kind: UserChange,
    change: impl FnOnce(&mut DbConnection) -> Result<Option<User>, DbError>,
) -> Result<Option<User>, DbError> {
    conn.transaction(|conn| {
        let user = change(conn)?;
        if let Some(user) = &user {
            hooks.record(conn, &Event::User(kind, user), Utc::now())?;
        }
        Ok(user)
    })
}

/// Whether `user_id` is the only active staff user. Holds the staff rows locked for the
/// rest of the transaction, so the answer stays true until it commits.
fn is_last_staff(conn: &mut DbConnection, user_id: &str) -> Result<bool, DbError> {
    let staff = User::lock_active_staff(conn)?;
    Ok(staff.len() == 1 && staff[0] == user_id)
}
