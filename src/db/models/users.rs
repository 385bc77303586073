//! The `users` table.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::db_time;
use crate::db::schema::users;
use crate::db::{DbConnection, DbError};

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

impl User {
    pub fn insert(conn: &mut DbConnection, new: &NewUser<'_>) -> Result<User, DbError> {
        Ok(diesel::insert_into(users::table)
            .values(new)
            .returning(users::all_columns)
            .get_result(conn)?)
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

    /// Which of the keys already belong to someone (checked before the costly hash).
    pub fn find_taken(
        conn: &mut DbConnection,
        username_key: &str,
        email_key: &str,
    ) -> Result<Option<Taken>, DbError> {
        let hits: Vec<(String, String)> = users::table
            .filter(
                users::username_key
                    .eq(username_key)
                    .or(users::email_key.eq(email_key)),
            )
            .select((users::username_key, users::email_key))
            .load(conn)?;
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

    pub fn touch_last_login(
        conn: &mut DbConnection,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<User>, DbError> {
        Ok(diesel::update(users::table.find(id))
            .set(users::last_login.eq(db_time(at)))
            .returning(users::all_columns)
            .get_result(conn)
            .optional()?)
    }

    /// Marks the email verified and, unless the account still waits for an administrator's
    /// approval, activates it. Conditional on the email not being verified yet, so of two concurrent
    /// uses of one activation link exactly one succeeds.
    pub fn activate(conn: &mut DbConnection, id: &str) -> Result<Option<User>, DbError> {
        let pending = users::table
            .find(id)
            .filter(users::email_verified.eq(false));
        Ok(diesel::update(pending)
            .set((
                users::email_verified.eq(true),
                users::is_active.eq(diesel::dsl::not(users::approval_pending)),
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

    /// Deletes the user; their groups and tokens go with them (ON DELETE CASCADE).
    pub fn delete(conn: &mut DbConnection, id: &str) -> Result<bool, DbError> {
        Ok(diesel::delete(users::table.find(id)).execute(conn)? > 0)
    }
}
