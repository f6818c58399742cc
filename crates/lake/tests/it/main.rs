//! The lake's integration tests, one binary: each test binary links DataFusion
//! whole (~250 MB in a debug build), so one per crate keeps CI's disk and link
//! time down.
mod calls;
mod compaction;
mod delta;
mod queries;
mod read_cache;
#[path = "../../../../tests/delta/read_delta.rs"]
mod readers;
mod support;
