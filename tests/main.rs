//! Tsunagu's integration tests, in one binary: stores opened for real,
//! SQL behaviour in `.slt` files, the `tsunagu` command, and real
//! Postgres clients (psql, psycopg) against a served store.

mod cli;
mod clients;
mod cluster;
mod common;
mod dashboard;
mod deliveries;
mod graph;
mod malformed;
mod privacy;
mod privacy_attacks;
mod projects;
mod quality;
mod reference;
mod secure;
mod slt;
mod stores;
mod studies;
mod wire;
