//! The HTTP API's integration tests, one binary (see crates/lake/tests/it).
//! hostile_sql.rs stays a binary of its own: it measures the process's peak
//! memory, which tests running beside it in one process would raise.
mod api;
mod calls;
mod homer;
mod query_bounds;
#[path = "../../../lake/tests/it/support.rs"]
mod support;
