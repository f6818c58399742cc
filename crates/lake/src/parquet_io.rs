//! Parquet encoding with the layout every file in the lake shares: rows
//! sorted by call, zstd, page-level statistics (column and offset index),
//! bloom filters on the lookup columns. Plain Parquet: any engine reads it.
//!
//! Ingest files are cut into time slices first: each row group holds the
//! rows of one stretch of time, sorted by call inside. A query for the
//! newest rows reads the newest row group and rules the others out from
//! their statistics; sorted by call throughout, the newest rows were spread
//! over every page of the file and it was decoded whole. Each row group is
//! still a sorted run, which is what compaction merges.
use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, lexsort_to_indices, sort_to_indices, take,
    take_record_batch,
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
use crate::schema::{SortKey, TIME, bloom_columns, no_dictionary_columns, schema_for};

#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions {
    /// zstd level: ingest favours speed, compaction favours size.
    pub zstd_level: i32,
    /// Rows per row group at most; in ingest files, rows per time slice.
    pub row_group_rows: usize,
    /// Codec of every column but `payload` (None: zstd too).
    pub other_columns: Option<Compression>,
}

impl EncodeOptions {
    pub const INGEST: Self = Self {
        zstd_level: 1,
        row_group_rows: 8 * 1024,
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

/// Ingest layout: the rows cut into slices of at most `slice_rows` by time,
/// oldest first, each slice in storage order ([`SortKey`]). Returns the rows
/// so ordered and where each slice ends.
pub fn time_slices(
    batch: &RecordBatch,
    hep_type: u8,
    slice_rows: usize,
) -> Result<(RecordBatch, Vec<usize>)> {
    let by_time = sort_to_indices(batch.column(batch.schema().index_of(TIME)?), None, None)?;
    let key_columns = SortKey::of(hep_type).columns(batch)?;
    let mut order: Vec<u32> = Vec::with_capacity(batch.num_rows());
    let mut ends = Vec::new();
    for start in (0..batch.num_rows()).step_by(slice_rows.max(1)) {
        let rows = by_time.slice(start, slice_rows.min(batch.num_rows() - start));
        // The slice's key columns, gathered alone, give its order.
        let key = key_columns
            .iter()
            .map(|values| {
                Ok(SortColumn {
                    values: take(values, &rows, None)?,
                    options: Some(SortOptions {
                        descending: false,
                        nulls_first: false,
                    }),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let local = lexsort_to_indices(&key, None)?;
        order.extend(local.values().iter().map(|&i| rows.value(i as usize)));
        ends.push(order.len());
    }
    Ok((take_record_batch(batch, &UInt32Array::from(order))?, ends))
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

/// Encodes `batches` (all of table `hep_<hep_type>`) as one Parquet file
/// of time slices, one row group each (see [`time_slices`]).
pub fn encode(batches: &[RecordBatch], hep_type: u8, opts: EncodeOptions) -> Result<Bytes> {
    let all = concat_batches(&schema_for(hep_type), batches)?;
    let (rows, ends) = time_slices(&all, hep_type, opts.row_group_rows)?;
    let mut buf = Vec::with_capacity(rows.get_array_memory_size() / 4 + 4096);
    let mut w = ArrowWriter::try_new(
        &mut buf,
        schema_for(hep_type),
        Some(properties(hep_type, rows.num_rows(), opts)?),
    )?;
    let mut start = 0;
    for end in ends {
        w.write(&rows.slice(start, end - start))?;
        // Ends the row group: a slice never shares one with the next.
        w.flush()?;
        start = end;
    }
    w.close()?;
    Ok(Bytes::from(buf))
}

/// The schema of a bundle: every table's columns (`hep_1`'s hold the others').
pub fn bundle_schema() -> arrow::datatypes::SchemaRef {
    schema_for(crate::schema::SIP_TYPE)
}

/// Encodes several tables' rows as one bundle (`paths::BundleHour`): one row
/// group per table, ascending by type, each sorted as its table's files are.
/// Each table's rows must fit one row group (`row_group_rows`).
pub fn encode_bundle(tables: &[(u8, RecordBatch)], opts: EncodeOptions) -> Result<Bytes> {
    let schema = bundle_schema();
    let rows = tables.iter().map(|(_, b)| b.num_rows()).max().unwrap_or(0);
    let mut buf = Vec::new();
    let props = properties(crate::schema::SIP_TYPE, rows, opts)?;
    let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props))?;
    let mut sorted: Vec<&(u8, RecordBatch)> = tables.iter().collect();
    sorted.sort_by_key(|(t, _)| *t);
    for (hep_type, batch) in sorted {
        if batch.num_rows() > opts.row_group_rows {
            return Err(crate::LakeError::Other(format!(
                "a bundle's hep_{hep_type} rows ({}) exceed one row group",
                batch.num_rows()
            )));
        }
        let (ordered, _) = time_slices(batch, *hep_type, batch.num_rows().max(1))?;
        w.write(&crate::schema::conform(&ordered, &schema)?)?;
        // Ends the row group: one per table, whatever its size.
        w.flush()?;
    }
    w.close()?;
    Ok(Bytes::from(buf))
}

/// The rows of `hep_type`'s table a data file holds, in that table's schema:
/// a whole file of the table, or its row group of a bundle.
pub async fn read_table_rows(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    hep_type: u8,
) -> Result<Vec<RecordBatch>> {
    let bytes = store.get(path).await?.bytes().await?;
    let mut reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.with_batch_size(64 * 1024);
    if let Some((row_group, _)) = crate::paths::bundle_row_group(path, hep_type) {
        reader = reader.with_row_groups(vec![row_group]);
    }
    let schema = schema_for(hep_type);
    reader
        .build()?
        .map(|b| crate::schema::conform(&b?, &schema))
        .collect()
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

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::TimestampMicrosecondType;
    use hep::sample::Call;

    use super::*;
    use crate::rows::BatchBuilder;

    /// (minute, call, time): the storage order.
    fn key_of(b: &RecordBatch, i: usize) -> (i64, String, i64) {
        let call = b.column_by_name("call_id").unwrap().as_string::<i32>();
        let time = b
            .column_by_name(TIME)
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        let t = time.value(i);
        (
            t.div_euclid(crate::schema::SORT_BUCKET_MICROS),
            call.value(i).to_owned(),
            t,
        )
    }

    /// Calls overlapping in time: each slice must interleave many calls.
    fn overlapping_calls() -> RecordBatch {
        let mut b = BatchBuilder::new(1);
        for c in 0..200 {
            // Across a minute's end (22:14:00).
            for m in Call::new(7, c).sip_flow(1_700_000_039_700_000 + (c as i64 * 7919) % 500_000) {
                b.append(&m);
            }
        }
        b.finish()
    }

    #[test]
    fn time_slices_are_runs_in_storage_order_in_time_order() {
        let batch = overlapping_calls();
        let (rows, ends) = time_slices(&batch, 1, 100).unwrap();
        assert_eq!(ends.len(), batch.num_rows().div_ceil(100));
        assert_eq!(ends.last(), Some(&batch.num_rows()));
        let mut got: Vec<_> = (0..rows.num_rows()).map(|i| key_of(&rows, i)).collect();
        let mut start = 0;
        let mut last_max = i64::MIN;
        for &end in &ends {
            let slice = &got[start..end];
            assert!(
                slice.windows(2).all(|w| w[0] <= w[1]),
                "slice sorted by minute, call, time"
            );
            let (min, max) = slice.iter().fold((i64::MAX, i64::MIN), |(lo, hi), k| {
                (lo.min(k.2), hi.max(k.2))
            });
            assert!(last_max <= min, "slices follow each other in time");
            let calls: std::collections::HashSet<_> = slice.iter().map(|k| &k.1).collect();
            assert!(calls.len() > 1, "a slice holds several calls");
            last_max = max;
            start = end;
        }
        let mut want: Vec<_> = (0..batch.num_rows()).map(|i| key_of(&batch, i)).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "every row once");
        assert_eq!(rows.column_by_name("payload").unwrap().null_count(), 0);
        let minutes: std::collections::HashSet<_> = got.iter().map(|k| k.0).collect();
        assert!(minutes.len() > 1, "the calls cross a minute's end");
    }

    #[test]
    fn an_ingest_file_has_a_row_group_per_slice() {
        let batch = overlapping_calls();
        let opts = EncodeOptions {
            row_group_rows: 300,
            ..EncodeOptions::INGEST
        };
        let md = ParquetMetaDataReader::new()
            .parse_and_finish(&encode(std::slice::from_ref(&batch), 1, opts).unwrap())
            .unwrap();
        let sizes: Vec<_> = md.row_groups().iter().map(|g| g.num_rows()).collect();
        let (_, ends) = time_slices(&batch, 1, 300).unwrap();
        let want: Vec<_> = std::iter::once(0)
            .chain(ends.iter().copied())
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| (w[1] - w[0]) as i64)
            .collect();
        assert_eq!(sizes, want);
    }
}
