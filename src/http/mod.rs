//! The HTTP API of API.md: errors as problem+json, extractors, routes, sessions.

pub mod error;
pub mod extractors;
mod mailing;
mod pagination;
pub mod routes;
mod session;
pub mod state;
pub mod views;
