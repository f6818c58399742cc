//! Parquet encoding with the layout every file in the lake shares: rows
//! sorted by call, zstd, page-level statistics (column and offset index),
//! bloom filters on the lookup columns. Plain Parquet: any engine reads it.
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch,
};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::Result;
use crate::schema::{bloom_columns, no_dictionary_columns, schema_for, sort_columns};

#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions {
    /// zstd level: ingest favours speed, compaction favours size.
    pub zstd_level: i32,
    pub row_group_rows: usize,
    /// Codec of every column but `payload` (None: zstd too).
    pub other_columns: Option<Compression>,
}

impl EncodeOptions {
    pub const INGEST: Self = Self {
        zstd_level: 1,
        row_group_rows: 128 * 1024,
        other_columns: None,
    };
    pub const COMPACT: Self = Self {
        zstd_level: 9,
        row_group_rows: 64 * 1024,
        other_columns: Some(Compression::LZ4_RAW),
    };
}

/// Rows per data page at most.
pub const PAGE_ROWS: usize = 4096;
/// Uncompressed bytes per data page at most.
pub const PAGE_BYTES: usize = 256 << 10;

/// Sorts rows so a call's messages sit together, in time order.
pub fn sort_for_storage(batch: &RecordBatch, hep_type: u8) -> Result<RecordBatch> {
    let cols = sort_columns(hep_type)
        .iter()
        .map(|name| {
            Ok(SortColumn {
                values: batch.column(batch.schema().index_of(name)?).clone(),
                options: Some(SortOptions {
                    descending: false,
                    nulls_first: false,
                }),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let idx = lexsort_to_indices(&cols, None)?;
    Ok(take_record_batch(batch, &idx)?)
}

pub(crate) fn properties(
    hep_type: u8,
    rows: usize,
    opts: EncodeOptions,
) -> Result<WriterProperties> {
    let zstd = Compression::ZSTD(ZstdLevel::try_new(opts.zstd_level)?);
    let mut p = WriterProperties::builder()
        .set_compression(zstd)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(opts.row_group_rows))
        // Small pages: a lookup the page index narrows to one page per column
        // decodes a few thousand rows, not the ~20 000 a 1 MiB page of
        // call ids holds (docs/PERFORMANCE.md, query speed).
        .set_data_page_row_count_limit(PAGE_ROWS)
        // ...and a few hundred payloads, not the ~2 000 a 1 MiB page holds.
        .set_data_page_size_limit(PAGE_BYTES);
    for c in no_dictionary_columns(hep_type) {
        p = p.set_column_dictionary_enabled(ColumnPath::from(*c), false);
    }
    if let Some(c) = opts.other_columns {
        // zstd where it pays (payloads compress ~20×); elsewhere a codec whose
        // reader costs nothing to create: a lookup opens ~30 column chunks,
        // and each zstd one allocated a compression and a decompression context.
        p = p
            .set_compression(c)
            .set_column_compression(ColumnPath::from("payload"), zstd);
    }
    let ndv = rows.clamp(16, opts.row_group_rows) as u64;
    for c in bloom_columns(hep_type) {
        p = p
            .set_column_bloom_filter_enabled(ColumnPath::from(*c), true)
            .set_column_bloom_filter_fpp(ColumnPath::from(*c), 0.01)
            .set_column_bloom_filter_max_ndv(ColumnPath::from(*c), ndv);
    }
    Ok(p.build())
}

/// Encodes `batches` (all of table `hep_<hep_type>`) as one sorted Parquet file.
pub fn encode(batches: &[RecordBatch], hep_type: u8, opts: EncodeOptions) -> Result<Bytes> {
    let all = concat_batches(&schema_for(hep_type), batches)?;
    encode_sorted(&sort_for_storage(&all, hep_type)?, hep_type, opts)
}

/// Encodes rows already in storage order (see [`sort_for_storage`]).
pub fn encode_sorted(sorted: &RecordBatch, hep_type: u8, opts: EncodeOptions) -> Result<Bytes> {
    let schema = schema_for(hep_type);
    let mut buf = Vec::with_capacity(sorted.get_array_memory_size() / 4 + 4096);
    let mut w = ArrowWriter::try_new(
        &mut buf,
        schema,
        Some(properties(hep_type, sorted.num_rows(), opts)?),
    )?;
    w.write(sorted)?;
    w.close()?;
    Ok(Bytes::from(buf))
}

/// Decodes a whole Parquet file (compaction input; files are bounded in size).
pub fn decode(bytes: Bytes) -> Result<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?
        .with_batch_size(64 * 1024)
        .build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// One atomic PUT: readers see the whole file or nothing.
pub async fn put(store: &Arc<dyn ObjectStore>, path: &Path, bytes: Bytes) -> Result<()> {
    store.put(path, PutPayload::from_bytes(bytes)).await?;
    Ok(())
}

pub async fn read_all(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<Vec<RecordBatch>> {
    let bytes = store.get(path).await?.bytes().await?;
    decode(bytes)
}

/// Reads one Parquet object of known size through object_store, range by range.
#[derive(Debug, Clone)]
pub struct StoreReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl StoreReader {
    pub fn new(store: Arc<dyn ObjectStore>, path: Path, size: u64) -> Self {
        Self { store, path, size }
    }
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let md = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(md))
        }
        .boxed()
    }
}
