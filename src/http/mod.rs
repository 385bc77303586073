//! The HTTP API of API.md: errors as problem+json, extractors, routes, sessions.

mod client_ip;
pub mod error;
pub mod extractors;
mod mailing;
pub mod observe;
mod openapi;
mod pagination;
pub mod routes;
mod session;
pub mod state;
pub mod throttle;
pub mod views;
