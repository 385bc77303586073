//! Outgoing email: what is sent (`templates`) and how (`Mailer` backends).
//!
//! Delivery never fails the request that caused it: errors are logged.

pub mod templates;

use std::path::PathBuf;

use lettre::message::{Mailbox, MultiPart};

use crate::config::{EmailBackend, EmailSettings};

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
    #[error("`email.backend = smtp` arrives with the email issue; use `console` or `file`")]
    SmtpUnavailable,
    #[error("`email.file_dir` ({0}): {1}")]
    FileDir(PathBuf, String),
}

enum Backend {
    Console,
    File(PathBuf),
}

pub struct Mailer {
    from: Mailbox,
    backend: Backend,
}

impl Mailer {
    pub fn new(settings: &EmailSettings) -> Result<Self, MailError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| MailError::From(format!("{e}")))?;
        let backend = match settings.backend {
            EmailBackend::Console => Backend::Console,
            EmailBackend::File => {
                std::fs::create_dir_all(&settings.file_dir)
                    .map_err(|e| MailError::FileDir(settings.file_dir.clone(), e.to_string()))?;
                Backend::File(settings.file_dir.clone())
            }
            EmailBackend::Smtp => return Err(MailError::SmtpUnavailable),
        };
        Ok(Self { from, backend })
    }

    /// Hands the message to the backend; failures are logged, never returned.
    pub async fn deliver(&self, email: Email) {
        let rendered = match self.render(&email) {
            Ok(bytes) => bytes,
            Err(e) => {
                log::error!(target: "latchkey::email", "cannot build message: {e}");
                return;
            }
        };
        match &self.backend {
            Backend::Console => {
                log::info!(target: "latchkey::email", "email (console backend):\n{}", String::from_utf8_lossy(&rendered));
            }
            Backend::File(dir) => {
                let path = dir.join(format!(
                    "{}-{}.eml",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f"),
                    uuid::Uuid::now_v7().simple()
                ));
                match tokio::task::spawn_blocking(move || {
                    std::fs::write(&path, rendered).map(|()| path)
                })
                .await
                {
                    Ok(Ok(path)) => {
                        log::info!(target: "latchkey::email", "email written to {}", path.display())
                    }
                    Ok(Err(e)) => {
                        log::error!(target: "latchkey::email", "cannot write email file: {e}")
                    }
                    Err(e) => log::error!(target: "latchkey::email", "email task failed: {e}"),
                }
            }
        }
    }

    /// RFC 5322 text with a plain-text body and an HTML alternative.
    fn render(&self, email: &Email) -> Result<Vec<u8>, String> {
        let to: Mailbox = email.to.parse().map_err(|e| format!("recipient: {e}"))?;
        lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                email.html.clone(),
            ))
            .map(|m| m.formatted())
            .map_err(|e| e.to_string())
    }
}
