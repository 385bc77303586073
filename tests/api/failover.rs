//! PostgreSQL going away and coming back, as the service sees a restart: every connection
//! cut, new ones refused, then accepted again. A TCP proxy in the test stands between the
//! service and the server, so the test can do that to it without touching the server
//! other tests share. Meanwhile `/readyz` says 503, requests fail fast with 503 and
//! `Retry-After` (none waits longer than `database.connect_timeout` and a margin), and once
//! the server is back the pool recovers by itself.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::{Backend, TestApp, TestUser, assert_problem, header, json_ok, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_fails_fast_and_recovers_by_itself() {
    let Some(Backend::Postgres { url }) = Backend::postgres() else {
        return;
    };
    let upstream: SocketAddr = "127.0.0.1:5432".parse().expect("address");
    assert!(
        url.contains("127.0.0.1:5432"),
        "the proxy stands in for {upstream}"
    );
    let mut proxy = Proxy::start(upstream).await;
    let via = proxy.address.to_string();
    let connect_timeout = Duration::from_secs(2);
    let app = spawn_app_with(Backend::Postgres { url }, move |s| {
        let direct = s.database.url.expose().clone();
        s.database.url = latchkey::config::Secret(direct.replace("127.0.0.1:5432", &via));
        s.database.connect_timeout = connect_timeout;
    })
    .await;
    let user = TestUser::create(&app).await;
    json_ok(app.get_me(&user.access_token).await, 200).await;

    proxy.stop();
    // Not ready, and every request that needs the database fails fast and says so.
    assert_eq!(app.get("/readyz").await.status(), 503);
    for _ in 0..3 {
        let started = Instant::now();
        let resp = app.get_me(&user.access_token).await;
        assert!(
            started.elapsed() < connect_timeout + Duration::from_secs(3),
            "a request hung for {:?}",
            started.elapsed()
        );
        assert!(
            header(&resp, "retry-after").is_some(),
            "503 without Retry-After"
        );
        assert_problem(resp, 503, "service_unavailable").await;
    }
    let resp = app.login_username(&user.username, &user.password).await;
    assert_problem(resp, 503, "service_unavailable").await;
    // What needs no database still works.
    assert_eq!(app.get("/healthz").await.status(), 200);

    proxy.start_again().await;
    recovers(&app, &user).await;
}

/// The pool finds the server again by itself, within seconds.
async fn recovers(app: &TestApp, user: &TestUser) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = app.get("/readyz").await.status() == 200;
        if ready && app.get_me(&user.access_token).await.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not recovered 15 s after the server came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    json_ok(
        app.login_username(&user.username, &user.password).await,
        200,
    )
    .await;
}

/// A TCP proxy to `upstream` that can be stopped (all connections cut, the port closed)
/// and started again on the same port.
struct Proxy {
    address: SocketAddr,
    upstream: SocketAddr,
    accepting: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let mut proxy = Self {
            address,
            upstream,
            accepting: None,
            connections: Arc::default(),
        };
        proxy.accept_on(listener);
        proxy
    }

    fn accept_on(&mut self, listener: TcpListener) {
        let (upstream, connections) = (self.upstream, Arc::clone(&self.connections));
        self.accepting = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                connections.lock().expect("lock").push(relay);
            }
        }));
    }

    /// As a server shutting down: the port closes and every connection is cut.
    fn stop(&mut self) {
        if let Some(accepting) = self.accepting.take() {
            accepting.abort();
        }
        for relay in self.connections.lock().expect("lock").drain(..) {
            relay.abort();
        }
    }

    async fn start_again(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.address).await {
                Ok(listener) => break listener,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "cannot bind {} again: {e}",
                    self.address
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.accept_on(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}
