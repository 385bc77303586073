//! Refresh-token families, the outstanding tokens and the blacklist.
//!
//! A family is one login. Its row names the single live refresh token (`current_jti`);
//! rotation swaps it inside a transaction that first takes the family row's write lock, so
//! N concurrent refreshes of one token run one after the other and cannot fork the family.
//!
//! The grace window converges (API.md v2, GoTrue's rule): the token the current one
//! replaced (`previous_jti`), presented again less than `jwt.rotation_grace` after that
//! replacement (`rotated_at`), gets the family's current token back, the very string the
//! first caller received, rebuilt from `current_jti`, `current_issued_at` and
//! `expires_at`. Nothing rotates and nobody's token is displaced, so concurrent refreshes
//! of one token all end up holding the one live token, whatever order their answers
//! arrive in. Any older ancestor, or the replaced token after the window, is reuse.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};

use super::db_time;
use crate::db::fixed_sql::{Bind, Fixed};
use crate::db::schema::{blacklisted_tokens, outstanding_tokens, token_families};
use crate::db::{DbConnection, DbError};
use crate::webhooks::{Event, Webhooks};

/// Why a refresh token stopped working; stored in the blacklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Exchanged for a successor by its holder.
    Rotated,
    /// The family was revoked: logout, reuse, password change, deactivation...
    Revoked,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Rotated => "rotated",
            Self::Revoked => "revoked",
        }
    }
}

#[derive(Queryable, Debug)]
struct Family {
    user_id: String,
    current_jti: String,
    previous_jti: Option<String>,
    rotated_at: Option<NaiveDateTime>,
    current_issued_at: Option<NaiveDateTime>,
    expires_at: NaiveDateTime,
    amr: String,
}

/// Where a session is used from, as of its last use (API.md "Sessions").
#[derive(Debug, Clone, Copy)]
pub struct Device<'a> {
    /// The client address as the throttle sees it; empty when unknown.
    pub ip: &'a str,
    /// At most 256 characters.
    pub user_agent: &'a str,
}

/// A session about to start: its first refresh token, where from, and how its login was
/// authenticated (RFC 8176 `amr` values, space-separated: `pwd`, `pwd otp`).
#[derive(Debug, Clone, Copy)]
pub struct Opening<'a> {
    pub first: Issued<'a>,
    pub device: Device<'a>,
    pub amr: &'a str,
}

/// A live session as the session list shows it.
#[derive(Queryable, Debug)]
pub struct SessionRow {
    pub id: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    pub ip: String,
    pub user_agent: String,
    pub amr: String,
}

impl SessionRow {
    /// When it was last used: its start if it has not been refreshed since.
    pub fn last_used(&self) -> NaiveDateTime {
        self.last_used_at.unwrap_or(self.created_at)
    }
}

/// A refresh token to record: its id, family, owner, and the instants it carries.
#[derive(Debug, Clone, Copy)]
pub struct Issued<'a> {
    pub jti: &'a str,
    pub family_id: &'a str,
    pub user_id: &'a str,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A family's live refresh token, as much of it as rebuilds the token, and the session's
/// `amr`.
#[derive(Debug, PartialEq, Eq)]
pub struct LiveToken {
    pub jti: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub amr: String,
}

/// What presenting a refresh token to the rotation did.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The successor is now the family's live token; the session's `amr`.
    Rotated { amr: String },
    /// The token the live one replaced, again within the grace window: nothing changed,
    /// and the caller gets the live token.
    Converged(LiveToken),
    /// Reuse of a rotated token or an ancestor: the whole family is now revoked.
    Reused,
    /// The token no longer works (family revoked or unknown).
    Revoked,
}

/// Whether a refresh token is its family's live member.
#[derive(Debug, PartialEq, Eq)]
pub enum Liveness {
    Live,
    Dead,
}

/// Inputs of a rotation beyond the new token.
#[derive(Debug, Clone, Copy)]
pub struct RotateRequest<'a> {
    pub presented_jti: &'a str,
    /// Recorded as the session's last use (only when it rotates).
    pub device: Device<'a>,
    pub now: DateTime<Utc>,
    /// The replaced token presented again after this instant is reuse; `None`: no grace
    /// window at all (a request that was already waiting when the replacement happened
    /// then counts as reuse too).
    pub grace_cutoff: Option<DateTime<Utc>>,
    /// Told of a session revoked for reuse.
    pub hooks: &'a Webhooks,
}

/// Why and when sessions end, and who hears of it (`session.revoked`).
#[derive(Debug, Clone, Copy)]
pub struct Revoke<'a> {
    pub why: &'a str,
    pub now: DateTime<Utc>,
    pub hooks: &'a Webhooks,
}

impl<'a> Revoke<'a> {
    /// Sessions ending now, because of `why`.
    pub fn now(why: &'a str, hooks: &'a Webhooks) -> Self {
        Self {
            why,
            now: Utc::now(),
            hooks,
        }
    }
}

/// Starts a family (a session) with its first refresh token.
pub fn start_family(
    conn: &mut DbConnection,
    opening: &Opening<'_>,
    now: DateTime<Utc>,
    hooks: &Webhooks,
) -> Result<(), DbError> {
    let first = &opening.first;
    conn.transaction(|conn| {
        diesel::insert_into(token_families::table)
            .values((
                token_families::id.eq(first.family_id),
                token_families::user_id.eq(first.user_id),
                token_families::current_jti.eq(first.jti),
                token_families::current_issued_at.eq(db_time(first.issued_at)),
                token_families::created_at.eq(db_time(now)),
                token_families::expires_at.eq(db_time(first.expires_at)),
                token_families::ip.eq(opening.device.ip),
                token_families::user_agent.eq(opening.device.user_agent),
                token_families::amr.eq(opening.amr),
            ))
            .execute(conn)?;
        record_outstanding(conn, first, now)?;
        let event = Event::SessionCreated {
            user_id: first.user_id,
            session_id: first.family_id,
            amr: opening.amr,
        };
        hooks.record(conn, &event, now)
    })
}

fn record_outstanding(
    conn: &mut DbConnection,
    token: &Issued<'_>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::insert_into(outstanding_tokens::table)
        .values((
            outstanding_tokens::jti.eq(token.jti),
            outstanding_tokens::family_id.eq(token.family_id),
            outstanding_tokens::user_id.eq(token.user_id),
            outstanding_tokens::created_at.eq(db_time(now)),
            outstanding_tokens::expires_at.eq(db_time(token.expires_at)),
        ))
        .execute(conn)?;
    Ok(())
}

fn blacklist(
    conn: &mut DbConnection,
    jti: &str,
    family_id: &str,
    reason: Reason,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::insert_into(blacklisted_tokens::table)
        .values((
            blacklisted_tokens::jti.eq(jti),
            blacklisted_tokens::family_id.eq(family_id),
            blacklisted_tokens::reason.eq(reason.as_str()),
            blacklisted_tokens::blacklisted_at.eq(db_time(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Takes the write lock on a live family's row (see the module docs) and reads it, in one
/// statement. `None` when the family is unknown or already revoked.
fn lock_live_family(conn: &mut DbConnection, family_id: &str) -> Result<Option<Family>, DbError> {
    let live = token_families::table
        .find(family_id)
        .filter(token_families::revoked_at.is_null());
    // A no-op write: it is the lock, not the change, that matters.
    Ok(diesel::update(live)
        .set(token_families::current_jti.eq(token_families::current_jti))
        .returning((
            token_families::user_id,
            token_families::current_jti,
            token_families::previous_jti,
            token_families::rotated_at,
            token_families::current_issued_at,
            token_families::expires_at,
            token_families::amr,
        ))
        .get_result::<Family>(conn)
        .optional()?)
}

/// The rotation's write to the family row: the presented token, if it is the live one of
/// a live family, gives way to its successor. Both backends' rotation statements start
/// with it; its binds are [`advance_binds`].
macro_rules! advance {
    () => {
        "UPDATE token_families \
            SET previous_jti = ?, current_jti = ?, current_issued_at = ?, rotated_at = ?, \
                expires_at = ?, last_used_at = ?, ip = ?, user_agent = ? \
          WHERE id = ? AND revoked_at IS NULL AND current_jti = ?"
    };
}

fn advance_binds<'a>(req: &RotateRequest<'a>, successor: &Issued<'a>) -> Vec<Bind<'a>> {
    let now = db_time(req.now);
    vec![
        Bind::Text(req.presented_jti),
        Bind::Text(successor.jti),
        Bind::Time(db_time(successor.issued_at)),
        Bind::Time(now),
        Bind::Time(db_time(successor.expires_at)),
        Bind::Time(now),
        Bind::Text(req.device.ip),
        Bind::Text(req.device.user_agent),
        Bind::Text(successor.family_id),
        Bind::Text(req.presented_jti),
    ]
}

/// The common case: the presented token is its live family's current one. Makes
/// `successor` current instead, retires the presented token and records the successor,
/// all or nothing, and records the session's use in the same `UPDATE`; the session's `amr`,
/// or `None` (and no change) when the presented token is not live. The conditional
/// `UPDATE` takes the family row's write lock, as [`lock_live_family`] does.
fn rotate_live(
    conn: &mut DbConnection,
    req: RotateRequest<'_>,
    successor: &Issued<'_>,
) -> Result<Option<String>, DbError> {
    if let DbConnection::Postgres(pg) = conn {
        return rotate_live_postgres(pg, req, successor);
    }
    conn.transaction(|conn| {
        let DbConnection::Sqlite(sqlite) = &mut *conn else {
            unreachable!("PostgreSQL returned above");
        };
        let advanced: Option<String> = Fixed::<Text>::new(
            concat!(advance!(), " RETURNING amr"),
            advance_binds(&req, successor),
        )
        .get_result(sqlite)
        .optional()?;
        let Some(amr) = advanced else {
            return Ok(None);
        };
        let now = req.now;
        blacklist(
            conn,
            req.presented_jti,
            successor.family_id,
            Reason::Rotated,
            now,
        )?;
        record_outstanding(conn, successor, now)?;
        Ok(Some(amr))
    })
}

/// [`rotate_live`] on PostgreSQL: the same three writes as one statement, so one round trip
/// instead of five (a refresh's cost there is mostly round trips), prepared once per
/// connection ([`Fixed`]). It also lets its own
/// commit skip waiting for the WAL flush (`set_config(..., true)` lasts until the end of
/// the statement's transaction, which is the statement): a PostgreSQL crash can then lose
/// the last fraction of a second of rotations, whose successors come back as unknown
/// tokens and end their sessions through reuse detection. Nothing that revokes (a reuse,
/// a logout...) commits this way, so no revoked token can come back.
fn rotate_live_postgres(
    conn: &mut PgConnection,
    req: RotateRequest<'_>,
    successor: &Issued<'_>,
) -> Result<Option<String>, DbError> {
    let now = db_time(req.now);
    let mut binds = advance_binds(&req, successor);
    binds.extend([
        // retired
        Bind::Text(req.presented_jti),
        Bind::Text(Reason::Rotated.as_str()),
        Bind::Time(now),
        // recorded
        Bind::Text(successor.jti),
        Bind::Text(successor.user_id),
        Bind::Time(now),
        Bind::Time(db_time(successor.expires_at)),
    ]);
    let (amr, _without_flush): (Option<String>, String) = Fixed::<(Nullable<Text>, Text)>::new(
        concat!(
            "WITH advanced AS (",
            advance!(),
            " RETURNING id, amr), \
             retired AS ( \
                 INSERT INTO blacklisted_tokens (jti, family_id, reason, blacklisted_at) \
                 SELECT ?, id, ?, ? FROM advanced), \
             recorded AS ( \
                 INSERT INTO outstanding_tokens (jti, family_id, user_id, created_at, expires_at) \
                 SELECT ?, id, ?, ?, ? FROM advanced) \
             SELECT (SELECT amr FROM advanced) AS amr, \
                    set_config('synchronous_commit', 'off', true) AS without_flush"
        ),
        binds,
    )
    .get_result(conn)?;
    Ok(amr)
}

/// Exchanges the presented token for `successor`, enforcing the family invariant: at most one
/// live token. The token the live one replaced, presented again within the grace window,
/// converges on the live token instead (see the module docs).
pub fn rotate(
    conn: &mut DbConnection,
    req: RotateRequest<'_>,
    successor: &Issued<'_>,
) -> Result<Rotation, DbError> {
    if let Some(amr) = rotate_live(conn, req, successor)? {
        return Ok(Rotation::Rotated { amr });
    }
    let family_id = successor.family_id;
    conn.transaction(|conn| {
        // Not the live token (or not a live family): lock the family to decide which case
        // this is. Its current token cannot have become the presented one meanwhile, as
        // successors are always new tokens.
        let Some(family) = lock_live_family(conn, family_id)? else {
            return Ok(Rotation::Revoked);
        };
        let within_grace = family
            .rotated_at
            .zip(req.grace_cutoff)
            .is_some_and(|(at, cutoff)| at >= db_time(cutoff));
        if family.previous_jti.as_deref() == Some(req.presented_jti) && within_grace {
            // A family started before `current_issued_at` existed cannot rebuild its token.
            return Ok(family.current_issued_at.map_or(Rotation::Revoked, |at| {
                Rotation::Converged(LiveToken {
                    jti: family.current_jti,
                    issued_at: at.and_utc(),
                    expires_at: family.expires_at.and_utc(),
                    amr: family.amr,
                })
            }));
        }
        let reuse = Revoke {
            why: "reuse",
            now: req.now,
            hooks: req.hooks,
        };
        revoke_locked(conn, family_id, &family, &reuse)?;
        Ok(Rotation::Reused)
    })
}

fn revoke_locked(
    conn: &mut DbConnection,
    family_id: &str,
    family: &Family,
    revoke: &Revoke<'_>,
) -> Result<(), DbError> {
    diesel::update(token_families::table.find(family_id))
        .set((
            token_families::revoked_at.eq(db_time(revoke.now)),
            token_families::revoked_reason.eq(revoke.why),
        ))
        .execute(conn)?;
    blacklist(
        conn,
        &family.current_jti,
        family_id,
        Reason::Revoked,
        revoke.now,
    )?;
    let event = Event::SessionRevoked {
        user_id: &family.user_id,
        session_id: family_id,
        reason: revoke.why,
    };
    revoke.hooks.record(conn, &event, revoke.now)
}

/// The live sessions (families neither revoked nor expired) of `user_id`, most recently
/// used first. Read through the partial index of live families by user.
pub fn live_sessions(
    conn: &mut DbConnection,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<SessionRow>, DbError> {
    let mut rows: Vec<SessionRow> = token_families::table
        .filter(token_families::user_id.eq(user_id))
        .filter(token_families::revoked_at.is_null())
        .filter(token_families::expires_at.gt(db_time(now)))
        .select((
            token_families::id,
            token_families::created_at,
            token_families::last_used_at,
            token_families::ip,
            token_families::user_agent,
            token_families::amr,
        ))
        .load(conn)?;
    // In Rust rather than SQL: the backends disagree on where NULLs sort.
    rows.sort_by(|a, b| b.last_used().cmp(&a.last_used()).then(b.id.cmp(&a.id)));
    Ok(rows)
}

/// Revokes `family_id` if it is a live session of `user_id`. `false` (and nothing done)
/// for another user's session, an unknown one or one already ended.
pub fn revoke_session(
    conn: &mut DbConnection,
    user_id: &str,
    family_id: &str,
    revoke: &Revoke<'_>,
) -> Result<bool, DbError> {
    conn.transaction(|conn| {
        let owned = token_families::table
            .find(family_id)
            .filter(token_families::user_id.eq(user_id))
            .filter(token_families::expires_at.gt(db_time(revoke.now)))
            .select(token_families::id)
            .first::<String>(conn)
            .optional()?;
        if owned.is_none() {
            return Ok(false);
        }
        match lock_live_family(conn, family_id)? {
            Some(family) => revoke_locked(conn, family_id, &family, revoke).map(|()| true),
            None => Ok(false),
        }
    })
}

/// Revokes one family (logout). Revoking a revoked or unknown family does nothing.
pub fn revoke_family(
    conn: &mut DbConnection,
    family_id: &str,
    revoke: &Revoke<'_>,
) -> Result<(), DbError> {
    conn.transaction(|conn| match lock_live_family(conn, family_id)? {
        Some(family) => revoke_locked(conn, family_id, &family, revoke),
        None => Ok(()),
    })
}

/// Revokes every live family of a user (logout everywhere, password change, deletion...),
/// optionally sparing one (the session that just changed the password).
pub fn revoke_user_families(
    conn: &mut DbConnection,
    user_id: &str,
    except_family: Option<&str>,
    revoke: &Revoke<'_>,
) -> Result<usize, DbError> {
    let live: Vec<String> = token_families::table
        .filter(
            token_families::user_id
                .eq(user_id)
                .and(token_families::revoked_at.is_null()),
        )
        .select(token_families::id)
        .load(conn)?;
    let doomed: Vec<&String> = live
        .iter()
        .filter(|id| Some(id.as_str()) != except_family)
        .collect();
    for family_id in &doomed {
        revoke_family(conn, family_id, revoke)?;
    }
    Ok(doomed.len())
}

/// Whether `jti` is the live token of its family (read-only: for `/auth/token/verify`).
pub fn liveness(conn: &mut DbConnection, family_id: &str, jti: &str) -> Result<Liveness, DbError> {
    let live = token_families::table
        .find(family_id)
        .filter(
            token_families::revoked_at
                .is_null()
                .and(token_families::current_jti.eq(jti)),
        )
        .count()
        .get_result::<i64>(conn)?;
    Ok(if live == 1 {
        Liveness::Live
    } else {
        Liveness::Dead
    })
}

/// Rows deleted per statement by [`delete_expired`].
pub const PURGE_BATCH: i64 = 1000;

/// Deletes expired refresh-token rows, `batch` at a time so no statement holds locks for
/// long: first expired tokens (their blacklist rows go with them), which keeps a
/// long-lived, often-rotated family from piling up rows, then families whose last token
/// has expired. An expired token fails verification before any lookup, so nothing
/// deleted here was still needed. Returns how many tokens and families were deleted.
pub fn delete_expired(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    batch: i64,
) -> Result<(usize, usize), DbError> {
    let cutoff = db_time(now);
    let tokens = in_batches(batch, || {
        let doomed: Vec<String> = outstanding_tokens::table
            .filter(outstanding_tokens::expires_at.lt(cutoff))
            .select(outstanding_tokens::jti)
            .limit(batch)
            .load(conn)?;
        diesel::delete(outstanding_tokens::table.filter(outstanding_tokens::jti.eq_any(doomed)))
            .execute(conn)
    })?;
    let families = in_batches(batch, || {
        let doomed: Vec<String> = token_families::table
            .filter(token_families::expires_at.lt(cutoff))
            .select(token_families::id)
            .limit(batch)
            .load(conn)?;
        diesel::delete(token_families::table.filter(token_families::id.eq_any(doomed)))
            .execute(conn)
    })?;
    Ok((tokens, families))
}

/// Repeats a deletion of at most `batch` rows until one deletes fewer; the total.
fn in_batches(
    batch: i64,
    mut delete: impl FnMut() -> Result<usize, diesel::result::Error>,
) -> Result<usize, DbError> {
    let mut total = 0;
    loop {
        let n = delete()?;
        total += n;
        if (n as i64) < batch {
            return Ok(total);
        }
    }
}
