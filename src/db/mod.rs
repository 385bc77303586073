//! Storage: one schema and one set of queries for SQLite (the embedded default) and
//! PostgreSQL (production, several replicas), through diesel's `MultiConnection`.
//!
//! Write transactions always begin with a write statement. On SQLite that takes the write
//! lock up front, so concurrent writers wait on `busy_timeout` instead of failing with
//! "database is locked" when a read lock cannot be upgraded; on PostgreSQL the same
//! statement takes the row lock, so the read that follows cannot race another writer.

mod migrations;
pub mod models;
mod pool;
pub mod schema;

pub use pool::{Database, DatabaseUrl, DbConnection, DbError};
