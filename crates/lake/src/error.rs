use thiserror::Error;

#[derive(Debug, Error)]
pub enum LakeError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("compaction marker {path}: {source}")]
    Marker {
        path: String,
        source: serde_json::Error,
    },
    /// A compaction log entry written by a newer HEPop: which files it makes
    /// visible may follow rules this reader does not know.
    #[error(
        "compaction log {path} is format {found}; this HEPop reads format {supported} at most: upgrade it"
    )]
    NewerLogFormat {
        path: String,
        found: u32,
        supported: u32,
    },
    /// A file that cannot be decoded: compaction moves it to quarantine.
    #[error("unreadable file {path}: {reason}")]
    Unreadable {
        path: object_store::path::Path,
        reason: String,
    },
    /// The Delta log (boxed: delta-rs's error is large).
    #[error("delta: {0}")]
    Delta(Box<deltalake_core::DeltaTableError>),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = LakeError> = std::result::Result<T, E>;
