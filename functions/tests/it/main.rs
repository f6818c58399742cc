//! The Lambda handlers' integration tests, one binary (see crates/lake/tests/it).
mod compactor;
mod ingest;
mod query;
mod settings;
