//! Webhooks (API.md "Webhooks"): account events for the services around latchkey, signed
//! per Standard Webhooks and delivered at least once.
//!
//! An event is written to `webhook_outbox` in the transaction of the change that causes
//! it, one row per endpoint that wants it ([`Webhooks::record`]): a change that rolls back
//! sends nothing, one that commits always sends. The worker ([`worker`]) delivers them.
//! With no endpoint configured, recording is free: nothing is rendered or written.

pub mod delivery;
pub mod signing;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::config::WebhookSettings;
use crate::db::models::users::User;
use crate::db::models::{groups, webhook_outbox};
use crate::db::{DbConnection, DbError};
use crate::http::views::UserView;
use delivery::Target;
use signing::Secret;

/// Every event type, as `webhooks.endpoints[].events` names them.
pub const EVENT_TYPES: [&str; 8] = [
    "user.created",
    "user.activated",
    "user.approved",
    "user.updated",
    "user.deleted",
    "user.password_changed",
    "session.created",
    "session.revoked",
];

/// Longest wait between two attempts of one delivery.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// What happened to a user, for the events that carry the whole user object.
#[derive(Debug, Clone, Copy)]
pub enum UserChange {
    Created,
    Activated,
    Approved,
    Updated,
}

/// An event, from the rows of the change that caused it.
pub enum Event<'a> {
    /// `user` as the change left it.
    User(UserChange, &'a User),
    /// `user` as it was before its deletion.
    UserDeleted(&'a User),
    PasswordChanged {
        user_id: &'a str,
    },
    /// `amr` space-separated, as stored.
    SessionCreated {
        user_id: &'a str,
        session_id: &'a str,
        amr: &'a str,
    },
    SessionRevoked {
        user_id: &'a str,
        session_id: &'a str,
        reason: &'a str,
    },
}

impl Event<'_> {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::User(UserChange::Created, _) => "user.created",
            Event::User(UserChange::Activated, _) => "user.activated",
            Event::User(UserChange::Approved, _) => "user.approved",
            Event::User(UserChange::Updated, _) => "user.updated",
            Event::UserDeleted(_) => "user.deleted",
            Event::PasswordChanged { .. } => "user.password_changed",
            Event::SessionCreated { .. } => "session.created",
            Event::SessionRevoked { .. } => "session.revoked",
        }
    }

    /// The event's `data`; the user object is read with its groups, in the transaction.
    fn data(&self, conn: &mut DbConnection) -> Result<Value, DbError> {
        Ok(match self {
            Event::User(_, user) => {
                let groups = groups::names_of(conn, &user.id)?;
                serde_json::to_value(UserView::new(user, groups)).unwrap_or_default()
            }
            Event::UserDeleted(user) => {
                json!({"id": user.id, "username": user.username, "email": user.email})
            }
            Event::PasswordChanged { user_id } => json!({ "id": user_id }),
            Event::SessionCreated {
                user_id,
                session_id,
                amr,
            } => json!({
                "user_id": user_id,
                "session_id": session_id,
                "amr": amr.split_whitespace().collect::<Vec<_>>(),
            }),
            Event::SessionRevoked {
                user_id,
                session_id,
                reason,
            } => json!({"user_id": user_id, "session_id": session_id, "reason": reason}),
        })
    }
}

/// The body every attempt of an event sends, byte for byte.
pub fn body(kind: &str, at: DateTime<Utc>, data: &Value) -> String {
    json!({
        "type": kind,
        "timestamp": at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "data": data,
    })
    .to_string()
}

/// A configured endpoint: where to deliver, what, and the key to sign with.
#[derive(Debug)]
pub struct Endpoint {
    pub url: String,
    pub target: Target,
    pub secret: Secret,
    /// `None`: every event.
    events: Option<Vec<String>>,
}

impl Endpoint {
    fn wants(&self, kind: &str) -> bool {
        self.events
            .as_ref()
            .is_none_or(|events| events.iter().any(|e| e == kind))
    }
}

/// The configured endpoints, and the worker's wake-up call: cheap to clone, handed to
/// every operation that records events.
#[derive(Clone, Debug, Default)]
pub struct Webhooks {
    endpoints: Arc<[Endpoint]>,
    wake: Arc<Notify>,
}

impl Webhooks {
    /// Reads every endpoint's secret; an error names the key of the one that fails.
    pub fn load(settings: &WebhookSettings) -> Result<Self, String> {
        let endpoints = settings
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let target = Target::parse(&e.url)
                    .map_err(|why| format!("`webhooks.endpoints[{i}].url`: {why}"))?;
                let secret = Secret::read(&e.secret)
                    .map_err(|why| format!("`webhooks.endpoints[{i}].secret`: {why}"))?;
                let every = e.events.iter().any(|kind| kind == "*");
                Ok(Endpoint {
                    url: e.url.clone(),
                    target,
                    secret,
                    events: (!every).then(|| e.events.clone()),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            endpoints: endpoints.into(),
            wake: Arc::default(),
        })
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn endpoint(&self, url: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.url == url)
    }

    /// Queues `event` for every endpoint that wants it, on `conn`: call it inside the
    /// transaction of the change, after the change.
    pub fn record(
        &self,
        conn: &mut DbConnection,
        event: &Event<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let kind = event.kind();
        let urls: Vec<&str> = self
            .endpoints
            .iter()
            .filter(|e| e.wants(kind))
            .map(|e| e.url.as_str())
            .collect();
        if urls.is_empty() {
            return Ok(());
        }
        let body = body(kind, now, &event.data(conn)?);
        let event_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
        webhook_outbox::enqueue(conn, &event_id, kind, &body, &urls, now)?;
        // Before the commit: on SQLite the worker's claim queues behind this write; on
        // PostgreSQL a claim that misses it finds it at the next poll.
        self.wake.notify_one();
        Ok(())
    }
}
