//! Webhooks (API.md "Webhooks"): account events for the services around latchkey, signed
//! per Standard Webhooks and delivered at least once.
//!
//! An event is written to `webhook_outbox` in the transaction of the change that causes
//! it, one row per endpoint that wants it ([`Webhooks::record`]): a change that rolls back
//! sends nothing, one that commits always sends. The worker ([`worker`]) delivers them.

use std::time::Duration;

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
