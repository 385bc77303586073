//! The HTTP API of API.md: errors as problem+json, extractors, routes, sessions.

pub mod error;
pub mod extractors;
mod mailing;
pub mod routes;
mod session;
pub mod state;
pub mod views;
