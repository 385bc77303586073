//! Storage: one schema and one set of queries for SQLite (the embedded default) and
//! PostgreSQL (production, several replicas), through diesel's `MultiConnection`.
//!
//! On SQLite one thread does all of the process's writing, committing the writes queued
//! meanwhile together (`writer`). Write transactions always begin with a write statement:
//! on PostgreSQL that takes the row lock, so the read that follows cannot race another
//! writer; on SQLite it takes the write lock up front, so another process (the CLI) waits
//! on `busy_timeout` instead of failing when a read lock cannot be upgraded.

mod fixed_sql;
mod migrations;
pub mod models;
mod pool;
pub mod schema;
mod writer;

pub use pool::{Database, DatabaseUrl, DbConnection, DbError};
