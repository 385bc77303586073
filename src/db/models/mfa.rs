//! The `user_totp`, `recovery_codes` and `mfa_tokens` tables, and `users.mfa_enabled`.
//!
//! Secrets arrive here sealed (`auth::totp::SecretBox`) and codes and tokens as hashes:
//! nothing this module stores is usable as it is.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::db_time;
use super::tokens::{self, Revoke};
use crate::db::schema::{mfa_tokens, recovery_codes, user_totp, users};
use crate::db::{DbConnection, DbError};

#[derive(Queryable, Clone)]
pub struct TotpRow {
    pub user_id: String,
    pub secret: Option<String>,
    pub pending_secret: Option<String>,
    pub last_step: i64,
}

pub fn totp_of(conn: &mut DbConnection, user_id: &str) -> Result<Option<TotpRow>, DbError> {
    Ok(user_totp::table.find(user_id).get_result(conn).optional()?)
}

/// Starts (or restarts) an enrolment with the sealed `pending` secret.
pub fn set_pending(conn: &mut DbConnection, user_id: &str, pending: &str) -> Result<(), DbError> {
    let updated = diesel::update(user_totp::table.find(user_id))
        .set(user_totp::pending_secret.eq(pending))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(user_totp::table)
            .values((
                user_totp::user_id.eq(user_id),
                user_totp::pending_secret.eq(pending),
                user_totp::last_step.eq(0i64),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Records `step` as used, if it is newer than every step used before: `false` is a
/// replay (or an older code after a newer one). One conditional UPDATE, so two replicas
/// checking the same code cannot both accept it.
pub fn claim_step(conn: &mut DbConnection, user_id: &str, step: i64) -> Result<bool, DbError> {
    let updated = diesel::update(
        user_totp::table
            .find(user_id)
            .filter(user_totp::last_step.lt(step)),
    )
    .set(user_totp::last_step.eq(step))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Turns TOTP on: the pending secret (as the request read it) becomes the secret, the
/// confirming step is recorded, and the recovery codes are replaced, in one transaction.
/// `false`: the enrolment changed meanwhile.
pub fn confirm(
    conn: &mut DbConnection,
    user_id: &str,
    pending: &str,
    step: i64,
    code_hashes: &[String],
) -> Result<bool, DbError> {
    conn.transaction(|conn| {
        let updated = diesel::update(
            user_totp::table
                .find(user_id)
                .filter(user_totp::pending_secret.eq(pending))
                .filter(user_totp::last_step.lt(step)),
        )
        .set((
            user_totp::secret.eq(Some(pending)),
            user_totp::pending_secret.eq(None::<String>),
            user_totp::last_step.eq(step),
        ))
        .execute(conn)?;
        if updated == 0 {
            return Ok(false);
        }
        diesel::update(users::table.find(user_id))
            .set(users::mfa_enabled.eq(true))
            .execute(conn)?;
        replace_recovery_codes(conn, user_id, code_hashes)?;
        Ok(true)
    })
}

pub fn replace_recovery_codes(
    conn: &mut DbConnection,
    user_id: &str,
    code_hashes: &[String],
) -> Result<(), DbError> {
    conn.transaction(|conn| {
        diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id)))
            .execute(conn)?;
        // One statement per code: the multi-connection backend has no batch insert.
        for hash in code_hashes {
            diesel::insert_into(recovery_codes::table)
                .values((
                    recovery_codes::user_id.eq(user_id),
                    recovery_codes::code_hash.eq(hash),
                ))
                .execute(conn)?;
        }
        Ok(())
    })
}

/// Uses up a recovery code: `true` if it was one of the user's unused codes.
pub fn use_recovery_code(
    conn: &mut DbConnection,
    user_id: &str,
    code_hash: &str,
) -> Result<bool, DbError> {
    let deleted = diesel::delete(recovery_codes::table.find((user_id, code_hash))).execute(conn)?;
    Ok(deleted == 1)
}

pub fn recovery_codes_left(conn: &mut DbConnection, user_id: &str) -> Result<i64, DbError> {
    Ok(recovery_codes::table
        .filter(recovery_codes::user_id.eq(user_id))
        .count()
        .get_result(conn)?)
}

/// Turns TOTP off for a user: secret, enrolment, recovery codes and pending `mfa_token`s
/// go, and every session but `keep` (the caller's own, if any) is revoked, in one
/// transaction. `false`: no such user.
pub fn remove(
    conn: &mut DbConnection,
    user_id: &str,
    keep: Option<&str>,
    revoke: &Revoke<'_>,
) -> Result<bool, DbError> {
    conn.transaction(|conn| {
        let was_on = diesel::update(users::table.find(user_id))
            .set(users::mfa_enabled.eq(false))
            .returning(users::id)
            .get_results::<String>(conn)?;
        if was_on.is_empty() {
            return Ok(false);
        }
        diesel::delete(user_totp::table.find(user_id)).execute(conn)?;
        diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id)))
            .execute(conn)?;
        diesel::delete(mfa_tokens::table.filter(mfa_tokens::user_id.eq(user_id))).execute(conn)?;
        tokens::revoke_user_families(conn, user_id, keep, revoke)?;
        Ok(true)
    })
}

#[derive(Queryable)]
pub struct MfaTokenRow {
    pub token_hash: String,
    pub user_id: String,
    pub password_fingerprint: String,
    pub expires_at: NaiveDateTime,
    pub failures: i32,
    pub used: bool,
}

pub fn insert_token(
    conn: &mut DbConnection,
    token_hash: &str,
    user_id: &str,
    password_fingerprint: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::insert_into(mfa_tokens::table)
        .values((
            mfa_tokens::token_hash.eq(token_hash),
            mfa_tokens::user_id.eq(user_id),
            mfa_tokens::password_fingerprint.eq(password_fingerprint),
            mfa_tokens::expires_at.eq(db_time(expires_at)),
            mfa_tokens::failures.eq(0),
            mfa_tokens::used.eq(false),
        ))
        .execute(conn)?;
    Ok(())
}

/// A token that is still usable (not used, not expired, fewer than `max_failures` wrong
/// codes).
pub fn usable_token(
    conn: &mut DbConnection,
    token_hash: &str,
    max_failures: i32,
    now: DateTime<Utc>,
) -> Result<Option<MfaTokenRow>, DbError> {
    Ok(mfa_tokens::table
        .find(token_hash)
        .filter(mfa_tokens::used.eq(false))
        .filter(mfa_tokens::failures.lt(max_failures))
        .filter(mfa_tokens::expires_at.gt(db_time(now)))
        .get_result(conn)
        .optional()?)
}

/// Marks a token used, if it still was not: `false` when another request got there first.
pub fn spend_token(conn: &mut DbConnection, token_hash: &str) -> Result<bool, DbError> {
    let updated = diesel::update(
        mfa_tokens::table
            .find(token_hash)
            .filter(mfa_tokens::used.eq(false)),
    )
    .set(mfa_tokens::used.eq(true))
    .execute(conn)?;
    Ok(updated == 1)
}

pub fn count_failure(conn: &mut DbConnection, token_hash: &str) -> Result<(), DbError> {
    diesel::update(mfa_tokens::table.find(token_hash))
        .set(mfa_tokens::failures.eq(mfa_tokens::failures + 1))
        .execute(conn)?;
    Ok(())
}

/// Deletes tokens that expired before `now` (with the expired refresh tokens).
pub fn delete_expired_tokens(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    Ok(
        diesel::delete(mfa_tokens::table.filter(mfa_tokens::expires_at.le(db_time(now))))
            .execute(conn)?,
    )
}
