//! A webhook receiver in the test process: just enough HTTP/1.1 to take latchkey's
//! deliveries (a POST with `Content-Length`), keep each one, and answer 204.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// One delivery as received: the Standard Webhooks headers and the body.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
}

type Inbox = Arc<Mutex<Vec<Delivery>>>;

pub struct WebhookSink {
    pub port: u16,
    received: Inbox,
    server: JoinHandle<()>,
}

impl WebhookSink {
    /// A receiver on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the webhook receiver");
        let port = listener.local_addr().expect("receiver address").port();
        let received = Inbox::default();
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&received)));
        Self {
            port,
            received,
            server,
        }
    }

    /// Every delivery received so far, in arrival order.
    pub fn received(&self) -> Vec<Delivery> {
        self.received.lock().expect("inbox lock").clone()
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn accept_loop(listener: TcpListener, received: Inbox) {
    // Owned here, so aborting the server also ends its connections.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        let received = Arc::clone(&received);
        connections.spawn(async move {
            if let Err(e) = serve(stream, &received).await {
                eprintln!("webhook receiver: {e}");
            }
        });
    }
}

/// Requests of one connection, in turn, until the client closes it.
async fn serve(stream: TcpStream, received: &Mutex<Vec<Delivery>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            headers.push(line.to_owned());
        }
        let header = |name: &str| {
            headers
                .iter()
                .filter_map(|h| h.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        let length: usize = header("content-length")
            .parse()
            .map_err(|_| std::io::Error::other(format!("no Content-Length in {headers:?}")))?;
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        received.lock().expect("inbox lock").push(Delivery {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        write.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await?;
        if header("connection").eq_ignore_ascii_case("close") {
            return Ok(());
        }
    }
}
