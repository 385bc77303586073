//! The bounded password-hashing pool: a burst of logins beyond its queue is shed with 503
//! and `Retry-After` at once, while requests that need no hashing keep being served.

use futures::future::join_all;
use serde_json::json;

use crate::helpers::{Backend, TestUser, assert_problem, header, json_ok, spawn_app_with};

dual_backend_tests!(full_hashing_queue_sheds_logins_but_not_token_checks);

async fn full_hashing_queue_sheds_logins_but_not_token_checks(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.accounts.require_email_verification = false;
        s.password.hash_concurrency = 1;
        // Two places: the start-up warm-up of the dummy hash may still hold one while
        // the user below registers (sequential requests must never be refused).
        s.password.queue_limit = 2;
        // Enough work per hash that the slot stays busy while the burst arrives.
        s.password.bcrypt_cost = 8;
    })
    .await;
    let user = TestUser::create(&app).await;
    // 40 simultaneous logins against one hashing slot and two queue places, and at the
    // same time token checks, which must not wait for the hashing pool.
    let body = json!({ "username": user.username, "password": user.password });
    let logins = join_all((0..40).map(|_| app.login(&body)));
    let checks = join_all((0..10).map(|_| app.get_me(&user.access_token)));
    let (logins, checks) = tokio::join!(logins, checks);

    let mut unavailable = 0;
    for resp in logins {
        if resp.status().as_u16() != 200 {
            let retry_after = header(&resp, "retry-after").unwrap_or_default();
            assert!(
                retry_after.parse::<u64>().is_ok(),
                "Retry-After: `{retry_after}`"
            );
            assert_problem(resp, 503, "service_unavailable").await;
            unavailable += 1;
        }
    }
    assert!(unavailable > 0, "a full queue must shed load with 503");
    for resp in checks {
        json_ok(resp, 200).await;
    }
    // Once the burst is over, the service answers normally again.
    json_ok(app.login(&body).await, 200).await;
}
