//! The staff list's search over its index (migration `user_search`: pg_trgm on PostgreSQL,
//! an FTS5 trigram table on SQLite) and its bounded count: every page of every search must
//! hold exactly the users a plain scan finds, in the same order, with the same count up to
//! the bound, and the index must follow renames and deletions.

use std::collections::HashMap;

use latchkey::config::Settings;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, STRONG_PASSWORD, TestApp, TestUser, assert_problem, form_query, json_ok, registration,
    spawn_app_with, str_field,
};

dual_backend_tests!(
    search_finds_exactly_what_a_scan_finds,
    count_stops_at_the_bound_and_paging_goes_on_past_it,
    search_follows_renames_email_changes_and_deletions,
    pages_past_a_few_matches_are_not_found,
);

const COUNT_BOUND: u64 = 10_000;

fn no_verification(s: &mut Settings) {
    s.accounts.require_email_verification = false;
}

/// What the search reads of one user, as stored.
#[derive(Debug, Clone)]
struct Seeded {
    username: String,
    username_key: String,
    email_key: String,
    first_name: String,
    last_name: String,
    is_active: bool,
}

/// The awkward parts names are made of: case, accents (É, ß, İ), LIKE's `%`, `_` and
/// `\`, quotes, FTS5 query syntax, and pieces of 1, 2, 3 and more characters.
const NAME_PARTS: &[&str] = &[
    "Ada",
    "ADA",
    "ada",
    "Émile",
    "ÉMILE",
    "émile",
    "Straße",
    "STRASSE",
    "Zoë",
    "Øre",
    "50%",
    "100_",
    "back\\slash",
    "say \"hi\"",
    "\"",
    "AND",
    "NEAR",
    "OR",
    "NOT",
    "a*b",
    "^start",
    "x",
    "xy",
    "o'Brien",
    "",
];

/// Valid usernames (letters, digits and `@.+-_`), with İ, whose lower case is two
/// characters ("i̇"), and ß.
const USERNAME_PARTS: &[&str] = &[
    "Ada", "émile", "İlker", "strasse", "Straße", "near", "x", "xy", "a.b", "AND", "o_o",
];

/// Users `0..n`, deterministic: joined a second apart, every seventh inactive, every
/// third never logged in, the others logged in in an order unrelated to joining.
fn seeded_users(n: usize) -> Vec<(Seeded, String)> {
    (0..n)
        .map(|i| {
            let username = format!("{}{i}", USERNAME_PARTS[i % USERNAME_PARTS.len()]);
            let local = match i % 5 {
                0 => format!("Mixed.Case{i}"),
                1 => format!("o%b_c\\{i}"),
                2 => format!("\"quoted {i}\""),
                3 => format!("near{i}"),
                _ => username.clone(),
            };
            let email = format!("{local}@Example.COM");
            let user = Seeded {
                username_key: username.to_lowercase(),
                username,
                email_key: email.to_lowercase(),
                first_name: NAME_PARTS[i % NAME_PARTS.len()].to_owned(),
                last_name: NAME_PARTS[i * 7 / 3 % NAME_PARTS.len()].to_owned(),
                is_active: i % 7 != 0,
            };
            let row = values_row(&user, &email, i as u64);
            (user, row)
        })
        .collect()
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// One row of `INSERT INTO users (USER_COLUMNS)` for user `i`.
fn values_row(user: &Seeded, email: &str, i: u64) -> String {
    let last_login = if i.is_multiple_of(3) {
        "NULL".to_owned()
    } else {
        quote(&timestamp(i * 7919 % 100_000 + 200_000))
    };
    format!(
        "({}, {}, {}, {}, {}, 'x', {}, {}, {}, FALSE, TRUE, {}, {last_login})",
        quote(&uuid::Uuid::now_v7().to_string()),
        quote(&user.username),
        quote(&user.username_key),
        quote(email),
        quote(&user.email_key),
        quote(&user.first_name),
        quote(&user.last_name),
        if user.is_active { "TRUE" } else { "FALSE" },
        quote(&timestamp(i)),
    )
}

const USER_COLUMNS: &str = "id, username, username_key, email, email_key, password_hash, \
                            first_name, last_name, is_active, is_staff, email_verified, \
                            date_joined, last_login";

/// `seconds` after 2021-01-01, as diesel writes a timestamp.
fn timestamp(seconds: u64) -> String {
    let t = chrono::NaiveDate::from_ymd_opt(2021, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("a date")
        + chrono::Duration::seconds(seconds as i64);
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// Inserts the users straight into the database (hundreds of rows a statement): the
/// fastest honest path, and the one the triggers keeping SQLite's index must follow.
fn seed(app: &TestApp, rows: &[String]) {
    for chunk in rows.chunks(500) {
        app.execute_sql(&format!(
            "INSERT INTO users ({USER_COLUMNS}) VALUES {}",
            chunk.join(", ")
        ));
    }
}

/// Whether today's scan finds `user` for `term`: the term lower-cased in Rust (Unicode), a
/// substring of a key (lower-cased by the domain types) or of a name lower-cased by the
/// database: ASCII-only on SQLite, Unicode (the server's ctype, C.UTF-8 in CI) on
/// PostgreSQL. The names hold no letter whose lower case differs between the two rules.
fn scan_finds(user: &Seeded, term: &str, backend: &Backend) -> bool {
    let term = term.to_lowercase();
    let fold = |name: &str| match backend {
        Backend::Sqlite => name.to_ascii_lowercase(),
        Backend::Postgres { .. } => name.to_lowercase(),
    };
    user.username_key.contains(&term)
        || user.email_key.contains(&term)
        || fold(&user.first_name).contains(&term)
        || fold(&user.last_name).contains(&term)
}

/// Every page of `query` (page size 100): the usernames in order, and the envelope's
/// `count` and `count_exact` (the same on every page).
async fn all_pages(
    app: &TestApp,
    staff: &TestUser,
    query: &[(&str, &str)],
) -> (Vec<String>, u64, bool) {
    let mut names = Vec::new();
    let mut total = None;
    let mut page = 1;
    loop {
        let page_text = page.to_string();
        let mut pairs = query.to_vec();
        pairs.push(("page_size", "100"));
        if page > 1 {
            pairs.push(("page", &page_text));
        }
        let body = app
            .list_users_json(&staff.access_token, &form_query(&pairs))
            .await;
        let this = (
            body["count"].as_u64().expect("count"),
            body["count_exact"].as_bool().expect("count_exact"),
        );
        assert_eq!(*total.get_or_insert(this), this, "{query:?} page {page}");
        names.extend(
            body["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|u| str_field(u, "username")),
        );
        if body["next"].is_null() {
            return (names, this.0, this.1);
        }
        page += 1;
    }
}

const ORDERINGS: &[&str] = &[
    "-date_joined",
    "username",
    "-email",
    "last_login",
    "-last_login",
];

/// Search terms: each part of the names, in other cases, 1, 2, 3 and more characters,
/// wildcards and FTS5 syntax that must be literal.
const TERMS: &[&str] = &[
    "ada",
    "ADA",
    "a",
    "ad",
    "émi",
    "ÉMILE",
    "é",
    "straße",
    "STRASSE",
    "ss",
    "ß",
    "İ",
    "i̇l",
    "İlker",
    "zoë",
    "øre",
    "50%",
    "%",
    "_",
    "0_",
    "o%b_c\\",
    "\\",
    "ck\\s",
    "\"hi\"",
    "\"",
    "\"quoted",
    "and",
    "NEAR",
    "near1",
    "or",
    "a*b",
    "*",
    "^st",
    "^",
    "x",
    "xy",
    "xy1",
    "example",
    "@example.com",
    "o'b",
    "'",
    "mixed.case1",
    "nothing-matches-this",
];

async fn search_finds_exactly_what_a_scan_finds(backend: Backend) {
    let app = spawn_app_with(backend.clone(), no_verification).await;
    let staff = TestUser::create_staff(&app).await;
    let seeded = seeded_users(2_500);
    let rows: Vec<String> = seeded.iter().map(|(_, row)| row.clone()).collect();
    seed(&app, &rows);
    let me = json_ok(app.get_me(&staff.access_token).await, 200).await;
    let mut users: HashMap<String, Seeded> = seeded
        .into_iter()
        .map(|(u, _)| (u.username.clone(), u))
        .collect();
    users.insert(
        staff.username.clone(),
        Seeded {
            username: staff.username.clone(),
            username_key: staff.username.to_lowercase(),
            email_key: staff.email.to_lowercase(),
            first_name: str_field(&me, "first_name"),
            last_name: str_field(&me, "last_name"),
            is_active: true,
        },
    );

    // Each ordering over everyone, without a search (no index involved): the reference
    // order, the database's own (its collation orders the keys).
    let mut everyone = HashMap::new();
    for ordering in ORDERINGS {
        let (names, count, exact) = all_pages(&app, &staff, &[("ordering", ordering)]).await;
        assert_eq!((count, exact), (users.len() as u64, true));
        everyone.insert(*ordering, names);
    }

    let filters: &[&[(&str, &str)]] = &[
        &[],
        &[("is_active", "true")],
        &[("is_active", "false"), ("is_staff", "false")],
    ];
    for (t, term) in TERMS.iter().enumerate() {
        // Every filter with one ordering, every ordering without a filter.
        let mut cases: Vec<(&[(&str, &str)], &str)> = filters
            .iter()
            .map(|f| (*f, ORDERINGS[t % ORDERINGS.len()]))
            .collect();
        cases.extend(ORDERINGS.iter().map(|o| (filters[0], *o)));
        for (filter, ordering) in cases {
            let mut query = vec![("search", *term), ("ordering", ordering)];
            query.extend_from_slice(filter);
            let expected: Vec<String> = everyone[ordering]
                .iter()
                .filter(|name| {
                    let user = &users[name.as_str()];
                    scan_finds(user, term, &backend)
                        && filter.iter().all(|(key, value)| match *key {
                            "is_active" => user.is_active.to_string() == *value,
                            // Only the staff user is staff.
                            "is_staff" => (user.username == staff.username).to_string() == *value,
                            _ => unreachable!(),
                        })
                })
                .cloned()
                .collect();
            let (names, count, exact) = all_pages(&app, &staff, &query).await;
            assert_eq!(names, expected, "{query:?}");
            assert_eq!((count, exact), (expected.len() as u64, true), "{query:?}");
        }
    }
}

/// Inserts `n` users `bulk_1` … `bulk_n` in one statement (joined in that order), so
/// that more than `COUNT_BOUND` match a search cheaply.
fn seed_bulk(app: &TestApp, backend: &Backend, n: u32) {
    let (id, joined) = match backend {
        Backend::Sqlite => (
            "'00000000-0000-7000-8000-' || substr('000000000000' || i, -12, 12)",
            "strftime('%Y-%m-%d %H:%M:%f', '2022-01-01', '+' || i || ' seconds')",
        ),
        Backend::Postgres { .. } => (
            "'00000000-0000-7000-8000-' || lpad(i::text, 12, '0')",
            "TIMESTAMP '2022-01-01' + i * INTERVAL '1 second'",
        ),
    };
    app.execute_sql(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
         INSERT INTO users ({USER_COLUMNS}) \
         SELECT {id}, 'bulk_' || i, 'bulk_' || i, 'bulk_' || i || '@example.com', \
                'bulk_' || i || '@example.com', 'x', 'Bulk', '', TRUE, FALSE, TRUE, {joined}, NULL \
         FROM n"
    ));
}

/// A search with few matches is counted and paged in one pass; a page past its matches
/// carries no count, and must still be told apart from an empty first page.
async fn pages_past_a_few_matches_are_not_found(backend: Backend) {
    let app = spawn_app_with(backend.clone(), no_verification).await;
    let staff = TestUser::create_staff(&app).await;
    seed_bulk(&app, &backend, 30);
    let page = |term: &str, number: u32| {
        form_query(&[
            ("search", term),
            ("page_size", "10"),
            ("page", &number.to_string()),
        ])
    };
    let last = app
        .list_users_json(&staff.access_token, &page("bulk_", 3))
        .await;
    assert_eq!(last["results"].as_array().map(Vec::len), Some(10));
    assert_eq!(
        (
            last["count"].clone(),
            last["count_exact"].clone(),
            last["next"].clone()
        ),
        (json!(30), json!(true), Value::Null)
    );
    assert_eq!(last["results"][9]["username"], "bulk_1");
    for past in [page("bulk_", 4), page("nobody-at-all", 2)] {
        assert_problem(
            app.list_users(&staff.access_token, &past).await,
            404,
            "not_found",
        )
        .await;
    }
    let none = app
        .list_users_json(&staff.access_token, &page("nobody-at-all", 1))
        .await;
    assert_eq!(
        (
            none["count"].clone(),
            none["count_exact"].clone(),
            none["results"].clone()
        ),
        (json!(0), json!(true), json!([]))
    );
}

async fn count_stops_at_the_bound_and_paging_goes_on_past_it(backend: Backend) {
    let app = spawn_app_with(backend.clone(), no_verification).await;
    let staff = TestUser::create_staff(&app).await;
    let n = COUNT_BOUND as u32 + 150;
    seed_bulk(&app, &backend, n);

    // Every page, newest first: all of them, each once, and `next` ends at the last.
    let (names, count, exact) = all_pages(&app, &staff, &[("search", "BULK_")]).await;
    assert_eq!((count, exact), (COUNT_BOUND, false));
    let expected: Vec<String> = (1..=n).rev().map(|i| format!("bulk_{i}")).collect();
    assert_eq!(names.len(), expected.len());
    assert!(
        names == expected,
        "pages past the bound lost or repeated users"
    );

    // The last page by number, and the one after it.
    let last = (u64::from(n)).div_ceil(100);
    let query = |page: u64| {
        form_query(&[
            ("search", "bulk_"),
            ("page_size", "100"),
            ("page", &page.to_string()),
        ])
    };
    let body = app.list_users_json(&staff.access_token, &query(last)).await;
    assert_eq!(body["results"].as_array().map(Vec::len), Some(50));
    assert_eq!(
        (
            body["count"].clone(),
            body["count_exact"].clone(),
            body["next"].clone()
        ),
        (json!(COUNT_BOUND), json!(false), Value::Null)
    );
    assert!(body["previous"].is_string());
    assert_problem(
        app.list_users(&staff.access_token, &query(last + 1)).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        app.list_users(&staff.access_token, &query(u64::MAX)).await,
        404,
        "not_found",
    )
    .await;

    // Without a search (the staff user too), and a count just under the bound: exact.
    let everyone = app
        .list_users_json(&staff.access_token, "page_size=1")
        .await;
    assert_eq!(
        (everyone["count"].clone(), everyone["count_exact"].clone()),
        (json!(COUNT_BOUND), json!(false))
    );
    // Bulk users past the 10,000th (joined after 02:46:40) go.
    app.execute_sql(
        "DELETE FROM users WHERE username LIKE 'bulk%' AND date_joined > '2022-01-01 02:46:40.5'",
    );
    let (names, count, exact) = all_pages(
        &app,
        &staff,
        &[("search", "bulk"), ("ordering", "username")],
    )
    .await;
    assert_eq!(
        (count, exact, names.len() as u64),
        (COUNT_BOUND, true, COUNT_BOUND)
    );
    let body = app
        .list_users_json(&staff.access_token, "search=bulk&page=100")
        .await;
    assert!(body["next"].is_string(), "page 100 of 500 has a next page");
}

async fn find(app: &TestApp, staff: &TestUser, term: &str) -> Vec<String> {
    let (names, ..) = all_pages(app, staff, &[("search", term)]).await;
    names
}

async fn search_follows_renames_email_changes_and_deletions(backend: Backend) {
    let app = spawn_app_with(backend, no_verification).await;
    let staff = TestUser::create_staff(&app).await;
    let mut body = registration("Quill_Anders", "quill@Example.com", STRONG_PASSWORD);
    body["first_name"] = json!("Wren");
    body["last_name"] = json!("Østergaard");
    let created = json_ok(app.register(&body).await, 201).await;
    let id = str_field(&created["user"], "id");
    let access = str_field(&created, "access_token");
    let quill = vec!["Quill_Anders".to_owned()];
    for term in ["quill_", "QUILL@example", "wren", "STERGAARD"] {
        assert_eq!(find(&app, &staff, term).await, quill, "{term}");
    }

    // A staff rename of the names, and the user's own username change.
    json_ok(
        app.patch_user(
            &staff.access_token,
            &id,
            &json!({ "first_name": "Sparrow", "last_name": "Hale" }),
        )
        .await,
        200,
    )
    .await;
    let renamed = app
        .bearer(Method::POST, "/users/me/username", &access)
        .json(&json!({ "new_username": "Heron_Vale", "current_password": STRONG_PASSWORD }))
        .send()
        .await
        .expect("request failed");
    json_ok(renamed, 200).await;
    let heron = vec!["Heron_Vale".to_owned()];
    for term in ["wren", "stergaard", "quill_"] {
        assert!(
            find(&app, &staff, term).await.is_empty(),
            "{term} still found"
        );
    }
    for term in ["sparrow", "hale", "heron_v", "quill@example"] {
        assert_eq!(find(&app, &staff, term).await, heron, "{term}");
    }

    // An email change, as a confirmed change writes it.
    app.execute_sql(&format!(
        "UPDATE users SET email = 'kite@example.org', email_key = 'kite@example.org' WHERE id = '{id}'"
    ));
    assert!(find(&app, &staff, "quill@").await.is_empty());
    assert_eq!(find(&app, &staff, "kite@exa").await, heron);
    // A login (last_login) changes nothing the search reads.
    json_ok(app.login_username("Heron_Vale", STRONG_PASSWORD).await, 200).await;
    assert_eq!(find(&app, &staff, "heron").await, heron);

    assert!(
        app.delete_user(&staff.access_token, &id)
            .await
            .status()
            .is_success()
    );
    for term in ["heron", "sparrow", "kite@"] {
        assert!(
            find(&app, &staff, term).await.is_empty(),
            "{term} found after deletion"
        );
    }
}
