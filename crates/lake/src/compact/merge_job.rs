//! Step 2: a job's inputs read and stream-merged into outputs no log entry
//! names yet, bounded in memory.

use std::sync::Arc;

use arrow::array::RecordBatch;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::async_writer::AsyncArrowWriter;
use parquet::errors::ParquetError;
use tokio::runtime::Handle;

use super::{CompactionConfig, Job};

use crate::merge::{BatchSource, SortedMerge};
use crate::parquet_io::{EncodeOptions, StoreReader, properties};
use crate::paths::{FileName, Partition, bundle_row_group, new_job_id};
use crate::schema::{SortKey, conform, schema_for};
use crate::{LakeError, Result};

/// What [`write_outputs`] merged and wrote: not visible until [`finish`]ed.
#[derive(Debug)]
pub struct Merged {
    pub partition: Partition,
    /// When the job started (µs, the compactor's clock): it is in the outputs' names.
    pub started_micros: i64,
    pub inputs: Vec<ObjectMeta>,
    pub outputs: Vec<(FileName, u64)>,
    pub rows: usize,
}

fn unreadable(path: &Path, e: impl std::fmt::Display) -> LakeError {
    LakeError::Unreadable {
        path: path.clone(),
        reason: e.to_string(),
    }
}

/// A store failure is worth retrying; anything else about a file means it cannot be read.
fn classify(path: &Path, e: ParquetError) -> LakeError {
    match e {
        ParquetError::External(inner) => match inner.downcast::<object_store::Error>() {
            Ok(store_error) => LakeError::Store(*store_error),
            Err(other) => unreadable(path, other),
        },
        e => unreadable(path, e),
    }
}

/// One input file as a stream of batches in the current schema.
struct ParquetInput {
    path: Path,
    stream: ParquetRecordBatchStream<StoreReader>,
    schema: arrow::datatypes::SchemaRef,
    handle: Handle,
}

impl BatchSource for ParquetInput {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self.handle.block_on(self.stream.next()) {
            None => Ok(None),
            Some(Ok(b)) => conform(&b, &self.schema)
                .map(Some)
                .map_err(|e| unreadable(&self.path, e)),
            Some(Err(e)) => Err(classify(&self.path, e)),
        }
    }
}

/// Files being written for one job, cut at the job's target size.
struct Outputs {
    store: Arc<dyn ObjectStore>,
    partition: Partition,
    id: String,
    target: u64,
    handle: Handle,
    current: Option<(FileName, AsyncArrowWriter<BufWriter>)>,
    done: Vec<(FileName, u64)>,
}

/// Bytes a multipart upload buffers per part (S3 needs at least 5 MiB).
const UPLOAD_PART_BYTES: usize = 8 << 20;

impl Outputs {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.current.is_none() {
            let name = FileName::compacted(&self.id, self.done.len() as u32);
            let upload = BufWriter::with_capacity(
                self.store.clone(),
                self.partition.file(&name),
                UPLOAD_PART_BYTES,
            )
            .with_max_concurrency(2);
            let props = properties(
                self.partition.hep_type,
                EncodeOptions::COMPACT.row_group_rows,
                EncodeOptions::COMPACT,
            )?;
            let w = AsyncArrowWriter::try_new(
                upload,
                schema_for(self.partition.hep_type),
                Some(props),
            )?;
            self.current = Some((name, w));
        }
        let (_, w) = self.current.as_mut().expect("opened above");
        self.handle.block_on(w.write(batch))?;
        if (w.bytes_written() + w.in_progress_size()) as u64 >= self.target {
            self.close()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some((name, mut w)) = self.current.take() {
            self.handle.block_on(w.finish())?;
            self.done.push((name, w.bytes_written() as u64));
        }
        Ok(())
    }

    /// Best effort after a failure: outputs no entry names are invisible anyway.
    fn discard(&mut self) {
        self.current = None;
        for (name, _) in self.done.drain(..) {
            let _ = self
                .handle
                .block_on(self.store.delete(&self.partition.file(&name)));
        }
    }
}

/// Memory an open input holds while its row group is read: the compressed
/// column chunks, each column's decoded dictionary, current decompressed
/// page and decompression context. Measured with heaptrack on ingest files
/// (10 M messages, 20 inputs a job): about the compressed size plus a
/// quarter of the plain size plus 128 KiB a column.
fn input_cost(g: &parquet::file::metadata::RowGroupMetaData) -> u64 {
    g.compressed_size().max(0) as u64
        + g.total_byte_size().max(0) as u64 / 4
        + g.num_columns() as u64 * (128 << 10)
}

/// The sorted runs of an input, each read as one merge source: a compacted
/// file is sorted throughout (None: the whole file); an ingest file is
/// sorted within each row group, a time slice (see `parquet_io::time_slices`).
/// Ingest files written before time slices were sorted throughout, so each
/// of their row groups is a sorted run too.
/// A bundle holds one run of the table: its row group.
fn sorted_runs(
    f: &ObjectMeta,
    md: &parquet::file::metadata::ParquetMetaData,
    hep_type: u8,
) -> Vec<Option<usize>> {
    if let Some((row_group, _)) = bundle_row_group(&f.location, hep_type) {
        return vec![Some(row_group)];
    }
    match f.location.filename().and_then(FileName::parse) {
        Some(FileName::Compacted { .. }) => vec![None],
        _ => (0..md.num_row_groups()).map(Some).collect(),
    }
}

/// Opens the job's inputs, as many as fit the memory budget (at least
/// two), streams their merge into outputs, and returns what it merged.
pub async fn write_outputs(
    store: &Arc<dyn ObjectStore>,
    job: &Job,
    cfg: &CompactionConfig,
    now_micros: i64,
) -> Result<Merged> {
    // The budget bounds the process's RSS; allocators keep about 40% more than
    // the live heap (measured with mimalloc), so the merge aims at 60% of it.
    let (store, job, memory) = (store.clone(), job.clone(), cfg.memory_bytes * 3 / 5);
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || merge_blocking(store, job, memory, now_micros, handle))
        .await
        .map_err(|e| LakeError::Other(format!("compaction task: {e}")))?
}

fn merge_blocking(
    store: Arc<dyn ObjectStore>,
    job: Job,
    memory: u64,
    started_micros: i64,
    handle: Handle,
) -> Result<Merged> {
    let schema = schema_for(job.partition.hep_type);
    // Open inputs (see `input_cost`) take half the budget, their decoded
    // batches an eighth; the rest is the output: a compression context per
    // column (~2 MiB at zstd 9), the row group being encoded, upload buffers.
    let mut opened = Vec::new();
    let (mut held, mut row_bytes) = (0u64, 0u64);
    for f in &job.inputs {
        let mut reader = StoreReader::new(store.clone(), f.location.clone(), f.size);
        let meta = handle
            .block_on(ArrowReaderMetadata::load_async(
                &mut reader,
                ArrowReaderOptions::default(),
            ))
            .map_err(|e| classify(&f.location, e))?;
        let md = meta.metadata().clone();
        let runs = sorted_runs(f, &md, job.partition.hep_type);
        // A run holds one row group at a time; an ingest file's runs are all open at once.
        let costs = runs.iter().map(|run| match run {
            Some(g) => input_cost(md.row_group(*g)),
            None => md.row_groups().iter().map(input_cost).max().unwrap_or(0),
        });
        let cost: u64 = costs.sum();
        if opened.len() >= 2 && held + cost > memory / 2 {
            break;
        }
        let rows = md.file_metadata().num_rows().max(1) as u64;
        let uncompressed: u64 = md
            .row_groups()
            .iter()
            .map(|g| g.total_byte_size().max(0) as u64)
            .sum();
        held += cost;
        // Arrow arrays take about twice Parquet's plain size (offsets, validity).
        row_bytes += runs.len() as u64 * 2 * uncompressed.div_ceil(rows);
        opened.push((f.clone(), reader, meta, runs));
    }
    let batch_rows = ((memory / 8) / row_bytes.max(1)).clamp(256, 8192) as usize;
    let mut inputs = Vec::with_capacity(opened.len());
    let mut sources: Vec<Box<dyn BatchSource>> = Vec::new();
    for (f, reader, meta, runs) in opened {
        for run in runs {
            let builder =
                ParquetRecordBatchStreamBuilder::new_with_metadata(reader.clone(), meta.clone())
                    .with_batch_size(batch_rows);
            let builder = match run {
                Some(g) => builder.with_row_groups(vec![g]),
                None => builder,
            };
            let stream = builder.build().map_err(|e| classify(&f.location, e))?;
            sources.push(Box::new(ParquetInput {
                path: f.location.clone(),
                stream,
                schema: schema.clone(),
                handle: handle.clone(),
            }));
        }
        inputs.push(f);
    }
    let merge = SortedMerge::new(
        schema,
        Box::new(SortKey::of(job.partition.hep_type)),
        sources,
        batch_rows,
    )?;
    let id = new_job_id(started_micros, uuid::Uuid::new_v4().as_u64_pair().0);
    let mut out = Outputs {
        store,
        partition: job.partition,
        id,
        target: job.target_file_bytes,
        handle,
        current: None,
        done: Vec::new(),
    };
    let mut rows = 0;
    let result = (|| {
        for batch in merge {
            let batch = batch?;
            rows += batch.num_rows();
            out.write(&batch)?;
        }
        out.close()
    })();
    if let Err(e) = result {
        out.discard();
        return Err(e);
    }
    Ok(Merged {
        partition: job.partition,
        started_micros,
        inputs,
        outputs: std::mem::take(&mut out.done),
        rows,
    })
}
