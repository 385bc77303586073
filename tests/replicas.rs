//! Several replicas on one PostgreSQL (issue 17, part 1): three real `latchkey serve`
//! processes on loopback ports, one shared configuration and database, clients spreading
//! their requests over them round-robin. Every claim the README makes about replicas is
//! checked across processes here: refresh rotation and revocation, the email and webhook
//! outboxes, concurrent migrations, and a rolling restart under load.
//!
//! Skipped (passing after saying so) when `LATCHKEY_TEST_POSTGRES_URL` is unset.

#[path = "replicas/cluster.rs"]
mod cluster;
#[path = "replicas/in_flight.rs"]
mod in_flight;
#[path = "replicas/load.rs"]
mod load;
#[path = "support/pg.rs"]
mod pg;
#[allow(dead_code)]
#[path = "support/process.rs"]
mod process;
#[path = "replicas/webhook_sink.rs"]
mod webhook_sink;

// The API tests' SMTP sink and the helpers it builds on.
#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "api/smtp_sink.rs"]
#[allow(dead_code)]
mod smtp_sink;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::join_all;
use serde_json::{Value, json};

use cluster::Cluster;
use helpers::{STRONG_PASSWORD, jwt_claims, registration, str_field, unique_username};
use smtp_sink::SmtpSink;
use webhook_sink::WebhookSink;

const REPLICAS: usize = 3;
/// Concurrent refreshes of one token.
const RACERS: usize = 50;
/// How long background work (the outbox workers) may take. Generous: this file checks
/// that it is done exactly once, not how fast.
const BACKGROUND_WAIT: Duration = Duration::from_secs(60);

/// Polls `probe` until it yields a result, for at most [`BACKGROUND_WAIT`]; on timeout,
/// reports `what` and the probe's last observation. Returns the result and how long it
/// took.
async fn eventually<T, E: std::fmt::Debug>(
    what: &str,
    mut probe: impl FnMut() -> Result<T, E>,
) -> (T, Duration) {
    let started = Instant::now();
    loop {
        match probe() {
            Ok(found) => return (found, started.elapsed()),
            Err(seen) => assert!(
                started.elapsed() < BACKGROUND_WAIT,
                "no {what} within {BACKGROUND_WAIT:?}; seen: {seen:#?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST base+path` with a JSON body; the status and the JSON body (`Null` if none).
async fn post(http: &reqwest::Client, base: &str, path: &str, body: &Value) -> (u16, Value) {
    let resp = http
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {base}{path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Registers a new user (email verification off) on `base`; its first token pair.
async fn new_session(http: &reqwest::Client, base: &str) -> Value {
    let name = unique_username();
    let body = registration(&name, &format!("{name}@example.com"), STRONG_PASSWORD);
    let (status, pair) = post(http, base, "/auth/register", &body).await;
    assert_eq!(status, 201, "register on {base}: {pair}");
    pair
}

async fn refresh(http: &reqwest::Client, base: &str, token: &str) -> (u16, Value) {
    post(
        http,
        base,
        "/auth/token/refresh",
        &json!({ "refresh_token": token }),
    )
    .await
}

async fn verify(http: &reqwest::Client, base: &str, token: &str) -> (u16, Value) {
    post(http, base, "/auth/token/verify", &json!({ "token": token })).await
}

/// Asserts that `answer` is a 401 problem with `code`; `what` names the request.
fn assert_refused(answer: &(u16, Value), code: &str, what: &str) {
    assert_eq!(
        (answer.0, answer.1["code"].as_str()),
        (401, Some(code)),
        "{what}: {}",
        answer.1
    );
}

/// `RACERS` refreshes of `token` at once, spread round-robin over the replicas; the
/// answers, each 200 or a 401 refusal (never a 5xx from a locked or failed database).
async fn race(cluster: &Cluster, token: &str) -> Vec<(u16, Value)> {
    let racers = vec![json!({ "refresh_token": token }); RACERS];
    let results = spread(cluster, &racers, |body| {
        ("/auth/token/refresh", body.clone())
    })
    .await;
    for (status, body) in &results {
        let refusal = *status == 401
            && ["token_revoked", "token_reused"].contains(&body["code"].as_str().unwrap_or(""));
        assert!(*status == 200 || refusal, "a racer got {status}: {body}");
    }
    results
}

fn issued_refresh_tokens(results: &[(u16, Value)]) -> Vec<String> {
    results
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, pair)| str_field(pair, "refresh_token"))
        .collect()
}

/// Which of `tokens` `/auth/token/verify` still accepts, asking each replica in turn.
async fn live(cluster: &Cluster, tokens: &[String]) -> Vec<String> {
    let mut live = Vec::new();
    for token in tokens {
        let answer = verify(&cluster.http, &cluster.next(), token).await;
        match answer.0 {
            200 => live.push(token.clone()),
            _ => assert_refused(&answer, "token_revoked", "verify of a family member"),
        }
    }
    live
}

/// How many refresh tokens were ever issued in the family of `refresh_token` (README:
/// every issued refresh token is recorded in `outstanding_tokens`).
fn issued_in_family(cluster: &Cluster, refresh_token: &str) -> i64 {
    let family = jwt_claims(refresh_token)["fam"]
        .as_str()
        .expect("fam claim")
        .to_owned();
    cluster.db.count(&format!(
        "SELECT COUNT(*) AS n FROM outstanding_tokens WHERE family_id = '{family}'"
    ))
}

/// API.md: "N concurrent refreshes of one token leave exactly one live member", and
/// within `jwt.rotation_grace` the racers that lost converge on the winner's token (the
/// very string) instead of being refused. Across processes the only thing that can
/// serialise them is the family row in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_over_replicas_converge_on_one_live_token() {
    // A window longer than the default 10 s, so that a slow machine cannot push a racer
    // past it (where it would rightly be reuse): this test is about what happens inside.
    let grace = Duration::from_secs(60);
    let Some(cluster) = Cluster::start(REPLICAS, &[("LATCHKEY_JWT__ROTATION_GRACE", "60s")]).await
    else {
        return;
    };
    let t0 = str_field(
        &new_session(&cluster.http, &cluster.base(0)).await,
        "refresh_token",
    );

    let started = Instant::now();
    let results = race(&cluster, &t0).await;
    let took = started.elapsed();
    assert!(took < grace, "the race took {took:?}");
    let mut tokens = issued_refresh_tokens(&results);
    assert_eq!(
        tokens.len(),
        RACERS,
        "every racer succeeds within the grace window"
    );
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "every racer holds the one live token");
    let t1 = tokens[0].clone();

    // Exactly one rotation happened (two tokens ever issued in the family: nothing
    // forked), and only its result is live, on every replica.
    assert_eq!(issued_in_family(&cluster, &t0), 2);
    assert_eq!(
        live(&cluster, &[t0.clone(), t1.clone()]).await,
        std::slice::from_ref(&t1)
    );
    // The converged token is a working one: it rotates, on any replica.
    let (status, pair) = refresh(&cluster.http, &cluster.base(2), &t1).await;
    assert_eq!(status, 200, "{pair}");
    let t2 = str_field(&pair, "refresh_token");
    assert_eq!(live(&cluster, &[t0, t1, t2.clone()]).await, [t2]);
}

/// Without a grace window exactly one racer wins; the losers' presentations are reuse,
/// which may revoke the winner's token too: at most one member stays live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_over_replicas_without_grace_have_one_winner() {
    let Some(cluster) = Cluster::start(REPLICAS, &[("LATCHKEY_JWT__ROTATION_GRACE", "0s")]).await
    else {
        return;
    };
    let t0 = str_field(
        &new_session(&cluster.http, &cluster.base(0)).await,
        "refresh_token",
    );

    let results = race(&cluster, &t0).await;
    let mut tokens = issued_refresh_tokens(&results);
    assert_eq!(tokens.len(), 1, "exactly one refresh wins without grace");
    assert_eq!(issued_in_family(&cluster, &t0), 2);
    tokens.push(t0);
    assert!(live(&cluster, &tokens).await.len() <= 1);
}

/// Reuse detected by one replica revokes the family for all of them: the rotated
/// token's successor, issued by another replica, is refused everywhere after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_on_one_replica_revokes_the_family_on_all() {
    let Some(cluster) = Cluster::start(REPLICAS, &[("LATCHKEY_JWT__ROTATION_GRACE", "0s")]).await
    else {
        return;
    };
    let http = &cluster.http;
    let [a, b, c] = [0, 1, 2].map(|i| cluster.base(i));
    let first = new_session(http, &a).await;
    let t0 = str_field(&first, "refresh_token");
    // Another session of the same user: a different family, which reuse must not touch.
    let (status, other) = post(
        http,
        &c,
        "/auth/login",
        &json!({"username": first["user"]["username"], "password": STRONG_PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{other}");

    let (status, pair) = refresh(http, &a, &t0).await;
    assert_eq!(status, 200, "{pair}");
    let t1 = str_field(&pair, "refresh_token");
    assert_refused(
        &refresh(http, &b, &t0).await,
        "token_reused",
        "t0 again on B",
    );
    for base in [&a, &c] {
        assert_refused(
            &refresh(http, base, &t1).await,
            "token_revoked",
            "t1 on A and C",
        );
        assert_refused(&verify(http, base, &t1).await, "token_revoked", "verify t1");
    }
    let (status, pair) = refresh(http, &b, &str_field(&other, "refresh_token")).await;
    assert_eq!(status, 200, "the other session lives on: {pair}");
}

/// A logout answered by one replica is seen by the next request on any other: there is
/// no per-replica cache of live tokens. The same for "log out everywhere".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_replica_is_refused_on_the_others_at_once() {
    let Some(cluster) = Cluster::start(REPLICAS, &[]).await else {
        return;
    };
    let http = &cluster.http;
    let [a, b, c] = [0, 1, 2].map(|i| cluster.base(i));
    let pair = new_session(http, &a).await;
    let token = str_field(&pair, "refresh_token");
    let logout = json!({ "refresh_token": token });
    assert_eq!(post(http, &a, "/auth/logout", &logout).await.0, 204);
    assert_refused(
        &refresh(http, &b, &token).await,
        "token_revoked",
        "refresh on B",
    );
    // API.md: verify answers `token_revoked` for a blacklisted refresh token.
    assert_refused(
        &verify(http, &c, &token).await,
        "token_revoked",
        "verify on C",
    );
    assert_eq!(
        post(http, &c, "/auth/logout", &logout).await.0,
        204,
        "idempotent"
    );

    // `/auth/logout/all` on B ends sessions started on A and C.
    let first = new_session(http, &a).await;
    let login = json!({"username": first["user"]["username"], "password": STRONG_PASSWORD});
    let (status, second) = post(http, &c, "/auth/login", &login).await;
    assert_eq!(status, 200, "{second}");
    let all = http
        .post(format!("{b}/auth/logout/all"))
        .bearer_auth(str_field(&second, "access_token"))
        .send()
        .await
        .expect("logout/all");
    assert_eq!(all.status(), 204);
    assert_refused(
        &refresh(http, &c, &str_field(&first, "refresh_token")).await,
        "token_revoked",
        "A's session refreshed on C",
    );
    assert_refused(
        &refresh(http, &a, &str_field(&second, "refresh_token")).await,
        "token_revoked",
        "C's session refreshed on A",
    );
}

/// Every replica runs an email and a webhook worker over the same outboxes; each
/// message and each event must still go out exactly once (workers lease rows). Thirty
/// users sign up (email verification on), activate through their emailed links and ask
/// for a password reset, every request going to the next replica and each phase sent at
/// once: sixty emails (an activation and a reset link per address; the reset is queued
/// after the response, the activation in the request) and ninety webhooks
/// (`user.created`, `user.activated`, `session.created` per user).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_email_and_webhook_is_delivered_once() {
    const USERS: usize = 30;
    let smtp = SmtpSink::start().await;
    let hooks = WebhookSink::start().await;
    let secrets = tempfile::TempDir::new().expect("tempdir");
    let key: [u8; 32] = std::array::from_fn(|_| rand_byte());
    let secret_path = secrets.path().join("whsec");
    std::fs::write(&secret_path, format!("whsec_{}\n", STANDARD.encode(key))).expect("secret");
    let endpoints = json!([{
        "url": format!("http://127.0.0.1:{}/", hooks.port),
        "secret": secret_path,
    }])
    .to_string();
    let smtp_port = smtp.port.to_string();
    let Some(cluster) = Cluster::start(
        REPLICAS,
        &[
            ("LATCHKEY_ACCOUNTS__REQUIRE_EMAIL_VERIFICATION", "true"),
            ("LATCHKEY_EMAIL__BACKEND", "smtp"),
            ("LATCHKEY_EMAIL__SMTP__HOST", "127.0.0.1"),
            ("LATCHKEY_EMAIL__SMTP__PORT", &smtp_port),
            ("LATCHKEY_WEBHOOKS__ENDPOINTS", &endpoints),
        ],
    )
    .await
    else {
        return;
    };
    let names: Vec<String> = (0..USERS).map(|_| unique_username()).collect();
    let address = |name: &str| format!("{name}@example.com");

    let signups = spread(&cluster, &names, |name| {
        (
            "/auth/register",
            registration(name, &address(name), STRONG_PASSWORD),
        )
    })
    .await;
    assert_all(&signups, 201, "sign-up");
    let (links, took) = eventually("an activation link for every user", || {
        names
            .iter()
            .map(|name| {
                smtp.messages_for(&address(name))
                    .iter()
                    .find_map(|m| m.email.link("/activate/"))
                    .ok_or_else(|| address(name))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    eprintln!("{USERS} activation emails received {took:?} after the sign-ups");
    let activations = spread(&cluster, &links, |link| {
        (
            "/auth/activate",
            json!({ "uid": link.uid, "token": link.token }),
        )
    })
    .await;
    assert_all(&activations, 200, "activation");
    let resets = spread(&cluster, &names, |name| {
        ("/auth/password/reset", json!({ "email": address(name) }))
    })
    .await;
    assert_all(&resets, 202, "reset request");

    // Done means: every row is in each outbox (resets are queued after their answer) and
    // marked delivered.
    let (emails, events) = (2 * USERS as i64, 3 * USERS as i64);
    let ((), took) = eventually("every email sent and every webhook delivered", || {
        let done = [
            ("email_outbox", "sent_at", emails),
            ("webhook_outbox", "delivered_at", events),
        ]
        .map(|(table, done, rows)| {
            let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE {done} IS NOT NULL");
            (table, cluster.db.count(&sql), rows)
        });
        match done.iter().all(|(_, done, rows)| done == rows) {
            true => Ok(()),
            false => Err(done),
        }
    })
    .await;
    eprintln!("all emails sent and webhooks delivered {took:?} after the reset requests");
    // A claim counts an attempt: one each means no row was ever held by two workers (the
    // receivers accept everything, so no attempt failed). The replicas' counters of
    // deliveries made add up to the rows, and so do the receivers' inboxes below.
    for table in ["email_outbox", "webhook_outbox"] {
        let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE attempts <> 1");
        assert_eq!(cluster.db.count(&sql), 0, "{table}");
    }
    let sent = ["latchkey_emails_total", "outcome=\"sent\""];
    let delivered = ["latchkey_webhooks_total", "outcome=\"delivered\""];
    assert_eq!(cluster.metric_sum(sent[0], &sent[1..]).await, emails as f64);
    assert_eq!(
        cluster.metric_sum(delivered[0], &delivered[1..]).await,
        events as f64
    );

    let mut per_message: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for message in smtp.messages() {
        let kind = ["/activate/", "/password/reset/"]
            .into_iter()
            .find(|marker| message.email.link(marker).is_some())
            .unwrap_or("other");
        for to in message.rcpt_to {
            *per_message.entry((to.to_lowercase(), kind)).or_default() += 1;
        }
    }
    let wanted: BTreeMap<(String, &str), usize> = names
        .iter()
        .flat_map(|name| ["/activate/", "/password/reset/"].map(|kind| ((address(name), kind), 1)))
        .collect();
    assert_eq!(per_message, wanted, "emails per recipient and kind");

    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_type: BTreeMap<String, usize> = BTreeMap::new();
    for delivery in hooks.received() {
        assert_signed(&key, &delivery);
        let event: Value = serde_json::from_str(&delivery.body).expect("JSON body");
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        *per_type.entry(kind).or_default() += 1;
        *per_id.entry(delivery.id).or_default() += 1;
    }
    let twice: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "webhook-ids received more than once: {twice:?}"
    );
    assert_eq!(per_id.len() as i64, events);
    let expected: BTreeMap<String, usize> = ["session.created", "user.activated", "user.created"]
        .map(|kind| (kind.to_owned(), USERS))
        .into();
    assert_eq!(per_type, expected);
}

/// `POST` of `request(item)` (a path and a body) for every item at once, each to the
/// next replica; the answers in the order of `items`.
async fn spread<T>(
    cluster: &Cluster,
    items: &[T],
    request: impl Fn(&T) -> (&'static str, Value),
) -> Vec<(u16, Value)> {
    join_all(items.iter().map(|item| {
        let (path, body) = request(item);
        let base = cluster.next();
        async move { post(&cluster.http, &base, path, &body).await }
    }))
    .await
}

fn assert_all(answers: &[(u16, Value)], status: u16, what: &str) {
    for (got, body) in answers {
        assert_eq!(*got, status, "{what}: {body}");
    }
}

/// The Standard Webhooks signature, checked independently of latchkey's signer.
fn assert_signed(key: &[u8], delivery: &webhook_sink::Delivery) {
    use aws_lc_rs::hmac;
    let signed = format!("{}.{}.{}", delivery.id, delivery.timestamp, delivery.body);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), signed.as_bytes());
    assert_eq!(
        delivery.signature,
        format!("v1,{}", STANDARD.encode(tag.as_ref())),
        "{delivery:?}"
    );
}

fn rand_byte() -> u8 {
    use aws_lc_rs::rand::SecureRandom;
    let mut byte = [0];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut byte)
        .expect("random");
    byte[0]
}

/// Three replicas started at the same moment on an empty database all migrate at
/// start-up; they take turns (an advisory lock), so each migration is applied once, by
/// one of them, and none of them fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_started_together_apply_once() {
    let Some(cluster) = Cluster::start(REPLICAS, &[]).await else {
        return;
    };
    // `Cluster::start` returned: all three are listening and answer /readyz with 200.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
    let migrations = std::fs::read_dir(dir)
        .expect("migrations")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir()))
        .count() as i64;
    assert!(migrations > 0);
    let table = "__diesel_schema_migrations";
    assert_eq!(
        cluster
            .db
            .count(&format!("SELECT COUNT(*) AS n FROM {table}")),
        migrations
    );
    assert_eq!(
        cluster
            .db
            .count(&format!("SELECT COUNT(DISTINCT version) AS n FROM {table}")),
        migrations
    );
    let logs: Vec<String> = (0..REPLICAS).map(|i| cluster.log(i)).collect();
    let applied = format!("applied {migrations} migration(s)");
    let appliers = logs.iter().filter(|log| log.contains(&applied)).count();
    assert_eq!(
        appliers, 1,
        "one replica migrates, the others find nothing to do: {logs:#?}"
    );
    for log in &logs {
        assert!(!log.contains("migration failed"), "{log}");
        assert!(!log.contains("applied") || log.contains(&applied), "{log}");
    }
    // And the migrated schema works from every replica.
    for i in 0..REPLICAS {
        new_session(&cluster.http, &cluster.base(i)).await;
    }
}

/// A rolling restart (SIGTERM one replica, wait for it to exit, start it again on its
/// port, wait for /readyz; then the next) under a steady mixed load loses nothing: the
/// only failures are requests refused by the replica being restarted, which the load
/// generator retries on the next one as a load balancer would, and a request in flight
/// at SIGTERM is answered by the stopping replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load_loses_no_request() {
    let Some(mut cluster) = Cluster::start(REPLICAS, &[]).await else {
        return;
    };
    let user = new_session(&cluster.http, &cluster.base(0)).await;
    let username = str_field(&user["user"], "username");
    let load = load::Load::start(cluster.bases(), &username, STRONG_PASSWORD);

    let started = Instant::now();
    let mut stopped_logs = Vec::new();
    // Some load on every replica before, between and after the restarts.
    load.wait_for_progress(150).await;
    let login = json!({ "username": username, "password": STRONG_PASSWORD });
    for i in 0..REPLICAS {
        let begun = Instant::now();
        // Besides whatever the load has in flight at that moment, one login surely is:
        // the replica has read its head, its body comes after the listener closed.
        let held = in_flight::InFlight::start(&cluster.base(i), "/auth/login", &login).await;
        load.restarting(i, true);
        let (log, (status, pair)) =
            tokio::join!(cluster.restart(i), held.finish_after_listener_closed());
        load.restarting(i, false);
        assert_eq!(status, 200, "the login in flight at SIGTERM: {pair}");
        assert!(pair["access_token"].is_string(), "{pair}");
        // Requests the replica still answered after SIGTERM: the ones in flight.
        let drained = log
            .split("SIGTERM received")
            .nth(1)
            .map_or(0, |after| after.matches("latchkey::access").count());
        eprintln!(
            "replica {i} restarted in {:?}, answering {drained} requests after SIGTERM",
            begun.elapsed()
        );
        assert!(!log.contains("panicked"), "{log}");
        stopped_logs.push(log);
        load.wait_for_progress(150).await;
    }
    let report = load.stop().await;
    eprintln!(
        "rolling restart of {REPLICAS} replicas in {:?}: {report}",
        started.elapsed()
    );
    // A cut-off exchange must be one the stopping replica never read (it closed an idle
    // keep-alive connection as the client reused it), not an answer it produced and lost:
    // a request in flight is drained.
    for (i, id) in &report.cut_off_ids {
        let served = stopped_logs
            .iter()
            .flat_map(|log| log.lines())
            .find(|line| line.contains(id.as_str()));
        assert!(
            served.is_none(),
            "replica {i} served {id} but the answer was lost: {served:?}"
        );
    }
    assert!(
        report.failures.is_empty(),
        "{report}\n{:#?}",
        report.failures
    );
    assert!(
        report.logins > 0 && report.refreshes > 0 && report.me > 0,
        "{report}"
    );
}
