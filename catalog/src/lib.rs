//! Tsunagu's catalog: what a store *is* to the engine.
//!
//! A store is a folder of delivered sources described by `rwd.toml`
//! ([`manifest`]). Opening it ([`Store::open`]) finds each source's tables
//! ([`files`]), checks them against the OMOP CDM ([`cdm`], [`tables`]),
//! converts CSV deliveries once into typed Parquet ([`csv_import`]), and
//! builds the person linkage index ([`linkage`]) that gives every linked
//! person one dense `person_id` across sources. Everything derived lives in
//! a state folder outside the store ([`state`]) and is reused while the
//! store's files are unchanged.
//!
//! The store is shown in SQL as one schema per source, `vocab`, and
//! `linked` (unions across sources); [`Store::register`] puts those schemas
//! on any DataFusion `SessionContext`. The catalog knows nothing of the
//! engine's sessions, privacy rules or the wire protocol.

pub mod cdm;
pub mod csv_import;
pub mod deliveries;
pub mod error;
pub mod files;
mod key_set;
pub mod layout;
pub mod linkage;
pub mod manifest;
pub mod object_storage;
pub mod prefectures;
pub mod source_codes;
pub mod state;
pub mod store;
pub mod tables;
pub mod views;

pub use deliveries::Opened;
pub use error::{CatalogError, Result};
pub use manifest::Manifest;
pub use store::{LINKED_SCHEMA, ShownTable, Store, StoreOptions, VOCAB_SCHEMA};
