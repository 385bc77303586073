//! `latchkey flush-expired` (the real binary) against a database with live and expired
//! refresh-token rows: it deletes exactly the expired ones, in batches, and live
//! sessions carry on.

use crate::helpers::{
    Backend, TestUser, assert_problem_one_of, json_ok, jwt_claims, output_text, spawn_app,
    str_field,
};
use crate::ops_helpers::{count, is_sqlite};

dual_backend_tests!(flush_expired_deletes_only_expired_rows);

/// A timestamp long past, in the form both backends store.
const PAST: &str = "2000-01-01 00:00:00";

/// More rows than one deletion batch (1000) holds, so the batching loop runs.
const BULK: usize = 2500;

fn jti(token: &str) -> String {
    str_field(&jwt_claims(token), "jti")
}

fn family(token: &str) -> String {
    str_field(&jwt_claims(token), "fam")
}

async fn flush_expired_deletes_only_expired_rows(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    // (Activation opened a first session, which stays live throughout.)
    // Session A: rotated once, so it has a blacklisted ancestor and a live member.
    let rotated = json_ok(app.refresh(&user.refresh_token).await, 200).await;
    let live_refresh = str_field(&rotated, "refresh_token");
    let fam_a = family(&live_refresh);
    // Sessions B and C, which will have expired.
    let b = str_field(&user.login_again(&app).await, "refresh_token");
    let c = str_field(&user.login_again(&app).await, "refresh_token");
    let families = [family(&b), family(&c)];

    // Expire B and C (families and tokens) and A's rotated-away ancestor only.
    let ancestor = jti(&user.refresh_token);
    for fam in &families {
        app.execute_sql(&format!(
            "UPDATE token_families SET expires_at = '{PAST}' WHERE id = '{fam}'"
        ));
        app.execute_sql(&format!(
            "UPDATE outstanding_tokens SET expires_at = '{PAST}' WHERE family_id = '{fam}'"
        ));
    }
    app.execute_sql(&format!(
        "UPDATE outstanding_tokens SET expires_at = '{PAST}' WHERE jti = '{ancestor}'"
    ));
    assert_eq!(
        count(
            &app,
            &format!("SELECT COUNT(*) AS n FROM blacklisted_tokens WHERE jti = '{ancestor}'")
        ),
        1,
        "the rotated token is blacklisted"
    );
    // Plus a pile of expired tokens in B's family, beyond one batch.
    let bulk_source = if is_sqlite(&app) {
        format!(
            "WITH RECURSIVE seq(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM seq WHERE g < {BULK}) \
             SELECT 'bulk-' || g, '{fam}', '{uid}', '{PAST}', '{PAST}' FROM seq",
            fam = families[0],
            uid = user.id
        )
    } else {
        format!(
            "SELECT 'bulk-' || g, '{fam}', '{uid}', TIMESTAMP '{PAST}', TIMESTAMP '{PAST}' \
             FROM generate_series(1, {BULK}) AS g",
            fam = families[0],
            uid = user.id
        )
    };
    app.execute_sql(&format!(
        "INSERT INTO outstanding_tokens (jti, family_id, user_id, created_at, expires_at) {bulk_source}"
    ));
    let tokens_before = count(&app, "SELECT COUNT(*) AS n FROM outstanding_tokens");
    assert_eq!(tokens_before, 5 + BULK as i64);

    let out = app.run_cli(&["flush-expired"], None).await;
    let said = output_text(&out);
    assert!(out.status.success(), "{said}");
    let expected = format!(
        "deleted {} expired refresh tokens and 2 expired token families",
        3 + BULK
    );
    assert!(said.contains(&expected), "expected `{expected}` in: {said}");

    // Left: session A's live token and the session activation opened; the ancestor's
    // blacklist row went with the ancestor.
    assert_eq!(
        count(&app, "SELECT COUNT(*) AS n FROM outstanding_tokens"),
        2
    );
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT COUNT(*) AS n FROM outstanding_tokens WHERE jti = '{}'",
                jti(&live_refresh)
            )
        ),
        1
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) AS n FROM blacklisted_tokens"),
        0
    );
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM token_families"), 2);
    assert_eq!(
        count(
            &app,
            &format!("SELECT COUNT(*) AS n FROM token_families WHERE id = '{fam_a}'")
        ),
        1
    );

    // The live session still works; the expired ones are gone.
    let again = json_ok(app.refresh(&live_refresh).await, 200).await;
    json_ok(app.get_me(&str_field(&again, "access_token")).await, 200).await;
    for token in [&b, &c] {
        assert_problem_one_of(
            app.refresh(token).await,
            401,
            &["token_revoked", "token_invalid"],
        )
        .await;
    }

    // Nothing left to do.
    let out = app.run_cli(&["flush-expired"], None).await;
    let said = output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("deleted 0 expired refresh tokens and 0 expired token families"),
        "{said}"
    );
}
