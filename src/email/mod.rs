//! Outgoing email: what is sent (`templates`), how (`Mailer`: console, file or SMTP), and
//! when (`worker`: drains the database outbox in the background with retries).
//!
//! Requests only queue messages, so a slow or unreachable mail server never delays or fails
//! a request, and a message queued before the process stops is delivered after it restarts.

pub mod templates;
pub mod worker;

use std::io::Write;
use std::path::{Path, PathBuf};

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::{EmailBackend, EmailSettings, SmtpTls};

/// A message ready to send: both bodies are rendered.
#[derive(Clone)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("`email.from`: {0}")]
    From(String),
    #[error("`email.smtp.host`: {0}")]
    Smtp(String),
    #[error("`email.file_dir` ({0}): {1}")]
    FileDir(PathBuf, String),
}

enum Backend {
    Console,
    File(PathBuf),
    Smtp(Box<AsyncSmtpTransport<Tokio1Executor>>),
}

pub struct Mailer {
    from: Mailbox,
    backend: Backend,
}

/// An SMTP conversation that hangs is a failed attempt, retried later.
const SMTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

impl Mailer {
    pub fn new(settings: &EmailSettings) -> Result<Self, MailError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| MailError::From(format!("{e}")))?;
        let backend = match settings.backend {
            EmailBackend::Console => Backend::Console,
            EmailBackend::File => {
                create_private_dir(&settings.file_dir)
                    .map_err(|e| MailError::FileDir(settings.file_dir.clone(), e.to_string()))?;
                Backend::File(settings.file_dir.clone())
            }
            EmailBackend::Smtp => Backend::Smtp(Box::new(smtp_transport(settings)?)),
        };
        Ok(Self { from, backend })
    }

    /// One delivery attempt; the error says why it failed (it is logged and stored).
    pub async fn deliver(&self, email: &Email) -> Result<(), String> {
        let message = self.message(email)?;
        match &self.backend {
            Backend::Console => {
                // For a person at a terminal: the text part as it reads, not the MIME
                // encoding of it, whose quoted-printable soft breaks cut links in two.
                log::info!(target: "latchkey::email",
                    "email (console backend)\nFrom: {}\nTo: {}\nSubject: {}\n\n{}",
                    self.from, email.to, email.subject, email.text);
                Ok(())
            }
            Backend::File(dir) => {
                let name = format!(
                    "{}-{}.eml",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f"),
                    uuid::Uuid::now_v7().simple()
                );
                let path = dir.join(name);
                let bytes = message.formatted();
                tokio::task::spawn_blocking(move || write_private(&path, &bytes))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("cannot write email file: {e}"))
            }
            Backend::Smtp(transport) => transport
                .send(message)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        }
    }

    /// RFC 5322 message with a plain-text body and an HTML alternative.
    fn message(&self, email: &Email) -> Result<lettre::Message, String> {
        let to: Mailbox = email.to.parse().map_err(|e| format!("recipient: {e}"))?;
        lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                email.html.clone(),
            ))
            .map_err(|e| e.to_string())
    }
}

/// Creates the `file` backend's directory, and any missing parent, readable by the owner
/// only: the messages in it carry activation and reset links, which are bearer secrets.
/// A directory that already exists keeps the mode the operator gave it.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes a new message file readable by its owner only (see [`create_private_dir`]).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

fn smtp_transport(
    settings: &EmailSettings,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let smtp = &settings.smtp;
    let builder = match smtp.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|e| MailError::Smtp(e.to_string()))?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
            .map_err(|e| MailError::Smtp(e.to_string()))?,
    };
    let mut builder = builder.port(smtp.port).timeout(Some(SMTP_TIMEOUT));
    if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().clone()));
    }
    Ok(builder.build())
}
