//! Unusable input kept out of the way with why, never dropped: a Kinesis
//! record no message could be taken from, a lake file no reader can read.
//! Both go under `_quarantine/` (names in [`Quarantined`]), each beside a
//! text object saying why.
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::Result;
use crate::paths::Quarantined;

/// `data`, a Kinesis record of `shard` at `sequence`, kept with `why`.
pub async fn keep_record(
    store: &Arc<dyn ObjectStore>,
    shard: &str,
    sequence: &str,
    data: &[u8],
    why: &str,
) -> Result<()> {
    let at = |reason| Quarantined::KinesisRecord {
        shard: shard.to_owned(),
        sequence: sequence.to_owned(),
        reason,
    };
    write_reason(store, at(true), why).await?;
    crate::parquet_io::put(store, &at(false).path(), data.to_vec().into()).await
}

/// Moves the lake file at `path` aside with `why`; nothing to do when it is gone.
pub async fn move_file(store: &Arc<dyn ObjectStore>, path: &Path, why: &str) -> Result<()> {
    let at = |reason| Quarantined::LakeFile {
        original: path.clone(),
        reason,
    };
    match store.copy(path, &at(false).path()).await {
        Ok(()) => {}
        Err(object_store::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    write_reason(store, at(true), why).await?;
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn write_reason(store: &Arc<dyn ObjectStore>, at: Quarantined, why: &str) -> Result<()> {
    store
        .put(&at.path(), format!("{why}\n").into_bytes().into())
        .await?;
    Ok(())
}
