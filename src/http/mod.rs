//! The HTTP API of API.md: errors as problem+json, extractors, routes, sessions.

pub mod account_limit;
pub mod body;
pub mod browser;
pub mod client_ip;
pub mod error;
pub mod extractors;
pub mod fields;
pub mod mailing;
pub mod observe;
mod openapi;
mod pagination;
pub mod routes;
mod session;
pub mod shared_throttle;
pub mod state;
pub mod throttle;
pub mod views;
