//! Tsunagu's Postgres wire endpoint: psql, Python/R drivers and BI tools
//! talk to the engine through it.
//!
//! Layered as: [`encode`] (Arrow ↔ Postgres types, pure), [`errors`]
//! (SQLSTATE codes), [`commands`] (session statements clients send:
//! `SET`, `SHOW`, `BEGIN`), [`handler`] (the protocol handlers, one engine
//! session per connection), [`logins`] (throttling and lockout of failed
//! logins), [`limits`] (connections and statements per user),
//! [`server`] (listener and shutdown). The engine
//! knows nothing of any of this.

pub mod commands;
pub mod config;
pub mod encode;
pub mod errors;
pub mod executor;
pub mod handler;
pub mod limits;
pub mod logins;
pub mod pg_catalog;
pub mod server;
