//! The lease pattern the outboxes share (`email_outbox`, `webhook_outbox`): a worker claims
//! one pending row at a time by a conditional UPDATE that sets `locked_until`, so with
//! several replicas each row is handed to one worker at a time, and a worker that dies
//! mid-attempt only delays the row until its lease runs out. A row then ends *done*
//! (`$done` set; kept for a retention period, then deleted) or *failed* (`failed_at` set:
//! given up, kept with its `last_error`, never claimed again).
//!
//! A macro rather than generic functions: diesel's column types differ per table, and the
//! bounds a generic version needs would say less than the query itself.

/// Defines `claim_next`, `done`, `retry_later` and `give_up` over `$table`, whose rows
/// load as `$row`, with `$done` the column a successful delivery sets and `$to` the
/// column naming where a row goes (which a claim can pass over).
macro_rules! leased_outbox {
    ($table:ident, $row:ty, $done:ident, $to:ident) => {
        /// Leases the most overdue pending row not going to one of `skip` until
        /// `now + lease` and counts the attempt. `None` when nothing is due. A row another
        /// worker took between this one's SELECT and UPDATE is passed over for the next one,
        /// a few times at most.
        pub fn claim_next(
            conn: &mut $crate::db::DbConnection,
            now: chrono::DateTime<chrono::Utc>,
            lease: std::time::Duration,
            skip: &[String],
        ) -> Result<Option<$row>, $crate::db::DbError> {
            use diesel::prelude::*;
            let at = $crate::db::models::db_time(now);
            let until = now + $crate::db::models::lease::chrono_duration(lease);
            let claimable = || {
                $table::$done
                    .is_null()
                    .and($table::failed_at.is_null())
                    .and($table::next_attempt_at.le(at))
                    .and(
                        $table::locked_until
                            .is_null()
                            .or($table::locked_until.lt(at)),
                    )
            };
            for _ in 0..$crate::db::models::lease::CLAIM_TRIES {
                let due: Option<String> = $table::table
                    .filter(claimable())
                    .filter(diesel::dsl::not($table::$to.eq_any(skip)))
                    .order($table::next_attempt_at.asc())
                    .select($table::id)
                    .first(conn)
                    .optional()?;
                let Some(id) = due else {
                    return Ok(None);
                };
                // The condition is repeated on the UPDATE: PostgreSQL re-checks it on the
                // locked row (waiting for a competing claim to commit), and SQLite runs one
                // writer at a time, so two workers racing for a row cannot both win it.
                let claimed = diesel::update($table::table.find(&id).filter(claimable()))
                    .set((
                        $table::locked_until.eq($crate::db::models::db_time(until)),
                        $table::attempts.eq($table::attempts + 1),
                    ))
                    .returning($table::all_columns)
                    .get_result(conn)
                    .optional()?;
                if claimed.is_some() {
                    return Ok(claimed);
                }
            }
            Ok(None)
        }

        /// Delivered: the row is kept as done for `retention`; rows done before that go
        /// now (deliveries are what fills the table, so they are what empties it).
        pub fn done(
            conn: &mut $crate::db::DbConnection,
            id: &str,
            now: chrono::DateTime<chrono::Utc>,
            retention: std::time::Duration,
        ) -> Result<(), $crate::db::DbError> {
            use diesel::prelude::*;
            diesel::update($table::table.find(id))
                .set((
                    $table::$done.eq($crate::db::models::db_time(now)),
                    $table::locked_until.eq(None::<chrono::NaiveDateTime>),
                ))
                .execute(conn)?;
            let expired = now - $crate::db::models::lease::chrono_duration(retention);
            diesel::delete(
                $table::table.filter($table::$done.lt($crate::db::models::db_time(expired))),
            )
            .execute(conn)?;
            Ok(())
        }

        /// Not delivered: release the lease and try again at `retry_at`.
        pub fn retry_later(
            conn: &mut $crate::db::DbConnection,
            id: &str,
            error: &str,
            retry_at: chrono::DateTime<chrono::Utc>,
        ) -> Result<(), $crate::db::DbError> {
            use diesel::prelude::*;
            diesel::update($table::table.find(id))
                .set((
                    $table::locked_until.eq(None::<chrono::NaiveDateTime>),
                    $table::next_attempt_at.eq($crate::db::models::db_time(retry_at)),
                    $table::last_error.eq(error),
                ))
                .execute(conn)?;
            Ok(())
        }

        /// Not delivered, for the last time: the row is failed, kept but never claimed
        /// again.
        pub fn give_up(
            conn: &mut $crate::db::DbConnection,
            id: &str,
            error: &str,
            now: chrono::DateTime<chrono::Utc>,
        ) -> Result<(), $crate::db::DbError> {
            use diesel::prelude::*;
            diesel::update($table::table.find(id))
                .set((
                    $table::locked_until.eq(None::<chrono::NaiveDateTime>),
                    $table::failed_at.eq($crate::db::models::db_time(now)),
                    $table::last_error.eq(error),
                ))
                .execute(conn)?;
            Ok(())
        }
    };
}

pub(crate) use leased_outbox;

/// Rows a claim tries before it gives way (a busy queue shared by several workers).
pub const CLAIM_TRIES: usize = 4;

/// Settings and constants are validated far below chrono's range; saturate regardless.
pub fn chrono_duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The retry schedule of leased rows: `base`, doubled for each further attempt, at most
/// `cap`.
pub fn backoff(
    base: std::time::Duration,
    attempts: i32,
    cap: std::time::Duration,
) -> std::time::Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    base.saturating_mul(1 << doublings).min(cap)
}
