//! Test harness: starts the real `Application` on port 0 against a fresh database, and
//! wraps every endpoint, the email sink and the problem+json checks the tests share.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use diesel::sql_types::Text;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use latchkey::app::Application;
use latchkey::config::{EmailBackend, JwtAlgorithm, Secret, Settings};
use reqwest::{Client, Response};
use serde_json::{Value, json};
use tempfile::TempDir;

/// PostgreSQL server the `postgres::*` variants use (e.g.
/// `postgres://postgres@127.0.0.1:5432/test`); unset means those variants are skipped.
pub const POSTGRES_URL_VAR: &str = "LATCHKEY_TEST_POSTGRES_URL";

/// A public URL that cannot be the bind address: proves links and `iss` come from the
/// configuration and not from the request's Host header.
pub const PUBLIC_URL: &str = "http://latchkey.test";

/// A password every validator accepts and that is unrelated to generated usernames.
pub const STRONG_PASSWORD: &str = "Violet-Harbor-Quill-42";

/// A second strong password, for password changes and resets.
pub const NEW_PASSWORD: &str = "Amber-Lantern-Moss-77";

/// How long to wait for an email the service may deliver from a background worker.
const EMAIL_WAIT: Duration = Duration::from_secs(15);

#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres { url: String },
}

impl Backend {
    /// The PostgreSQL backend if the server URL is configured, else `None` (the caller
    /// then skips the test; printing the reason makes `--nocapture` runs explain it).
    pub fn postgres() -> Option<Self> {
        match std::env::var(POSTGRES_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => Some(Backend::Postgres { url }),
            _ => {
                println!("skipped: {POSTGRES_URL_VAR} not set");
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// PostgreSQL: one schema per test
// ---------------------------------------------------------------------------------

/// A schema private to one test, so parallel tests never see each other's rows.
/// Named `test_<uuid v7>`: the v7 timestamp lets the sweep find leftovers of crashed
/// runs without a bookkeeping table.
pub struct PgSchema {
    admin_url: String,
    name: String,
}

#[derive(QueryableByName)]
struct SchemaRow {
    #[diesel(sql_type = Text)]
    nspname: String,
}

static SWEEP: Once = Once::new();

impl PgSchema {
    fn create(admin_url: &str) -> Self {
        SWEEP.call_once(|| {
            sweep_stale_schemas(admin_url);
            install_trigram_extension(admin_url);
        });
        let name = format!("test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::establish(admin_url)
            .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_VAR}: {e}"));
        diesel::sql_query(format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .expect("CREATE SCHEMA failed");
        PgSchema {
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    /// The admin URL with the schema as libpq's `search_path` startup option, so the
    /// service (and its migrations) work in the schema without knowing about it.
    fn app_url(&self) -> String {
        let sep = if self.admin_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}options=-csearch_path%3D{}",
            self.admin_url, self.name
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Best effort: a failed drop only leaves a schema for the next sweep.
        if let Ok(mut conn) = PgConnection::establish(&self.admin_url) {
            // The app's pool may still be connected; never hang the test on a lock.
            let _ = diesel::sql_query("SET lock_timeout = '10s'").execute(&mut conn);
            let _ = diesel::sql_query(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
                .execute(&mut conn);
        }
    }
}

/// Drops `test_*` schemas created more than an hour ago (by crashed or killed runs).
/// Younger ones may belong to a concurrently running test process.
fn sweep_stale_schemas(admin_url: &str) {
    let Ok(mut conn) = PgConnection::establish(admin_url) else {
        return;
    };
    let Ok(rows) = diesel::sql_query(
        "SELECT nspname::text AS nspname FROM pg_namespace WHERE nspname LIKE 'test\\_%'",
    )
    .load::<SchemaRow>(&mut conn) else {
        return;
    };
    for row in rows {
        if crate::pg::older_than_an_hour(&row.nspname, "test") {
            let _ = diesel::sql_query(format!("DROP SCHEMA IF EXISTS {} CASCADE", row.nspname))
                .execute(&mut conn);
        }
    }
}

/// Installs pg_trgm (the user search's indexes) in `public`, where no test drops it. Left
/// to the first test's migration, it would land in that test's schema (the first on its
/// search_path) and go with it, taking the other tests' search indexes along.
fn install_trigram_extension(admin_url: &str) {
    if let Ok(mut conn) = PgConnection::establish(admin_url) {
        // Best effort: a concurrent test process may be installing it at the same moment,
        // and without it the search is only slower.
        let _ = diesel::sql_query("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
            .execute(&mut conn);
    }
}

// ---------------------------------------------------------------------------------
// Spawning
// ---------------------------------------------------------------------------------

pub struct TestApp {
    pub address: String,
    pub client: Client,
    /// The database this instance uses, for a second instance over the same data.
    pub database_url: String,
    /// Expected `iss` of the tokens.
    pub issuer: String,
    /// Expected `aud` of the tokens.
    pub audience: String,
    /// PEM (or HS256 secret) the service signs with, when the test harness chose it.
    /// `None` when the service generated its own key (SQLite default).
    pub signing_key_pem: Option<String>,
    pub email_dir: PathBuf,
    /// The settings the instance was built with (e.g. to open its database directly).
    pub settings: Settings,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    // Field order matters for Drop: the schema goes before the temp dir; both are
    // only kept alive, never read.
    _schema: Option<PgSchema>,
    _dir: TempDir,
}

/// Settings for a test instance plus the resources they point at.
pub struct Fixture {
    pub settings: Settings,
    pub dir: TempDir,
    pub email_dir: PathBuf,
    pub schema: Option<PgSchema>,
}

/// Test defaults: fresh database, port 0, one worker, bcrypt cost 4, file email sink,
/// no throttling. No signing key is configured here.
pub fn fixture(backend: &Backend) -> Fixture {
    let dir = TempDir::new().expect("cannot create temp dir");
    let email_dir = dir.path().join("outbox");
    fs::create_dir_all(&email_dir).expect("cannot create outbox dir");

    let mut s = Settings::default();
    s.server.bind = "127.0.0.1:0".into();
    s.server.public_url = PUBLIC_URL.into();
    s.server.workers = 1;
    s.database.migrate_on_start = true;
    s.password.bcrypt_cost = 4;
    s.email.backend = EmailBackend::File;
    s.email.file_dir = email_dir.clone();
    s.throttle.enabled = false;

    let schema = match backend {
        Backend::Sqlite => {
            s.database.url = Secret(sqlite_url(dir.path()));
            None
        }
        Backend::Postgres { url } => {
            let schema = PgSchema::create(url);
            s.database.url = Secret(schema.app_url());
            // Parallel tests share the server's connection limit (100 by default).
            s.database.pool_size = Some(8);
            Some(schema)
        }
    };
    Fixture {
        settings: s,
        dir,
        email_dir,
        schema,
    }
}

pub fn sqlite_url(dir: &Path) -> String {
    // `dir` is absolute, so this yields the `sqlite:///abs/path.db` form.
    format!("sqlite://{}", dir.join("latchkey.db").display())
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Like `spawn_app`, with `customize` applied last (it may override any default).
pub async fn spawn_app_with(backend: Backend, customize: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(backend, false, customize).await
}

/// Like `spawn_app_with`, but always configures a signing key the test can read from
/// `TestApp::signing_key_pem` (to forge tokens with the real key).
pub async fn spawn_app_with_known_key(
    backend: Backend,
    customize: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn(backend, true, customize).await
}

async fn spawn(
    backend: Backend,
    known_key: bool,
    customize: impl FnOnce(&mut Settings),
) -> TestApp {
    let Fixture {
        mut settings,
        dir,
        email_dir,
        schema,
    } = fixture(&backend);
    customize(&mut settings);
    // PostgreSQL requires a key (replicas must share it); SQLite generates one itself.
    if settings.jwt.signing_key.is_none() && (known_key || schema.is_some()) {
        let path = write_signing_key(dir.path(), settings.jwt.algorithm);
        settings.jwt.signing_key = Some(path);
    }
    let signing_key_pem = settings
        .jwt
        .signing_key
        .as_ref()
        .map(|p| fs::read_to_string(p).expect("cannot read signing key"));
    let database_url = settings.database.url.expose().clone();
    let issuer = settings
        .jwt
        .issuer
        .clone()
        .unwrap_or_else(|| settings.server.public_url.clone());
    let audience = settings.jwt.audience.clone();

    let app = Application::build(settings.clone())
        .await
        .expect("failed to build the application");
    let port = app.port();
    let server = tokio::spawn(app.run_until_stopped());

    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: Client::builder()
            // A safety net so a hung server fails the test instead of the whole run.
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("cannot build HTTP client"),
        database_url,
        issuer,
        audience,
        signing_key_pem,
        email_dir,
        settings,
        server,
        _schema: schema,
        _dir: dir,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop serving (and release pooled connections) before the schema is dropped.
        self.server.abort();
    }
}

/// Writes a freshly generated private key (or HS256 secret) into `dir`, mode 0600.
pub fn write_signing_key(dir: &Path, alg: JwtAlgorithm) -> PathBuf {
    let pem = latchkey::auth::keys::generate_private_pem(alg).expect("key generation failed");
    let path = dir.join(format!("signing-{}.pem", uuid::Uuid::now_v7().simple()));
    fs::write(&path, pem).expect("cannot write signing key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .expect("cannot chmod signing key");
    }
    path
}

// ---------------------------------------------------------------------------------
// One method per endpoint
// ---------------------------------------------------------------------------------

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request failed")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request failed")
    }

    /// A request with `Authorization: Bearer <token>`.
    pub fn bearer(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    pub async fn register(&self, body: &Value) -> Response {
        self.post_json("/auth/register", body).await
    }

    pub async fn activate(&self, uid: &str, token: &str) -> Response {
        self.post_json("/auth/activate", &json!({ "uid": uid, "token": token }))
            .await
    }

    pub async fn resend_activation(&self, email: &str) -> Response {
        self.post_json("/auth/activate/resend", &json!({ "email": email }))
            .await
    }

    pub async fn request_password_reset(&self, email: &str) -> Response {
        self.post_json("/auth/password/reset", &json!({ "email": email }))
            .await
    }

    pub async fn confirm_password_reset(&self, body: &Value) -> Response {
        self.post_json("/auth/password/reset/confirm", body).await
    }

    pub async fn login(&self, body: &Value) -> Response {
        self.post_json("/auth/login", body).await
    }

    pub async fn login_username(&self, username: &str, password: &str) -> Response {
        self.login(&json!({ "username": username, "password": password }))
            .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_json(
            "/auth/token/refresh",
            &json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    pub async fn verify(&self, token: &str) -> Response {
        self.post_json("/auth/token/verify", &json!({ "token": token }))
            .await
    }

    pub async fn logout(&self, refresh_token: &str) -> Response {
        self.post_json("/auth/logout", &json!({ "refresh_token": refresh_token }))
            .await
    }

    pub async fn logout_all(&self, access_token: &str) -> Response {
        send(self.bearer(reqwest::Method::POST, "/auth/logout/all", access_token)).await
    }

    pub async fn get_me(&self, access_token: &str) -> Response {
        send(self.bearer(reqwest::Method::GET, "/users/me", access_token)).await
    }

    /// `GET /users/me` with an arbitrary (or no) `Authorization` header value.
    pub async fn get_me_with_authorization(&self, authorization: Option<&str>) -> Response {
        let mut req = self.client.get(self.url("/users/me"));
        if let Some(value) = authorization {
            req = req.header(reqwest::header::AUTHORIZATION, value);
        }
        send(req).await
    }

    pub async fn patch_me(&self, access_token: &str, body: &Value) -> Response {
        send(
            self.bearer(reqwest::Method::PATCH, "/users/me", access_token)
                .json(body),
        )
        .await
    }

    pub async fn delete_me(&self, access_token: &str, body: &Value) -> Response {
        send(
            self.bearer(reqwest::Method::DELETE, "/users/me", access_token)
                .json(body),
        )
        .await
    }

    pub async fn change_password(&self, access_token: &str, body: &Value) -> Response {
        send(
            self.bearer(reqwest::Method::POST, "/users/me/password", access_token)
                .json(body),
        )
        .await
    }

    pub async fn jwks(&self) -> Response {
        self.get("/.well-known/jwks.json").await
    }

    pub async fn openid_configuration(&self) -> Response {
        self.get("/.well-known/openid-configuration").await
    }

    /// The JWK Set as JSON, asserting the request succeeded.
    pub async fn jwks_json(&self) -> Value {
        json_ok(self.jwks().await, 200).await
    }

    /// Runs `sql` directly against this instance's database, behind the service's back
    /// (sabotage tests only: everything else goes through the HTTP API).
    pub fn execute_sql(&self, sql: &str) {
        use diesel::SqliteConnection;
        if let Some(path) = self.database_url.strip_prefix("sqlite://") {
            let mut conn = SqliteConnection::establish(path).expect("cannot open SQLite file");
            diesel::sql_query("PRAGMA busy_timeout = 5000")
                .execute(&mut conn)
                .expect("busy_timeout");
            diesel::sql_query(sql)
                .execute(&mut conn)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        } else {
            let mut conn =
                PgConnection::establish(&self.database_url).expect("cannot connect to PostgreSQL");
            diesel::sql_query(sql)
                .execute(&mut conn)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    // -----------------------------------------------------------------------------
    // Email sink
    // -----------------------------------------------------------------------------

    /// Every message the file backend has written so far, oldest first.
    pub fn emails(&self) -> Vec<Email> {
        let Ok(entries) = fs::read_dir(&self.email_dir) else {
            return Vec::new();
        };
        let mut files: Vec<(SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|ext| ext == "eml"))
            .map(|p| {
                let modified = fs::metadata(&p)
                    .and_then(|m| m.modified())
                    .unwrap_or(UNIX_EPOCH);
                (modified, p)
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, p)| fs::read(&p).ok())
            .map(|bytes| Email::parse(&String::from_utf8_lossy(&bytes)))
            .collect()
    }

    /// Polls the outbox until `found` extracts something from it. Polling (with a
    /// deadline) because delivery may happen on a background worker after the response.
    pub async fn wait_for_email<T>(&self, what: &str, found: impl Fn(&[Email]) -> Option<T>) -> T {
        poll_until(what, || {
            let emails = self.emails();
            found(&emails).ok_or(emails)
        })
        .await
    }

    /// The `…<marker>{uid}/{token}` link of the newest email to `to` that has one.
    pub async fn emailed_link(&self, to: &str, marker: &str) -> EmailLink {
        self.emailed_link_after(to, marker, 0).await
    }

    /// Like `emailed_link`, but only among the messages to `to` after the first `seen`
    /// (so a test can wait for a new message when an older one has the same kind of link).
    pub async fn emailed_link_after(&self, to: &str, marker: &str, seen: usize) -> EmailLink {
        self.wait_for_email(
            &format!("new email to {to} with a {marker} link"),
            |emails| {
                let mine: Vec<&Email> = emails.iter().filter(|m| m.is_to(to)).collect();
                mine.iter().skip(seen).rev().find_map(|m| m.link(marker))
            },
        )
        .await
    }

    /// How many messages to `to` have been written so far.
    pub fn email_count(&self, to: &str) -> usize {
        self.emails().iter().filter(|m| m.is_to(to)).count()
    }

    pub async fn activation_link(&self, to: &str) -> EmailLink {
        self.emailed_link(to, "/activate/").await
    }

    pub async fn reset_link(&self, to: &str) -> EmailLink {
        self.emailed_link(to, "/password/reset/").await
    }
}

/// Polls `probe` until it yields a result, for at most `EMAIL_WAIT` (work done by
/// background workers after the response); on timeout, reports `what` and the probe's
/// last observation (its error value).
pub async fn poll_until<T, E: std::fmt::Debug>(
    what: &str,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + EMAIL_WAIT;
    loop {
        match probe() {
            Ok(found) => return found,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "no {what} within {EMAIL_WAIT:?}; seen: {seen:#?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send(req: reqwest::RequestBuilder) -> Response {
    req.send().await.expect("request failed")
}

// ---------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------

/// Registration body with a matching `password_confirm`.
pub fn registration(username: &str, email: &str, password: &str) -> Value {
    json!({
        "username": username,
        "email": email,
        "password": password,
        "password_confirm": password,
    })
}

/// A unique, valid username (unique per process; each test has its own database anyway).
pub fn unique_username() -> String {
    format!("user_{}", uuid::Uuid::now_v7().simple())
}

#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub email: String,
    pub password: String,
    pub access_token: String,
    pub refresh_token: String,
}

impl TestUser {
    /// Registers a new user, activates it through the emailed link when verification
    /// is on, and logs in.
    pub async fn create(app: &TestApp) -> TestUser {
        let username = unique_username();
        let email = format!("{username}@example.com");
        Self::create_with(app, &username, &email, STRONG_PASSWORD).await
    }

    pub async fn create_with(
        app: &TestApp,
        username: &str,
        email: &str,
        password: &str,
    ) -> TestUser {
        // An address may already have mail (re-registration after deletion).
        let seen = app.email_count(email);
        let body = json_ok(
            app.register(&registration(username, email, password)).await,
            201,
        )
        .await;
        if body["activation_required"] == json!(true) {
            let link = app.emailed_link_after(email, "/activate/", seen).await;
            json_ok(app.activate(&link.uid, &link.token).await, 200).await;
        }
        let pair = json_ok(app.login_username(username, password).await, 200).await;
        assert_token_pair(&pair);
        TestUser {
            id: pair["user"]["id"].as_str().expect("user.id").to_owned(),
            username: username.to_owned(),
            email: email.to_owned(),
            password: password.to_owned(),
            access_token: str_field(&pair, "access_token"),
            refresh_token: str_field(&pair, "refresh_token"),
        }
    }

    /// The access and the refresh token, for checks that apply to both kinds.
    pub fn tokens(&self) -> [&String; 2] {
        [&self.access_token, &self.refresh_token]
    }

    /// A second, independent session (new refresh-token family).
    pub async fn login_again(&self, app: &TestApp) -> Value {
        json_ok(
            app.login_username(&self.username, &self.password).await,
            200,
        )
        .await
    }
}

pub fn str_field(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string in {v}"))
        .to_owned()
}

// ---------------------------------------------------------------------------------
// Administration (staff-only routes) and the operator command line
// ---------------------------------------------------------------------------------

/// `pairs` as an `application/x-www-form-urlencoded` query string, in the given order.
pub fn form_query(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://query.invalid/").expect("static URL");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

/// `segment` percent-encoded for use as one URL path segment (e.g. a group name).
pub fn path_segment(segment: &str) -> String {
    let mut url = reqwest::Url::parse("http://path.invalid/").expect("static URL");
    url.path_segments_mut()
        .expect("base URL has a path")
        .pop()
        .push(segment);
    url.path()[1..].to_owned()
}

impl TestApp {
    /// `method path` as `token` (`None`: no `Authorization` header), with an optional
    /// JSON body: one entry point for the permission checks of every admin route.
    pub async fn request_as(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        send(req).await
    }

    /// `GET /users?<query>`, the query sent exactly as given (see `form_query`).
    pub async fn list_users(&self, token: &str, query: &str) -> Response {
        let path = if query.is_empty() {
            "/users".to_owned()
        } else {
            format!("/users?{query}")
        };
        send(self.bearer(reqwest::Method::GET, &path, token)).await
    }

    /// The 200 body of `GET /users?<query>`.
    pub async fn list_users_json(&self, token: &str, query: &str) -> Value {
        json_ok(self.list_users(token, query).await, 200).await
    }

    pub async fn get_user(&self, token: &str, id: &str) -> Response {
        send(self.bearer(reqwest::Method::GET, &format!("/users/{id}"), token)).await
    }

    /// The 200 body of `GET /users/{id}`.
    pub async fn get_user_json(&self, token: &str, id: &str) -> Value {
        json_ok(self.get_user(token, id).await, 200).await
    }

    pub async fn patch_user(&self, token: &str, id: &str, body: &Value) -> Response {
        send(
            self.bearer(reqwest::Method::PATCH, &format!("/users/{id}"), token)
                .json(body),
        )
        .await
    }

    pub async fn delete_user(&self, token: &str, id: &str) -> Response {
        send(self.bearer(reqwest::Method::DELETE, &format!("/users/{id}"), token)).await
    }

    pub async fn list_groups(&self, token: &str) -> Response {
        send(self.bearer(reqwest::Method::GET, "/groups", token)).await
    }

    /// `POST /groups` with an arbitrary body.
    pub async fn create_group_with(&self, token: &str, body: &Value) -> Response {
        send(
            self.bearer(reqwest::Method::POST, "/groups", token)
                .json(body),
        )
        .await
    }

    pub async fn create_group(&self, token: &str, name: &str) -> Response {
        self.create_group_with(token, &json!({ "name": name }))
            .await
    }

    /// `DELETE /groups/{name}`, the name percent-encoded as a path segment.
    pub async fn delete_group(&self, token: &str, name: &str) -> Response {
        let path = format!("/groups/{}", path_segment(name));
        send(self.bearer(reqwest::Method::DELETE, &path, token)).await
    }

    /// Runs the real `latchkey` binary with `args` against this instance's database
    /// (bcrypt cost 4, no other configuration from the environment), feeding `stdin`.
    pub async fn run_cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        use std::process::{Command, Stdio};

        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let stdin = stdin.map(str::to_owned);
        let database_url = self.database_url.clone();
        // The test's scratch directory: no stray `config/default.toml` is picked up.
        let cwd = self
            .email_dir
            .parent()
            .unwrap_or(&self.email_dir)
            .to_owned();
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
            cmd.args(&args)
                .current_dir(cwd)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (key, _) in
                std::env::vars().filter(|(k, _)| k.starts_with("LATCHKEY_") || k == "DATABASE_URL")
            {
                cmd.env_remove(key);
            }
            cmd.env("DATABASE_URL", database_url)
                .env("LATCHKEY_PASSWORD__BCRYPT_COST", "4")
                // The instance has migrated the database already.
                .env("LATCHKEY_DATABASE__MIGRATE_ON_START", "false");
            let mut child = cmd.spawn().expect("cannot spawn latchkey");
            if let Some(input) = stdin {
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(input.as_bytes())
                    .expect("cannot write to latchkey's stdin");
            }
            drop(child.stdin.take());
            child.wait_with_output().expect("cannot wait for latchkey")
        })
        .await
        .expect("latchkey runner panicked")
    }

    /// Sets `last_login` of the user named `username` behind the service's back (`None`:
    /// never logged in), to make orderings by `last_login` deterministic. `at` is
    /// `YYYY-MM-DD HH:MM:SS.ffffff` in UTC.
    pub fn set_last_login(&self, username: &str, at: Option<&str>) {
        let value = at.map_or("NULL".to_owned(), |t| format!("'{t}'"));
        self.execute_sql(&format!(
            "UPDATE users SET last_login = {value} WHERE username = '{}'",
            username.replace('\'', "''")
        ));
    }
}

impl TestApp {
    /// `latchkey createsuperuser --username U --email E --password-stdin` with `stdin`.
    pub async fn createsuperuser(
        &self,
        username: &str,
        email: &str,
        stdin: &str,
    ) -> std::process::Output {
        self.run_cli(
            &[
                "createsuperuser",
                "--username",
                username,
                "--email",
                email,
                "--password-stdin",
            ],
            Some(stdin),
        )
        .await
    }
}

/// Combined stdout and stderr of a finished command.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl TestUser {
    /// A staff user made the way an operator would, with `latchkey createsuperuser
    /// --password-stdin` against the instance's database, then logged in over the API.
    pub async fn create_staff(app: &TestApp) -> TestUser {
        // No `_`: keeps staff usernames out of searches for a literal underscore.
        let username = format!("staff{}", uuid::Uuid::now_v7().simple());
        let email = format!("{username}@example.com");
        let out = app
            .createsuperuser(&username, &email, &format!("{STRONG_PASSWORD}\n"))
            .await;
        assert!(
            out.status.success(),
            "createsuperuser failed ({}): {}",
            out.status,
            output_text(&out)
        );
        let pair = json_ok(app.login_username(&username, STRONG_PASSWORD).await, 200).await;
        assert_token_pair(&pair);
        assert_eq!(pair["user"]["is_staff"], json!(true), "{pair}");
        TestUser {
            id: str_field(&pair["user"], "id"),
            username,
            email,
            password: STRONG_PASSWORD.to_owned(),
            access_token: str_field(&pair, "access_token"),
            refresh_token: str_field(&pair, "refresh_token"),
        }
    }
}

// ---------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------

/// Asserts the status and a JSON body, and that the body leaks no password material.
pub async fn json_ok(resp: Response, status: u16) -> Value {
    let (actual, content_type, text) = parts(resp).await;
    assert_eq!(actual, status, "unexpected status; body: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "content-type `{content_type}`, body: {text}"
    );
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_no_secrets(&body, &text);
    body
}

/// After a password change or reset: the old password no longer logs in, the new one does,
/// and every refresh token issued before (the user's first and `other_session`'s) is revoked.
pub async fn assert_password_replaced(
    app: &TestApp,
    user: &TestUser,
    new_password: &str,
    other_session: &Value,
) {
    assert_problem(
        app.login_username(&user.username, &user.password).await,
        401,
        "invalid_credentials",
    )
    .await;
    json_ok(app.login_username(&user.username, new_password).await, 200).await;
    for token in [
        user.refresh_token.clone(),
        str_field(other_session, "refresh_token"),
    ] {
        assert_problem(app.refresh(&token).await, 401, "token_revoked").await;
    }
}

/// Asserts an empty-bodied success such as 204.
pub async fn assert_status(resp: Response, status: u16) {
    let (actual, _, text) = parts(resp).await;
    assert_eq!(actual, status, "unexpected status; body: {text}");
}

/// Asserts an RFC 9457 problem with the given status and `code`; returns the body.
pub async fn assert_problem(resp: Response, status: u16, code: &str) -> Value {
    let (actual, content_type, text) = parts(resp).await;
    assert_eq!(actual, status, "unexpected status; body: {text}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "content-type `{content_type}`, body: {text}"
    );
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(
        body["status"],
        json!(status),
        "problem `status` field: {text}"
    );
    assert_eq!(body["code"], json!(code), "problem `code` field: {text}");
    assert!(body["type"].is_string(), "problem without `type`: {text}");
    assert!(body["title"].is_string(), "problem without `title`: {text}");
    assert_no_hash(&text);
    body
}

/// Like `assert_problem`, but accepts any of `codes` (for races whose loser may see
/// either outcome). Returns the code seen.
pub async fn assert_problem_one_of(resp: Response, status: u16, codes: &[&str]) -> String {
    let (actual, content_type, text) = parts(resp).await;
    assert_eq!(actual, status, "unexpected status; body: {text}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "content-type `{content_type}`"
    );
    let body: Value = serde_json::from_str(&text).expect("problem body is not JSON");
    let code = body["code"].as_str().unwrap_or_default().to_owned();
    assert!(
        codes.contains(&code.as_str()),
        "code `{code}` not in {codes:?}: {text}"
    );
    code
}

/// 400 `validation_failed` with a non-empty message list under each of `fields`.
pub async fn assert_validation_error(resp: Response, fields: &[&str]) -> Value {
    let body = assert_problem(resp, 400, "validation_failed").await;
    for field in fields {
        assert_field_error(&body, field);
    }
    body
}

/// 400 `validation_failed` with errors under at least one of `fields` (e.g. the
/// contract allows `password_confirm` or `non_field_errors`).
pub async fn assert_validation_error_on_one_of(resp: Response, fields: &[&str]) -> Value {
    let body = assert_problem(resp, 400, "validation_failed").await;
    assert!(
        fields.iter().any(|f| body["errors"].get(f).is_some()),
        "no errors under any of {fields:?}: {body}"
    );
    body
}

pub fn assert_field_error(body: &Value, field: &str) {
    let messages = body["errors"][field]
        .as_array()
        .unwrap_or_else(|| panic!("no `errors.{field}` list in {body}"));
    assert!(!messages.is_empty(), "empty `errors.{field}`: {body}");
    assert!(
        messages
            .iter()
            .all(|m| m.as_str().is_some_and(|s| !s.is_empty())),
        "`errors.{field}` must hold non-empty strings: {body}"
    );
}

/// The token pair of API.md "Tokens".
pub fn assert_token_pair(pair: &Value) {
    for key in ["access_token", "refresh_token"] {
        let token = pair[key]
            .as_str()
            .unwrap_or_else(|| panic!("no `{key}` in {pair}"));
        assert_eq!(
            token.split('.').count(),
            3,
            "`{key}` is not a compact JWS: {token}"
        );
    }
    assert_eq!(pair["token_type"], json!("Bearer"), "{pair}");
    assert!(pair["expires_in"].as_u64().is_some_and(|n| n > 0), "{pair}");
    assert!(
        pair["refresh_expires_in"].as_u64().is_some_and(|n| n > 0),
        "{pair}"
    );
    assert_user_object(&pair["user"]);
}

/// Every field of the API.md user object, with its JSON type.
pub fn assert_user_object(user: &Value) {
    let obj = user
        .as_object()
        .unwrap_or_else(|| panic!("user is not an object: {user}"));
    for key in [
        "id",
        "username",
        "email",
        "first_name",
        "last_name",
        "bio",
        "date_joined",
    ] {
        assert!(
            obj.get(key).is_some_and(Value::is_string),
            "user.{key} not a string: {user}"
        );
    }
    for key in ["email_verified", "is_active", "is_staff"] {
        assert!(
            obj.get(key).is_some_and(Value::is_boolean),
            "user.{key} not a bool: {user}"
        );
    }
    assert!(
        obj.get("groups").is_some_and(Value::is_array),
        "user.groups: {user}"
    );
    assert!(
        obj.get("claims").is_some_and(Value::is_object),
        "user.claims: {user}"
    );
    assert!(
        obj.get("last_login")
            .is_some_and(|v| v.is_null() || v.is_string()),
        "user.last_login: {user}"
    );
    uuid::Uuid::parse_str(obj["id"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("user.id is not a UUID ({e}): {user}"));
    chrono::DateTime::parse_from_rfc3339(obj["date_joined"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("user.date_joined is not RFC 3339 ({e}): {user}"));
}

/// No key that looks like a password or hash, and no bcrypt hash anywhere.
fn assert_no_secrets(body: &Value, text: &str) {
    fn walk(v: &Value, text: &str) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let k = k.to_ascii_lowercase();
                    assert!(
                        !k.contains("password") && !k.contains("hash"),
                        "response exposes `{k}`: {text}"
                    );
                    walk(v, text);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, text)),
            _ => {}
        }
    }
    walk(body, text);
    assert_no_hash(text);
}

fn assert_no_hash(text: &str) {
    for prefix in ["$2a$", "$2b$", "$2y$"] {
        assert!(
            !text.contains(prefix),
            "response contains a bcrypt hash: {text}"
        );
    }
}

async fn parts(resp: Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let content_type = header(&resp, "content-type").unwrap_or_default();
    let text = resp.text().await.expect("cannot read response body");
    (status, content_type, text)
}

pub fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A hostile or invalid `token` must be refused as `token_invalid` by the verify
/// endpoint and by the endpoint that consumes its kind: refresh for a (forged) refresh
/// token, a protected endpoint (Bearer) for anything else.
pub async fn assert_token_invalid_everywhere(app: &TestApp, token: &str) {
    let claims = try_jwt_segment(token, 1).unwrap_or_default();
    let resp = if claims["token_type"] == json!("refresh") {
        app.refresh(token).await
    } else {
        app.get_me(token).await
    };
    let body = assert_problem(resp, 401, "token_invalid").await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_problem(app.verify(token).await, 401, "token_invalid").await;
}

// ---------------------------------------------------------------------------------
// JWT inspection (no verification: that is the server's job and jwks.rs's)
// ---------------------------------------------------------------------------------

fn try_jwt_segment(token: &str, index: usize) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(token.split('.').nth(index)?).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn jwt_segment(token: &str, index: usize) -> Value {
    try_jwt_segment(token, index)
        .unwrap_or_else(|| panic!("segment {index} is not base64url JSON: {token}"))
}

pub fn jwt_header(token: &str) -> Value {
    jwt_segment(token, 0)
}

pub fn jwt_claims(token: &str) -> Value {
    jwt_segment(token, 1)
}

/// DER prefix of a P-256 SubjectPublicKeyInfo; the uncompressed point follows.
pub const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The SubjectPublicKeyInfo DER of a published P-256 JWK.
pub fn p256_spki_der(jwk: &Value) -> Vec<u8> {
    let coordinate = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(str_field(jwk, name))
            .expect("JWK coordinate is not base64url")
    };
    [
        P256_SPKI_PREFIX.to_vec(),
        vec![0x04],
        coordinate("x"),
        coordinate("y"),
    ]
    .concat()
}

/// The `PUBLIC KEY` PEM of a published P-256 JWK.
pub fn p256_public_pem(jwk: &Value) -> String {
    let b64 = STANDARD.encode(p256_spki_der(jwk));
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------------
// Email parsing: just enough MIME to read what a mailer writes
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Email {
    pub raw: String,
    pub to: String,
    pub subject: String,
    /// All text bodies, transfer-decoded (quoted-printable soft breaks and base64
    /// would otherwise split or hide the link), concatenated.
    pub text: String,
}

impl Email {
    pub fn parse(raw: &str) -> Email {
        let normalized = raw.replace("\r\n", "\n");
        let (headers, body) = split_head(&normalized);
        let mut text = String::new();
        collect_bodies(headers, body, &mut text);
        Email {
            raw: normalized.clone(),
            to: header_value(headers, "to").unwrap_or_default(),
            subject: header_value(headers, "subject").unwrap_or_default(),
            text,
        }
    }

    pub fn is_to(&self, address: &str) -> bool {
        self.to.to_lowercase().contains(&address.to_lowercase())
    }

    /// A top-level header, unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        header_value(split_head(&self.raw).0, name)
    }

    /// The `type/subtype` of every body part (multiparts expanded), lowercased.
    pub fn part_types(&self) -> Vec<String> {
        fn walk(headers: &str, body: &str, out: &mut Vec<String>) {
            match multipart_parts(headers, body) {
                Some(parts) => parts.into_iter().for_each(|(h, b)| walk(h, b, out)),
                None => out.push(content_type_essence(headers)),
            }
        }
        let mut out = Vec::new();
        let (headers, body) = split_head(&self.raw);
        walk(headers, body, &mut out);
        out
    }

    /// The first `…<marker>{uid}/{token}` link in the decoded text, else in the raw message.
    pub fn link(&self, marker: &str) -> Option<EmailLink> {
        find_link(&self.text, marker).or_else(|| find_link(&self.raw, marker))
    }
}

/// `type/subtype` of a part's `Content-Type` (RFC 2045 default: `text/plain`).
fn content_type_essence(headers: &str) -> String {
    header_value(headers, "content-type")
        .and_then(|v| v.split(';').next().map(|t| t.trim().to_ascii_lowercase()))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "text/plain".into())
}

/// The (headers, body) of each part when the part described by `headers` is a multipart.
fn multipart_parts<'a>(headers: &str, body: &'a str) -> Option<Vec<(&'a str, &'a str)>> {
    let content_type = header_value(headers, "content-type")?;
    if !content_type.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    let delimiter = format!("--{}", header_param(&content_type, "boundary")?);
    let parts = body
        .split(delimiter.as_str())
        .skip(1)
        .take_while(|part| !part.starts_with("--")) // closing delimiter
        // Drop the rest of the delimiter line.
        .map(|part| split_head(part.split_once('\n').map_or("", |(_, rest)| rest)))
        .collect();
    Some(parts)
}

fn split_head(part: &str) -> (&str, &str) {
    if let Some(rest) = part.strip_prefix('\n') {
        return ("", rest);
    }
    match part.find("\n\n") {
        Some(i) => (&part[..i], &part[i + 2..]),
        None => (part, ""),
    }
}

fn header_value(headers: &str, name: &str) -> Option<String> {
    let unfolded = headers.replace("\n ", " ").replace("\n\t", " ");
    unfolded.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

fn header_param(value: &str, param: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(param)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn collect_bodies(headers: &str, body: &str, out: &mut String) {
    if let Some(parts) = multipart_parts(headers, body) {
        for (h, b) in parts {
            collect_bodies(h, b, out);
        }
        return;
    }
    let encoding = header_value(headers, "content-transfer-encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let decoded = match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(body),
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            STANDARD
                .decode(compact)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| body.to_owned())
        }
        _ => body.to_owned(),
    };
    out.push_str(&decoded);
    out.push('\n');
}

fn decode_quoted_printable(body: &str) -> String {
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes.get(i + 1) == Some(&b'\n') {
                i += 2; // soft line break
                continue;
            }
            if let Some(hex) = body.get(i + 1..i + 3)
                && let Ok(byte) = u8::from_str_radix(hex, 16)
            {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone)]
pub struct EmailLink {
    pub url: String,
    pub uid: String,
    pub token: String,
}

/// Finds the first `http(s)://…<marker><uid>/<token>` URL in `text`.
pub fn find_link(text: &str, marker: &str) -> Option<EmailLink> {
    let is_end = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ']');
    text.match_indices(marker).find_map(|(idx, _)| {
        let start = text[..idx].rfind("http")?;
        if text[start..idx].contains(is_end) {
            return None;
        }
        let end = text[idx..].find(is_end).map_or(text.len(), |n| idx + n);
        let url = text[start..end].trim_end_matches(['.', ',', '/']);
        let rest = &url[url.find(marker)? + marker.len()..];
        let (uid, token) = rest.split_once('/')?;
        (!uid.is_empty() && !token.is_empty()).then(|| EmailLink {
            url: url.to_owned(),
            uid: uid.to_owned(),
            token: token.to_owned(),
        })
    })
}

/// Checks of the harness itself, so a failing API test is never a parsing artefact.
mod self_tests {
    use diesel::{Connection, PgConnection, RunQueryDsl};

    use super::{Backend, Email, PgSchema, SchemaRow, find_link};

    #[test]
    fn finds_link_across_quoted_printable_soft_breaks() {
        let raw = "To: ada@example.com\r\nSubject: Activate your latchkey account\r\n\
                   Content-Type: text/plain; charset=utf-8\r\n\
                   Content-Transfer-Encoding: quoted-printable\r\n\r\n\
                   Click http://latchkey.test/activate/MDE5MC1h/abc-=\r\ndef=3D.\r\n";
        let email = Email::parse(raw);
        let link = find_link(&email.text, "/activate/").expect("link");
        assert_eq!(link.uid, "MDE5MC1h");
        assert_eq!(link.token, "abc-def=");
        assert!(email.is_to("ADA@example.com"));
    }

    #[test]
    fn finds_link_in_base64_multipart() {
        use base64::Engine;
        let html = base64::engine::general_purpose::STANDARD
            .encode("<a href=\"https://x.test/activate/dWlk/tok-1\">Activate</a>");
        let raw = format!(
            "To: <ada@example.com>\nContent-Type: multipart/alternative; boundary=\"b1\"\n\n\
             --b1\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\n{html}\n--b1--\n"
        );
        let email = Email::parse(&raw);
        assert_eq!(email.part_types(), ["text/html"]);
        let link = find_link(&email.text, "/activate/").expect("link");
        assert_eq!(link.url, "https://x.test/activate/dWlk/tok-1");
        assert_eq!((link.uid.as_str(), link.token.as_str()), ("dWlk", "tok-1"));
    }

    #[test]
    fn postgres_schema_is_isolated_and_dropped() {
        let Some(Backend::Postgres { url }) = Backend::postgres() else {
            return;
        };
        let schema = PgSchema::create(&url);
        let name = schema.name.clone();
        let mut conn = PgConnection::establish(&schema.app_url()).expect("app URL connects");
        let current: Vec<SchemaRow> = diesel::sql_query("SELECT current_schema()::text AS nspname")
            .load(&mut conn)
            .expect("current_schema");
        assert_eq!(current[0].nspname, name);
        drop(schema);
        let mut admin = PgConnection::establish(&url).expect("admin connects");
        let left: Vec<SchemaRow> = diesel::sql_query(format!(
            "SELECT nspname::text AS nspname FROM pg_namespace WHERE nspname = '{name}'"
        ))
        .load(&mut admin)
        .expect("pg_namespace");
        assert!(left.is_empty(), "schema {name} survived Drop");
    }
}
