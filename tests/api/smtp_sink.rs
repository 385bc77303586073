//! An in-process SMTP server for the tests: just enough of RFC 5321 (no TLS, no AUTH)
//! for lettre to deliver to it. It keeps every message it accepts, envelope included.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::helpers::{Email, EmailLink, poll_until};

/// One accepted message.
#[derive(Debug, Clone)]
pub struct SmtpMessage {
    /// Envelope sender (`MAIL FROM`), without the angle brackets.
    pub mail_from: String,
    /// Envelope recipients (`RCPT TO`), without the angle brackets.
    pub rcpt_to: Vec<String>,
    /// The DATA, dot-stuffing undone.
    pub email: Email,
}

impl SmtpMessage {
    /// Whether `address` is an envelope recipient (case-insensitively).
    pub fn is_for(&self, address: &str) -> bool {
        self.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(address))
    }
}

#[derive(Clone, Copy)]
enum Mode {
    /// Accepts every message.
    Accept,
    /// Greets with `421` (service not available) and hangs up: a transient failure.
    Unavailable,
}

type Inbox = Arc<Mutex<Vec<SmtpMessage>>>;

pub struct SmtpSink {
    pub port: u16,
    messages: Inbox,
    connections: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl SmtpSink {
    /// A sink on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// A sink on `port` (e.g. one the service was configured with while nothing listened).
    pub async fn start_on(port: u16) -> Self {
        Self::spawn(port, Mode::Accept).await
    }

    /// A server on `port` that refuses every delivery with `421` and closes the connection.
    pub async fn start_unavailable_on(port: u16) -> Self {
        Self::spawn(port, Mode::Unavailable).await
    }

    async fn spawn(port: u16, mode: Mode) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("cannot bind the SMTP sink to port {port}: {e}"));
        let port = listener.local_addr().expect("sink address").port();
        let messages = Inbox::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let server = tokio::spawn(accept_loop(
            listener,
            mode,
            Arc::clone(&messages),
            Arc::clone(&connections),
        ));
        SmtpSink {
            port,
            messages,
            connections,
            server,
        }
    }

    /// Closes the listening socket (and every open session) before returning, so the
    /// port can be bound again.
    pub async fn stop(mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
    }

    /// Every message accepted so far, oldest first.
    pub fn messages(&self) -> Vec<SmtpMessage> {
        self.messages.lock().expect("sink inbox poisoned").clone()
    }

    /// Messages whose envelope names `address` as a recipient.
    pub fn messages_for(&self, address: &str) -> Vec<SmtpMessage> {
        self.messages()
            .into_iter()
            .filter(|m| m.is_for(address))
            .collect()
    }

    /// TCP connections accepted so far (delivery attempts).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Polls the received messages until `found` extracts something from them.
    pub async fn wait_for<T>(&self, what: &str, found: impl Fn(&[SmtpMessage]) -> Option<T>) -> T {
        poll_until(what, || {
            let messages = self.messages();
            found(&messages).ok_or(messages)
        })
        .await
    }

    /// Waits for a message to `to` with a `…<marker>{uid}/{token}` link; the newest wins.
    pub async fn link(&self, to: &str, marker: &str) -> EmailLink {
        self.wait_for(
            &format!("message to {to} with a {marker} link"),
            |messages| {
                messages
                    .iter()
                    .rev()
                    .filter(|m| m.is_for(to))
                    .find_map(|m| m.email.link(marker))
            },
        )
        .await
    }

    /// Waits for a message to `to` whose subject contains `words` (case-insensitively).
    pub async fn message_with_subject(&self, to: &str, words: &str) -> SmtpMessage {
        let words = words.to_lowercase();
        self.wait_for(&format!("message to {to} about `{words}`"), |messages| {
            messages
                .iter()
                .find(|m| m.is_for(to) && m.email.subject.to_lowercase().contains(&words))
                .cloned()
        })
        .await
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A port nothing listens on (as long as nobody else picks it in the meantime).
pub fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot find a free port")
        .port()
}

async fn accept_loop(
    listener: TcpListener,
    mode: Mode,
    messages: Inbox,
    connections: Arc<AtomicUsize>,
) {
    // Owned here, so aborting the server task also ends its sessions.
    let mut sessions = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("SMTP sink: accept failed: {e}");
                continue;
            }
        };
        connections.fetch_add(1, Ordering::SeqCst);
        while sessions.try_join_next().is_some() {}
        let messages = Arc::clone(&messages);
        sessions.spawn(async move {
            let result = match mode {
                Mode::Accept => session(stream, &messages).await,
                Mode::Unavailable => refuse(stream).await,
            };
            if let Err(e) = result {
                eprintln!("SMTP sink: session failed: {e}");
            }
        });
    }
}

async fn refuse(mut stream: TcpStream) -> std::io::Result<()> {
    stream
        .write_all(b"421 localhost Service not available\r\n")
        .await?;
    stream.shutdown().await
}

async fn session(stream: TcpStream, messages: &Mutex<Vec<SmtpMessage>>) -> std::io::Result<()> {
    const OK: &[u8] = b"250 OK\r\n";
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    write.write_all(b"220 localhost test SMTP sink\r\n").await?;
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    while let Some(line) = read_line(&mut reader).await? {
        let command = String::from_utf8_lossy(&line);
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-localhost\r\n250 OK\r\n",
            "HELO" => b"250 localhost\r\n",
            "MAIL" => {
                mail_from = angle_address(&command);
                rcpt_to.clear();
                OK
            }
            "RCPT" => {
                rcpt_to.push(angle_address(&command));
                OK
            }
            "DATA" => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let data = read_data(&mut reader).await?;
                messages
                    .lock()
                    .expect("sink inbox poisoned")
                    .push(SmtpMessage {
                        mail_from: std::mem::take(&mut mail_from),
                        rcpt_to: std::mem::take(&mut rcpt_to),
                        email: Email::parse(&data),
                    });
                OK
            }
            "RSET" => {
                mail_from.clear();
                rcpt_to.clear();
                OK
            }
            "NOOP" => OK,
            "QUIT" => {
                write.write_all(b"221 Bye\r\n").await?;
                break;
            }
            _ => b"502 Command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
    Ok(())
}

/// One line including its terminator; `None` at end of stream.
async fn read_line(reader: &mut (impl AsyncBufRead + Unpin)) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let n = reader.read_until(b'\n', &mut line).await?;
    Ok((n > 0).then_some(line))
}

/// The message after `DATA`, up to the `.` line, with dot-stuffing (RFC 5321 4.5.2) undone.
async fn read_data(reader: &mut (impl AsyncBufRead + Unpin)) -> std::io::Result<String> {
    let mut data = Vec::new();
    loop {
        let line = read_line(reader).await?.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "end of stream in DATA")
        })?;
        if line == b".\r\n" || line == b".\n" {
            return Ok(String::from_utf8_lossy(&data).into_owned());
        }
        data.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
    }
}

/// `a@b` from `MAIL FROM:<a@b> SIZE=…` or `RCPT TO:<a@b>`.
fn angle_address(command: &str) -> String {
    let after_colon = command.split_once(':').map_or("", |(_, rest)| rest);
    let start = after_colon.find('<').map_or(0, |i| i + 1);
    let rest = &after_colon[start..];
    let end = rest.find('>').unwrap_or(rest.len());
    rest[..end].trim().to_owned()
}

/// Checks of the sink itself, with lettre as the client, so a failing API test is never
/// an artefact of the sink.
mod self_tests {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    use super::{SmtpSink, angle_address};

    #[test]
    fn parses_envelope_addresses() {
        assert_eq!(
            angle_address("MAIL FROM:<a@b.test> BODY=8BITMIME\r\n"),
            "a@b.test"
        );
        assert_eq!(
            angle_address("RCPT TO: <Ada@Example.com>\r\n"),
            "Ada@Example.com"
        );
        assert_eq!(angle_address("MAIL FROM:<>\r\n"), "");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn receives_lettre_messages_and_undoes_dot_stuffing() {
        let sink = SmtpSink::start().await;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(sink.port)
            .build();
        for n in 0..2 {
            let message = Message::builder()
                .from("latchkey <no-reply@localhost>".parse().unwrap())
                .to(format!("ada{n}@example.com").parse().unwrap())
                .subject("Hello")
                .body(String::from("line one\n.leading dot\n..two dots\n"))
                .unwrap();
            transport.send(message).await.expect("lettre delivery");
        }
        let messages = sink.messages();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].mail_from, "no-reply@localhost");
        assert_eq!(messages[1].rcpt_to, ["ada1@example.com"]);
        assert!(messages[1].is_for("ADA1@example.com"));
        assert_eq!(messages[1].email.subject, "Hello");
        assert!(
            messages[1]
                .email
                .text
                .contains("line one\n.leading dot\n..two dots\n"),
            "{:?}",
            messages[1].email.text
        );
        assert!(sink.connections() >= 1);
    }
}
