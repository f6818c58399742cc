//! The Lambda handlers' integration tests, one binary (see crates/lake/tests/it).
mod ingest;
mod query;
