//! The HEP lake: Arrow schema, Parquet files on object_store partitioned by
//! HEP type and hour, compaction, and read-only SQL through DataFusion.
//! The same code serves a local directory and S3.

mod bounded_functions;
pub mod calls;
pub mod catalog;
pub mod compact;
mod cooperative;
pub mod delta;
pub mod durable_local;
pub mod engine;
mod error;
pub mod listing_cache;
mod lookup;
pub mod merge;
pub mod parquet_io;
pub mod paths;
pub mod quarantine;
pub mod read_cache;
pub mod rows;
pub mod schema;
pub mod settings;
pub mod spans;
mod sql_limits;
pub mod store;
pub mod table;
pub mod time_range;
pub mod writer;

pub use error::{LakeError, Result};

/// The log filter of binaries that use the lake, when `RUST_LOG` says none:
/// info, less the Delta kernel's lines (a line per snapshot it builds, and an
/// error for a table not yet created, which `delta` handles).
pub const LOG_FILTER: &str = "info,buoyant_kernel=off,deltalake_core=warn";
