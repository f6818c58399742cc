//! A k-way merge of sorted batch streams: the core of compaction.
//!
//! Every compacted file, and every row group of an ingest file (a time
//! slice), is sorted by its table's sort key, so merging these runs as
//! streams keeps memory at one batch per run plus one output batch,
//! whatever the size of the partition. Pure: sources are a trait, so tests
//! merge in-memory batches and compaction merges Parquet readers.
use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::{SortOptions, interleave_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};

use crate::Result;
use crate::schema::{SortKey, conform};

/// What rows are merged by: key columns derived from each batch, compared
/// ascending, nulls last.
pub trait MergeKey: Send {
    fn types(&self) -> Vec<DataType>;
    fn columns(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>>;
}

impl MergeKey for SortKey {
    fn types(&self) -> Vec<DataType> {
        SortKey::types(self)
    }
    fn columns(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        SortKey::columns(self, batch)
    }
}

/// A stream of batches, each sorted, and sorted after the one before.
pub trait BatchSource: Send {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>>;
}

/// In-memory source (tests, and already-decoded input).
impl BatchSource for std::vec::IntoIter<RecordBatch> {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        Ok(self.next())
    }
}

struct Cursor {
    source: Box<dyn BatchSource>,
    rows: Rows,
    len: usize,
    pos: usize,
    /// Index of the current batch in `SortedMerge::slots`.
    slot: usize,
}

/// Yields the rows of all sources in sort-key order, `out_rows` at a time.
/// Ties go to the source listed first, so the output is deterministic.
pub struct SortedMerge {
    schema: SchemaRef,
    key: Box<dyn MergeKey>,
    converter: RowConverter,
    cursors: Vec<Option<Cursor>>,
    /// Min-heap of cursor indices by current row.
    heap: Vec<usize>,
    /// Batches rows are still taken from: each cursor's current one, and
    /// ones finished since the last output.
    slots: Vec<RecordBatch>,
    pending: Vec<(usize, usize)>,
    out_rows: usize,
    started: bool,
    failed: bool,
}

impl SortedMerge {
    /// Every source is sorted by `key` (each slice of [`crate::parquet_io::time_slices`] is by [`SortKey`]).
    pub fn new(
        schema: SchemaRef,
        key: Box<dyn MergeKey>,
        sources: Vec<Box<dyn BatchSource>>,
        out_rows: usize,
    ) -> Result<Self> {
        let fields = key
            .types()
            .into_iter()
            .map(|t| {
                SortField::new_with_options(
                    t,
                    SortOptions {
                        descending: false,
                        nulls_first: false,
                    },
                )
            })
            .collect();
        let converter = RowConverter::new(fields)?;
        let cursors = sources
            .into_iter()
            .map(|source| {
                Some(Cursor {
                    source,
                    rows: converter.empty_rows(0, 0),
                    len: 0,
                    pos: 0,
                    slot: 0,
                })
            })
            .collect();
        Ok(Self {
            schema,
            key,
            converter,
            cursors,
            heap: Vec::new(),
            slots: Vec::new(),
            pending: Vec::new(),
            out_rows: out_rows.max(1),
            started: false,
            failed: false,
        })
    }

    /// Loads the next non-empty batch of cursor `i`; false when it is exhausted.
    fn load(&mut self, i: usize) -> Result<bool> {
        let Some(c) = self.cursors[i].as_mut() else {
            return Ok(false);
        };
        loop {
            let Some(batch) = c.source.next_batch()? else {
                self.cursors[i] = None;
                return Ok(false);
            };
            if batch.num_rows() == 0 {
                continue;
            }
            let batch = conform(&batch, &self.schema)?;
            let cols = self.key.columns(&batch)?;
            c.rows = self.converter.convert_columns(&cols)?;
            c.len = batch.num_rows();
            c.pos = 0;
            c.slot = self.slots.len();
            self.slots.push(batch);
            return Ok(true);
        }
    }

    fn less(&self, a: usize, b: usize) -> bool {
        let (ca, cb) = (
            self.cursors[a].as_ref().expect("live"),
            self.cursors[b].as_ref().expect("live"),
        );
        match ca.rows.row(ca.pos).cmp(&cb.rows.row(cb.pos)) {
            std::cmp::Ordering::Equal => a < b,
            o => o.is_lt(),
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < self.heap.len() && self.less(self.heap[l], self.heap[m]) {
                m = l;
            }
            if r < self.heap.len() && self.less(self.heap[r], self.heap[m]) {
                m = r;
            }
            if m == i {
                return;
            }
            self.heap.swap(i, m);
            i = m;
        }
    }

    fn start(&mut self) -> Result<()> {
        self.started = true;
        for i in 0..self.cursors.len() {
            if self.load(i)? {
                self.heap.push(i);
            }
        }
        for i in (0..self.heap.len() / 2).rev() {
            self.sift_down(i);
        }
        Ok(())
    }

    /// Takes the smallest row; advances its cursor.
    fn step(&mut self) -> Result<()> {
        let top = self.heap[0];
        let c = self.cursors[top].as_mut().expect("live");
        self.pending.push((c.slot, c.pos));
        c.pos += 1;
        if c.pos == c.len && !self.load(top)? {
            let last = self.heap.pop().expect("non-empty");
            if self.heap.is_empty() {
                return Ok(());
            }
            self.heap[0] = last;
        }
        self.sift_down(0);
        Ok(())
    }

    fn emit(&mut self) -> Result<RecordBatch> {
        let refs: Vec<&RecordBatch> = self.slots.iter().collect();
        let out = interleave_record_batch(&refs, &self.pending)?;
        self.pending.clear();
        // Keep only the batches cursors still read from.
        let mut slots = Vec::with_capacity(self.heap.len());
        for c in self.cursors.iter_mut().flatten() {
            slots.push(self.slots[c.slot].clone());
            c.slot = slots.len() - 1;
        }
        self.slots = slots;
        Ok(out)
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if !self.started {
            self.start()?;
        }
        while !self.heap.is_empty() && self.pending.len() < self.out_rows {
            self.step()?;
        }
        if self.pending.is_empty() {
            Ok(None)
        } else {
            self.emit().map(Some)
        }
    }
}

impl Iterator for SortedMerge {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.next_batch();
        self.failed = r.is_err();
        r.transpose()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use proptest::prelude::*;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("t", DataType::Int64, false),
            Field::new("id", DataType::Int64, false),
        ]))
    }

    type Row = (Option<String>, i64, i64);

    fn batch(rows: &[Row]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(rows.iter().map(|r| r.0.clone()).collect::<StringArray>()),
                Arc::new(rows.iter().map(|r| r.1).collect::<Int64Array>()),
                Arc::new(rows.iter().map(|r| r.2).collect::<Int64Array>()),
            ],
        )
        .unwrap()
    }

    fn rows_of(b: &RecordBatch) -> Vec<Row> {
        let k = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let t = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        let id = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        (0..b.num_rows())
            .map(|i| {
                (
                    k.is_valid(i).then(|| k.value(i).to_owned()),
                    t.value(i),
                    id.value(i),
                )
            })
            .collect()
    }

    /// Merges by columns `k` then `t`.
    struct KT;
    impl MergeKey for KT {
        fn types(&self) -> Vec<DataType> {
            vec![DataType::Utf8, DataType::Int64]
        }
        fn columns(&self, b: &RecordBatch) -> Result<Vec<ArrayRef>> {
            Ok(vec![b.column(0).clone(), b.column(1).clone()])
        }
    }

    fn sort_key(r: &Row) -> (bool, Option<String>, i64) {
        (r.0.is_none(), r.0.clone(), r.1)
    }

    proptest! {
        /// Merging sorted runs cut into arbitrary batches equals sorting all rows.
        #[test]
        fn merge_equals_sort(
            runs in proptest::collection::vec(proptest::collection::vec((proptest::option::of("[a-c]{0,2}"), 0i64..5), 0..40), 0..6),
            cut in 1usize..7,
            out_rows in 1usize..50,
        ) {
            let mut id = 0;
            let mut all: Vec<Row> = Vec::new();
            let mut sources: Vec<Box<dyn BatchSource>> = Vec::new();
            for run in runs {
                let mut rows: Vec<Row> = run.into_iter().map(|(k, t)| { id += 1; (k, t, id) }).collect();
                rows.sort_by_key(sort_key);
                all.extend(rows.iter().cloned());
                let batches: Vec<RecordBatch> = rows.chunks(cut).map(batch).chain([batch(&[])]).collect();
                sources.push(Box::new(batches.into_iter()));
            }
            let merged: Vec<RecordBatch> = SortedMerge::new(schema(), Box::new(KT), sources, out_rows).unwrap().collect::<Result<_>>().unwrap();
            prop_assert!(merged.iter().all(|b| b.num_rows() <= out_rows && b.num_rows() > 0));
            let got: Vec<Row> = merged.iter().flat_map(rows_of).collect();
            // Same order as a stable sort of the runs in source order: ties keep the earlier source first.
            all.sort_by_key(sort_key);
            prop_assert_eq!(got, all);
        }
    }

    struct Failing;
    impl BatchSource for Failing {
        fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
            Err(crate::LakeError::Other("disk on fire".into()))
        }
    }

    #[test]
    fn a_failing_source_ends_the_merge_with_its_error() {
        let ok: Box<dyn BatchSource> =
            Box::new(vec![batch(&[(Some("a".into()), 1, 1)])].into_iter());
        let mut m =
            SortedMerge::new(schema(), Box::new(KT), vec![ok, Box::new(Failing)], 10).unwrap();
        assert!(matches!(m.next(), Some(Err(_))));
        assert!(m.next().is_none());
    }
}
