//! One delivery attempt: a signed `POST` on a new connection (TLS for `https://`), no
//! redirect followed, at most [`ANSWER_BYTES`] of the answer read, all of it within
//! `webhooks.timeout`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::Endpoint;

/// How much of a receiver's answer is kept (for the log and `last_error`).
pub const ANSWER_BYTES: usize = 1024;

/// Where an endpoint's URL leads, parsed once when the configuration is loaded.
#[derive(Debug, Clone)]
pub struct Target {
    tls: bool,
    /// For the connection and TLS: without an IPv6 literal's brackets.
    host: String,
    port: u16,
    /// The `Host` header.
    authority: String,
    path_and_query: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("must start with http:// or https://".into()),
        };
        let authority = uri.authority().ok_or("has no host")?;
        if authority.as_str().contains('@') {
            return Err("must not hold credentials (sign with the secret instead)".into());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        Ok(Self {
            tls,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        })
    }
}

/// Sends deliveries: the TLS set-up and the time limit they share.
#[derive(Clone)]
pub struct Sender {
    tls: TlsConnector,
    timeout: Duration,
}

/// What the receiver answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The start of the body, lossily decoded.
    pub body: String,
}

impl Answer {
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Sender {
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    /// Sends event `id` with `body` to `endpoint`, signed now. `Err` when no answer came
    /// (refused, reset, a TLS failure, timed out).
    pub async fn send(&self, endpoint: &Endpoint, id: &str, body: &str) -> Result<Answer, String> {
        let timestamp = chrono::Utc::now().timestamp();
        let target = &endpoint.target;
        let request = Request::post(target.path_and_query.as_str())
            .header(HOST, target.authority.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("latchkey/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                endpoint.secret.sign(id, timestamp, body),
            )
            .body(Full::new(Bytes::from(body.to_owned())))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        tokio::time::timeout(self.timeout, self.exchange(target, request))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)))
    }

    async fn exchange(
        &self,
        target: &Target,
        request: Request<Full<Bytes>>,
    ) -> Result<Answer, String> {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        // Two small writes (head, body) must not wait for each other's ACK.
        tcp.set_nodelay(true)
            .map_err(|e| format!("cannot connect: {e}"))?;
        if !target.tls {
            return exchange_on(TokioIo::new(tcp), request).await;
        }
        let name = ServerName::try_from(target.host.clone())
            .map_err(|e| format!("not a TLS server name: {e}"))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        exchange_on(TokioIo::new(tls), request).await
    }
}

/// One request and the start of its answer on a fresh connection, closed afterwards.
async fn exchange_on<S>(io: S, request: Request<Full<Bytes>>) -> Result<Answer, String>
where
    S: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    // The connection is driven beside the request, and dropped with it.
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut kept = Vec::new();
        while kept.len() < ANSWER_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => kept.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d)),
                // An answer cut short still has its status.
                Some(Err(_)) | None => break,
            }
        }
        kept.truncate(ANSWER_BYTES);
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&kept).into_owned(),
        })
    };
    tokio::pin!(connection, exchange);
    tokio::select! {
        biased;
        answer = &mut exchange => answer,
        ended = &mut connection => match ended {
            Err(e) => Err(format!("HTTP: {e}")),
            // Closed after answering (HTTP/1.0, `Connection: close`): the answer is in.
            Ok(()) => exchange.await,
        },
    }
}
