//! Account operations shared by the HTTP API and operators: approving a pending account
//! (with `accounts.require_admin_approval`), staff changes to a user and deletion, each in
//! one transaction with the invariants that span rows (at least one active staff user
//! remains; a deactivated user keeps no live refresh token).

use chrono::Utc;
use diesel::Connection;

use crate::config::Settings;
use crate::db::models::outbox::{self, NewEmail};
use crate::db::models::users::{User, UserChanges};
use crate::db::models::{groups, tokens};
use crate::db::{DbConnection, DbError};
use crate::email::templates;

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

/// What a staff member changes on a user: row fields, and optionally the exact set of
/// groups (names, checked to exist here).
#[derive(Default)]
pub struct StaffUpdate {
    pub changes: UserChanges,
    pub groups: Option<Vec<String>>,
}

/// Applies a staff member's changes to a user and returns the user with their groups.
/// Setting `is_active` on an account pending approval approves it (the approval email is
/// queued, and the account activates once its email is verified); deactivating revokes
/// every refresh token of the user.
pub fn update_by_staff(
    conn: &mut DbConnection,
    settings: &Settings,
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
        if let Some(names) = &update.groups {
            let unknown = groups::unknown(conn, names)?;
            if !unknown.is_empty() {
                return Err(AccountError::UnknownGroups(unknown));
            }
            groups::set_for_user(conn, user_id, names)?;
        }
        if update.changes.is_active == Some(true) && user.approval_pending {
            approve(conn, settings, user_id)?;
            // Approval decides: active now, or once the email is verified.
            update.changes.is_active = None;
        }
        if update.changes.is_active == Some(false) && user.is_active {
            let revoked =
                tokens::revoke_user_families(conn, user_id, None, "deactivated", Utc::now())?;
            log::info!(target: "latchkey::accounts",
                "user {user_id} deactivated; {revoked} refresh-token famil{} revoked",
                if revoked == 1 { "y" } else { "ies" });
        }
        let user = User::update(conn, user_id, &update.changes)?.ok_or(AccountError::NotFound)?;
        let names = groups::names_of(conn, user_id)?;
        Ok((user, names))
    })
}

/// Deletes a user with their tokens and memberships, unless they are the last active
/// staff user. `NotFound` if there is no such user.
pub fn delete(conn: &mut DbConnection, user_id: &str) -> Result<(), AccountError> {
    conn.transaction(|conn| {
        if is_last_staff(conn, user_id)? {
            return Err(AccountError::LastStaff);
        }
        if User::delete(conn, user_id)? {
            Ok(())
        } else {
            Err(AccountError::NotFound)
        }
    })
}

/// Whether `user_id` is the only active staff user. Holds the staff rows locked for the
/// rest of the transaction, so the answer stays true until it commits.
fn is_last_staff(conn: &mut DbConnection, user_id: &str) -> Result<bool, DbError> {
    let staff = User::lock_active_staff(conn)?;
    Ok(staff.len() == 1 && staff[0] == user_id)
}
