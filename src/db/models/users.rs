//! The `users` table.
//!
//! Account states: `is_active` is the flag login checks. It is false while the email is not
//! verified yet (with `accounts.require_email_verification`), while an administrator's
//! approval is pending, and while `disabled_by_staff` holds. That last one is a state of its
//! own: only staff set and lift it, and activation never overrides it.
//!
//! Pre-account hijacking (someone registers your address with their password before you
//! do; you follow the activation link and they log in with their password) is answered the
//! way GoTrue does: with email verification on, an account that never verified its email,
//! was never active, never logged in and was never disabled by staff is *unclaimed*, and a
//! new registration for its address replaces it ([`User::register`]). The newest
//! registrant's password wins, and the old account's links stop working (its row is gone),
//! so a registration answers 409 for an email only when that email is claimed. What is
//! left: a link is only as good as the registration that sent it, so someone who
//! registers your address after you and before you activate has the newer link mailed to
//! you; the mail names the username it is for.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::dsl::not;
use diesel::prelude::*;

use super::db_time;
use crate::db::schema::users;
use crate::db::{DbConnection, DbError};
use crate::webhooks::{Event, UserChange, Webhooks};

/// A user row. Deliberately not `Debug`/`Serialize`: it holds the password hash.
#[derive(Queryable, Selectable, Identifiable, Clone)]
#[diesel(table_name = users)]
pub struct User {
    pub id: String,
    pub username: String,
    pub username_key: String,
    pub email: String,
    pub email_key: String,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub bio: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub email_verified: bool,
    pub approval_pending: bool,
    pub claims: String,
    pub date_joined: NaiveDateTime,
    pub last_login: Option<NaiveDateTime>,
    pub disabled_by_staff: bool,
    /// The address of a requested email change, until it is confirmed (stored form).
    pub pending_email: Option<String>,
    /// When that change was requested; its emailed token is bound to it.
    pub email_change_requested_at: Option<NaiveDateTime>,
    pub mfa_enabled: bool,
}

/// An email change as its confirmation token saw it: the confirming write happens only if
/// the row still is exactly this (see [`User::confirm_email_change`]).
pub struct PendingEmailChange<'a> {
    pub id: &'a str,
    pub password_hash: &'a str,
    pub email: &'a str,
    pub pending_email: &'a str,
    pub requested_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: &'a str,
    pub username: &'a str,
    pub username_key: &'a str,
    pub email: &'a str,
    pub email_key: &'a str,
    pub password_hash: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub bio: &'a str,
    pub is_active: bool,
    pub is_staff: bool,
    pub email_verified: bool,
    pub approval_pending: bool,
    pub date_joined: NaiveDateTime,
}

/// Changes to a user row; `None` leaves a field as it is. Users change only the profile
/// fields on themselves; staff may change all of them on anyone.
#[derive(AsChangeset, Default)]
#[diesel(table_name = users)]
pub struct UserChanges {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub bio: Option<String>,
    pub is_active: Option<bool>,
    pub is_staff: Option<bool>,
    /// The custom claims object as JSON text.
    pub claims: Option<String>,
}

impl UserChanges {
    fn is_empty(&self) -> bool {
        self.first_name.is_none()
            && self.last_name.is_none()
            && self.bio.is_none()
            && self.is_active.is_none()
            && self.is_staff.is_none()
            && self.claims.is_none()
    }
}

/// Which unique key a new user collided with.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    Username,
    Email,
}

/// An account nobody has shown to own: never verified its email, never active, never
/// logged in, never disabled by staff (see the module docs).
#[diesel::dsl::auto_type(no_type_alias)]
fn unclaimed() -> _ {
    not(users::email_verified)
        .and(not(users::is_active))
        .and(not(users::disabled_by_staff))
        .and(users::last_login.is_null())
}

impl User {
    pub fn insert(conn: &mut DbConnection, new: &NewUser<'_>) -> Result<User, DbError> {
        Ok(diesel::insert_into(users::table)
            .values(new)
            .returning(users::all_columns)
            .get_result(conn)?)
    }

    /// Inserts a registration. With `replace_unclaimed` (email verification on), an
    /// unclaimed account with the same email is deleted first, in the same transaction:
    /// the new registrant takes the address over (see the module docs).
    pub fn register(
        conn: &mut DbConnection,
        new: &NewUser<'_>,
        replace_unclaimed: bool,
        hooks: &Webhooks,
    ) -> Result<User, DbError> {
        conn.transaction(|conn| {
            let now = Utc::now();
            if replace_unclaimed {
                let doomed = users::table
                    .filter(users::email_key.eq(new.email_key))
                    .filter(unclaimed());
                let replaced: Vec<User> = diesel::delete(doomed)
                    .returning(users::all_columns)
                    .get_results(conn)?;
                for old in &replaced {
                    log::info!(target: "latchkey::accounts",
                        "unclaimed user {} replaced by a new registration for its email", old.id);
                    hooks.record(conn, &Event::UserDeleted(old), now)?;
                }
            }
            let user = Self::insert(conn, new)?;
            hooks.record(conn, &Event::User(UserChange::Created, &user), now)?;
            Ok(user)
        })
    }

    /// Maps a unique violation from [`User::insert`] to the key that was taken (the
    /// constraint name on PostgreSQL, the column in SQLite's message).
    pub fn taken(err: &DbError) -> Option<Taken> {
        match err {
            DbError::UniqueViolation(what) if what.contains("username") => Some(Taken::Username),
            DbError::UniqueViolation(what) if what.contains("email") => Some(Taken::Email),
            _ => None,
        }
    }

    /// Which of the keys already belong to someone (checked before the costly hash). With
    /// `replace_unclaimed`, an unclaimed account with this email counts for neither key, as
    /// [`User::register`] will replace it.
    pub fn find_taken(
        conn: &mut DbConnection,
        username_key: &str,
        email_key: &str,
        replace_unclaimed: bool,
    ) -> Result<Option<Taken>, DbError> {
        let mut query = users::table
            .filter(
                users::username_key
                    .eq(username_key)
                    .or(users::email_key.eq(email_key)),
            )
            .select((users::username_key, users::email_key))
            .into_boxed();
        if replace_unclaimed {
            query = query.filter(not(users::email_key.eq(email_key).and(unclaimed())));
        }
        let hits: Vec<(String, String)> = query.load(conn)?;
        Ok(hits.first().map(|(u, _)| {
            if u == username_key {
                Taken::Username
            } else {
                Taken::Email
            }
        }))
    }

    pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<User>, DbError> {
        Ok(users::table.find(id).get_result(conn).optional()?)
    }

    pub fn find_by_username_key(
        conn: &mut DbConnection,
        key: &str,
    ) -> Result<Option<User>, DbError> {
        Ok(users::table
            .filter(users::username_key.eq(key))
            .get_result(conn)
            .optional()?)
    }

    pub fn find_by_email_key(conn: &mut DbConnection, key: &str) -> Result<Option<User>, DbError> {
        Ok(users::table
            .filter(users::email_key.eq(key))
            .get_result(conn)
            .optional()?)
    }

    pub fn update(
        conn: &mut DbConnection,
        id: &str,
        changes: &UserChanges,
    ) -> Result<Option<User>, DbError> {
        if changes.is_empty() {
            // diesel rejects an empty SET clause; nothing to change is a plain read.
            return Self::find(conn, id);
        }
        Ok(diesel::update(users::table.find(id))
            .set(changes)
            .returning(users::all_columns)
            .get_result(conn)
            .optional()?)
    }

    /// Why `self` may not log in (only said after the password matched, so it reveals
    /// nothing to someone guessing).
    pub fn inactive_reason(&self, verification_required: bool) -> &'static str {
        if self.disabled_by_staff {
            "account is disabled"
        } else if !self.email_verified && verification_required {
            "account is not activated yet: follow the link in the activation email"
        } else if self.approval_pending {
            "account is pending approval by an administrator"
        } else {
            "account is disabled"
        }
    }

    /// Replaces the password hash if it is still `expected`: a reset link (bound to the old
    /// hash) used twice at once changes the password once. Returns whether it changed.
    pub fn replace_password_hash(
        conn: &mut DbConnection,
        id: &str,
        expected: &str,
        hash: &str,
    ) -> Result<bool, DbError> {
        let current = users::table
            .find(id)
            .filter(users::password_hash.eq(expected));
        Ok(diesel::update(current)
            .set(users::password_hash.eq(hash))
            .execute(conn)?
            == 1)
    }

    /// The write a session starts with: the row must still be active and have the password
    /// hash the request verified (`None` otherwise). It takes the row's lock on PostgreSQL
    /// (SQLite's writer serialises it anyway), so a concurrent password change or
    /// deactivation either commits first, and this finds the new row, or waits for this
    /// transaction and then revokes the session it started. `login_at` moves `last_login`.
    pub fn claim_for_session(
        conn: &mut DbConnection,
        id: &str,
        verified_hash: &str,
        login_at: Option<DateTime<Utc>>,
    ) -> Result<Option<User>, DbError> {
        let current = users::table
            .find(id)
            .filter(users::password_hash.eq(verified_hash))
            .filter(users::is_active);
        let claimed = match login_at {
            Some(at) => diesel::update(current)
                .set(users::last_login.eq(db_time(at)))
                .returning(users::all_columns)
                .get_result(conn),
            // A no-op write: the lock, not the change, is what matters.
            None => diesel::update(current)
                .set(users::last_login.eq(users::last_login))
                .returning(users::all_columns)
                .get_result(conn),
        };
        Ok(claimed.optional()?)
    }

    /// Marks the email verified and, unless the account still waits for an administrator's
    /// approval or staff disabled it, activates it. Conditional on the email not being
    /// verified yet, so of two concurrent uses of one activation link exactly one succeeds.
    pub fn activate(conn: &mut DbConnection, id: &str) -> Result<Option<User>, DbError> {
        let pending = users::table
            .find(id)
            .filter(users::email_verified.eq(false));
        Ok(diesel::update(pending)
            .set((
                users::email_verified.eq(true),
                users::is_active
                    .eq(not(users::approval_pending).and(not(users::disabled_by_staff))),
            ))
            .returning(users::all_columns)
            .get_result(conn)
            .optional()?)
    }

    /// Ends a pending approval; the account becomes active if its email needs no (more)
    /// verification. Conditional on the approval still pending, so it happens once.
    pub fn approve(
        conn: &mut DbConnection,
        id: &str,
        verification_required: bool,
    ) -> Result<Option<User>, DbError> {
        let pending = users::table
            .find(id)
            .filter(users::approval_pending.eq(true));
        let verified =
            users::email_verified
                .eq(true)
                .or(diesel::dsl::sql::<diesel::sql_types::Bool>(
                    if verification_required {
                        "FALSE"
                    } else {
                        "TRUE"
                    },
                ));
        Ok(diesel::update(pending)
            .set((
                users::approval_pending.eq(false),
                users::is_active.eq(verified),
            ))
            .returning(users::all_columns)
            .get_result(conn)
            .optional()?)
    }

    /// Sets or lifts a staff block; setting it also deactivates the account. Lifting it
    /// leaves `is_active` to the caller (approval, or activation by staff).
    pub fn set_disabled_by_staff(
        conn: &mut DbConnection,
        id: &str,
        disabled: bool,
    ) -> Result<(), DbError> {
        let row = users::table.find(id);
        if disabled {
            diesel::update(row)
                .set((
                    users::disabled_by_staff.eq(true),
                    users::is_active.eq(false),
                ))
                .execute(conn)?;
        } else {
            diesel::update(row)
                .set(users::disabled_by_staff.eq(false))
                .execute(conn)?;
        }
        Ok(())
    }

    /// Locks the rows of the active staff users until the transaction ends and returns
    /// their ids. A no-op UPDATE takes row locks on PostgreSQL and the write lock on
    /// SQLite, so two staff members demoting each other at once cannot leave no staff.
    pub fn lock_active_staff(conn: &mut DbConnection) -> Result<Vec<String>, DbError> {
        let staff = users::table.filter(users::is_staff.eq(true).and(users::is_active.eq(true)));
        Ok(diesel::update(staff)
            .set(users::is_staff.eq(true))
            .returning(users::id)
            .get_results(conn)?)
    }

    /// Whether `email_key` belongs to a user other than `me`. With `replace_unclaimed`, an
    /// unclaimed account does not count: whoever proves the address takes it over, as a
    /// registration does ([`User::register`], [`User::delete_unclaimed_email`]).
    pub fn email_taken_by_other(
        conn: &mut DbConnection,
        email_key: &str,
        me: &str,
        replace_unclaimed: bool,
    ) -> Result<bool, DbError> {
        let mut query = users::table
            .filter(users::email_key.eq(email_key))
            .filter(users::id.ne(me))
            .select(users::id)
            .into_boxed();
        if replace_unclaimed {
            query = query.filter(not(unclaimed()));
        }
        Ok(query.first::<String>(conn).optional()?.is_some())
    }

    /// Whether `username_key` belongs to a user other than `me`.
    pub fn username_taken_by_other(
        conn: &mut DbConnection,
        username_key: &str,
        me: &str,
    ) -> Result<bool, DbError> {
        Ok(users::table
            .filter(users::username_key.eq(username_key))
            .filter(users::id.ne(me))
            .select(users::id)
            .first::<String>(conn)
            .optional()?
            .is_some())
    }

    /// Deletes an unclaimed account (see the module docs) holding `email_key`, other than
    /// `me`: someone just proved they own the address. Returns the ids deleted.
    pub fn delete_unclaimed_email(
        conn: &mut DbConnection,
        email_key: &str,
        me: &str,
    ) -> Result<Vec<User>, DbError> {
        let doomed = users::table
            .filter(users::email_key.eq(email_key))
            .filter(users::id.ne(me))
            .filter(unclaimed());
        Ok(diesel::delete(doomed)
            .returning(users::all_columns)
            .get_results(conn)?)
    }

    /// Records a requested email change (replacing any earlier one, whose link then stops
    /// working), if the password hash is still the one the request verified. `None`: the
    /// user is gone or the password changed meanwhile.
    pub fn request_email_change(
        conn: &mut DbConnection,
        id: &str,
        verified_hash: &str,
        new_email: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<User>, DbError> {
        let current = users::table
            .find(id)
            .filter(users::password_hash.eq(verified_hash));
        Ok(diesel::update(current)
            .set((
                users::pending_email.eq(Some(new_email)),
                users::email_change_requested_at.eq(Some(db_time(at))),
            ))
            .returning(users::all_columns)
            .get_result(conn)
            .optional()?)
    }

    /// Makes the pending address the user's (verified, since the link reached it) and
    /// clears the pending change, if the row still is what the token was checked against:
    /// of two uses of one link exactly one succeeds, and a link stops working once a newer
    /// request, a password change or the change itself has moved the row on. `None`
    /// otherwise. Another account holding `email_key` is a unique violation
    /// ([`User::taken`]: `Taken::Email`).
    pub fn confirm_email_change(
        conn: &mut DbConnection,
        change: &PendingEmailChange<'_>,
        email_key: &str,
    ) -> Result<Option<User>, DbError> {
        let current = users::table
            .find(change.id)
            .filter(users::password_hash.eq(change.password_hash))
            .filter(users::email.eq(change.email))
            .filter(users::pending_email.eq(change.pending_email))
            .filter(users::email_change_requested_at.eq(change.requested_at));
        Ok(diesel::update(current)
            .set((
                users::email.eq(change.pending_email),
                users::email_key.eq(email_key),
                users::email_verified.eq(true),
                users::pending_email.eq(None::<String>),
                users::email_change_requested_at.eq(None::<NaiveDateTime>),
            ))
            .returning(users::all_columns)
            .get_result(conn)
            .optional()?)
    }

    /// Renames the user, if the password hash is still the one the request verified
    /// (`None` otherwise, or when the user is gone). A name another account holds is a
    /// unique violation ([`User::taken`]: `Taken::Username`).
    pub fn change_username(
        conn: &mut DbConnection,
        id: &str,
        verified_hash: &str,
        username: &str,
        username_key: &str,
    ) -> Result<Option<User>, DbError> {
        let current = users::table
            .find(id)
            .filter(users::password_hash.eq(verified_hash));
        Ok(diesel::update(current)
            .set((
                users::username.eq(username),
                users::username_key.eq(username_key),
            ))
            .returning(users::all_columns)
            .get_result(conn)
            .optional()?)
    }

    /// Deletes the user; their groups and tokens go with them (ON DELETE CASCADE).
    pub fn delete(conn: &mut DbConnection, id: &str) -> Result<bool, DbError> {
        Ok(diesel::delete(users::table.find(id)).execute(conn)? > 0)
    }
}
