//! latchkey: a JWT-issuing identity service. The binary (`main.rs`) only parses the command
//! line; everything else lives here so the tests drive the same code the binary runs.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod account_changes;
pub mod accounts;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod console;
pub mod db;
pub mod domain;
pub mod email;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod webhooks;
