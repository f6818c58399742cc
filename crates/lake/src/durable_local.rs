//! The lake on a local disk, durable: object_store's `LocalFileSystem` writes
//! a staging file and renames it without fsync, so after a power loss a file
//! (or a compaction marker, whose commit deletes the inputs) could be visible
//! but empty. Here every put and multipart upload is fsynced before the rename
//! that makes it visible, and the directory after it. Reads, lists and deletes
//! go to `LocalFileSystem` unchanged; staging files keep its `<name>#<n>`
//! form, which its listing skips.
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

#[derive(Debug)]
pub struct DurableLocal {
    inner: LocalFileSystem,
    root: PathBuf,
}

impl DurableLocal {
    pub fn new(root: &FsPath) -> object_store::Result<Self> {
        let root = root.canonicalize().map_err(|e| generic(root, e))?;
        Ok(Self {
            // Automatic cleanup removes empty directories left after compaction deletes.
            inner: LocalFileSystem::new_with_prefix(&root)?.with_automatic_cleanup(true),
            root,
        })
    }
}

impl std::fmt::Display for DurableLocal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DurableLocal({})", self.root.display())
    }
}

fn generic(path: &FsPath, e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "DurableLocal",
        source: format!("{}: {e}", path.display()).into(),
    }
}

fn sync_dir(dir: &FsPath) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing ancestors below `root`, each made durable
/// in its parent.
fn create_dirs(dir: &FsPath, root: &FsPath) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = vec![dir];
    while let Some(parent) = missing.last().and_then(|d| d.parent()) {
        if parent.is_dir() || parent == root {
            break;
        }
        missing.push(parent);
    }
    std::fs::create_dir_all(dir)?;
    for d in missing.iter().rev() {
        if let Some(parent) = d.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// A new staging file beside `dest`: `<dest>#<n>`.
fn staging_file(dest: &FsPath, root: &FsPath) -> std::io::Result<(File, PathBuf)> {
    create_dirs(dest.parent().unwrap_or(root), root)?;
    for n in 1u32.. {
        let mut p = dest.as_os_str().to_owned();
        p.push(format!("#{n}"));
        let p = PathBuf::from(p);
        match OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(f) => return Ok((f, p)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("u32 staging names exhausted")
}

fn e_tag(file: &File) -> std::io::Result<String> {
    // LocalFileSystem's form, so a get's ETag matches the put's.
    let m = file.metadata()?;
    let mtime = m
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    Ok(format!("{:x}-{mtime:x}-{:x}", m.ino(), m.len()))
}

/// fsync `file`, then make it visible as `dest` and fsync its directory.
fn publish(
    file: File,
    staging: &FsPath,
    dest: &FsPath,
    mode: &PutMode,
) -> object_store::Result<PutResult> {
    let fail = |e: std::io::Error| {
        let _ = std::fs::remove_file(staging);
        generic(dest, e)
    };
    file.sync_all().map_err(fail)?;
    let tag = e_tag(&file).map_err(fail)?;
    drop(file);
    match mode {
        PutMode::Overwrite => std::fs::rename(staging, dest).map_err(fail)?,
        PutMode::Create => {
            // A hard link fails if `dest` exists: create-if-absent.
            let linked = std::fs::hard_link(staging, dest);
            let _ = std::fs::remove_file(staging);
            if let Err(e) = linked {
                return Err(if e.kind() == ErrorKind::AlreadyExists {
                    object_store::Error::AlreadyExists {
                        path: dest.display().to_string(),
                        source: e.into(),
                    }
                } else {
                    generic(dest, e)
                });
            }
        }
        PutMode::Update(_) => unreachable!("refused before writing"),
    }
    if let Some(dir) = dest.parent() {
        sync_dir(dir).map_err(|e| generic(dir, e))?;
    }
    Ok(PutResult {
        e_tag: Some(tag),
        version: None,
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> object_store::Result<T> + Send + 'static,
) -> object_store::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "DurableLocal",
            source: Box::new(e),
        })?
}

#[async_trait]
impl ObjectStore for DurableLocal {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if matches!(opts.mode, PutMode::Update(_)) || !opts.attributes.is_empty() {
            // What LocalFileSystem refuses too.
            return self.inner.put_opts(location, payload, opts).await;
        }
        let dest = self.inner.path_to_filesystem(location)?;
        let root = self.root.clone();
        blocking(move || {
            let (mut file, staging) = staging_file(&dest, &root).map_err(|e| generic(&dest, e))?;
            if let Err(e) = payload.iter().try_for_each(|b| file.write_all(b)) {
                let _ = std::fs::remove_file(&staging);
                return Err(generic(&dest, e));
            }
            publish(file, &staging, &dest, &opts.mode)
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        if !opts.attributes.is_empty() {
            return self.inner.put_multipart_opts(location, opts).await;
        }
        let dest = self.inner.path_to_filesystem(location)?;
        let root = self.root.clone();
        let (file, staging) = blocking({
            let dest = dest.clone();
            move || staging_file(&dest, &root).map_err(|e| generic(&dest, e))
        })
        .await?;
        Ok(Box::new(DurableUpload {
            file: Some(Arc::new(file)),
            staging,
            dest,
            offset: 0,
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    /// The local store's own: each range read as asked. The trait's default
    /// merges ranges less than 1 MiB apart, which on a local disk only reads
    /// the gaps too (a lookup's pages are spread over its row group).
    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    /// In key order, as S3 lists: Delta readers take a log listing's order
    /// as the commits' (the file system's order is a directory's own).
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        in_key_order(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        in_key_order(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn in_key_order(
    listing: BoxStream<'static, object_store::Result<ObjectMeta>>,
) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::once(async move {
        let mut all: Vec<ObjectMeta> = listing.try_collect().await?;
        all.sort_by(|a, b| a.location.cmp(&b.location));
        Ok::<_, object_store::Error>(futures::stream::iter(all.into_iter().map(Ok)))
    })
    .try_flatten()
    .boxed()
}

/// Parts written at their offsets into the staging file; completion fsyncs
/// it before the rename.
#[derive(Debug)]
struct DurableUpload {
    /// None once completed or aborted.
    file: Option<Arc<File>>,
    staging: PathBuf,
    dest: PathBuf,
    offset: u64,
}

#[async_trait]
impl MultipartUpload for DurableUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let offset = self.offset;
        self.offset += data.content_length() as u64;
        let (file, dest) = (self.file.clone(), self.dest.clone());
        Box::pin(blocking(move || {
            let file = file.ok_or_else(|| generic(&dest, ErrorKind::BrokenPipe.into()))?;
            let mut at = offset;
            for b in data.iter() {
                file.write_all_at(b, at).map_err(|e| generic(&dest, e))?;
                at += b.len() as u64;
            }
            Ok(())
        }))
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let file = self
            .file
            .take()
            .ok_or_else(|| generic(&self.dest, ErrorKind::BrokenPipe.into()))?;
        let (staging, dest) = (self.staging.clone(), self.dest.clone());
        blocking(move || {
            // Every part's future has finished (the caller awaited them): ours is the last handle.
            let file = Arc::try_unwrap(file).map_err(|_| {
                generic(
                    &dest,
                    std::io::Error::other("a part is still being written"),
                )
            })?;
            publish(file, &staging, &dest, &PutMode::Overwrite)
        })
        .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.file = None;
        let staging = self.staging.clone();
        blocking(move || std::fs::remove_file(&staging).map_err(|e| generic(&staging, e))).await
    }
}

impl Drop for DurableUpload {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.staging);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn puts_and_uploads_land_whole_and_leave_no_staging_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = DurableLocal::new(dir.path()).unwrap();
        let a = Path::from("hep_1/date=2026-11-29/hour=10/a.parquet");
        store.put(&a, "first".into()).await.unwrap();
        store.put(&a, "second".into()).await.unwrap();
        assert_eq!(
            store.get(&a).await.unwrap().bytes().await.unwrap(),
            "second"
        );
        // Create-if-absent: the commit protocol's markers rest on it.
        let m = Path::from("hep_1/date=2026-11-29/hour=10/_compactions/1.json");
        store
            .put_opts(&m, "x".into(), PutMode::Create.into())
            .await
            .unwrap();
        let again = store.put_opts(&m, "y".into(), PutMode::Create.into()).await;
        assert!(
            matches!(again, Err(object_store::Error::AlreadyExists { .. })),
            "{again:?}"
        );
        assert_eq!(store.get(&m).await.unwrap().bytes().await.unwrap(), "x");
        // Multipart: parts in order at their offsets.
        let c = Path::from("hep_1/date=2026-11-29/hour=10/c.parquet");
        let mut up = store.put_multipart(&c).await.unwrap();
        let parts = vec![
            up.put_part(vec![1u8; 7 << 20].into()),
            up.put_part(vec![2u8; 3].into()),
        ];
        futures::future::try_join_all(parts).await.unwrap();
        assert!(store.head(&c).await.is_err(), "invisible before complete");
        let put = up.complete().await.unwrap();
        let got = store.get(&c).await.unwrap();
        assert_eq!(got.meta.e_tag, put.e_tag);
        let bytes = got.bytes().await.unwrap();
        assert_eq!(bytes.len(), (7 << 20) + 3);
        assert_eq!(&bytes[(7 << 20) - 1..], &[1, 2, 2, 2]);
        // An aborted or dropped upload leaves nothing.
        let mut gone = store.put_multipart(&Path::from("x/aborted")).await.unwrap();
        gone.put_part(vec![0u8; 10].into()).await.unwrap();
        gone.abort().await.unwrap();
        drop(store.put_multipart(&Path::from("x/dropped")).await.unwrap());
        let names: Vec<String> = walk(dir.path());
        assert!(names.iter().all(|n| !n.contains('#')), "{names:?}");
        let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
        assert_eq!(listed.len(), 3, "{listed:?}");
    }

    fn walk(dir: &FsPath) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
        out
    }
}
