//! A request held in flight on purpose: its head is sent and read by the replica (it
//! answered `100 Continue`), its body is sent only when the test says so. A replica that
//! receives SIGTERM meanwhile must still answer it (OPERATIONS.md: "SIGTERM drains
//! in-flight requests").

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(30);

pub struct InFlight {
    conn: BufReader<TcpStream>,
    addr: String,
    body: String,
}

impl InFlight {
    /// Sends the head of `POST path` with `body` to `base` (`http://host:port`) and waits
    /// for the replica's `100 Continue`.
    pub async fn start(base: &str, path: &str, body: &Value) -> Self {
        let addr = base.trim_start_matches("http://").to_owned();
        let body = body.to_string();
        let stream = TcpStream::connect(&addr).await.expect("connect");
        let mut conn = BufReader::new(stream);
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            body.len()
        );
        conn.get_mut()
            .write_all(head.as_bytes())
            .await
            .expect("send head");
        let interim = tokio::time::timeout(WAIT, async {
            let mut lines = Vec::new();
            loop {
                let mut line = String::new();
                conn.read_line(&mut line).await.expect("read 100 Continue");
                if line.trim().is_empty() {
                    return lines;
                }
                lines.push(line);
            }
        })
        .await
        .expect("no 100 Continue");
        assert!(
            interim.first().is_some_and(|l| l.contains(" 100 ")),
            "{interim:?}"
        );
        Self { conn, addr, body }
    }

    /// Once the replica refuses new connections (it got SIGTERM and closed its
    /// listener), sends the body; the status and JSON body of the answer.
    pub async fn finish_after_listener_closed(mut self) -> (u16, Value) {
        let deadline = Instant::now() + WAIT;
        loop {
            match TcpStream::connect(&self.addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                _ => assert!(Instant::now() < deadline, "{} still listening", self.addr),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let conn = self.conn.get_mut();
        conn.write_all(self.body.as_bytes())
            .await
            .expect("send body");
        let mut answer = String::new();
        tokio::time::timeout(WAIT, self.conn.read_to_string(&mut answer))
            .await
            .expect("no answer")
            .expect("read answer");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {answer:?}"));
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }
}
