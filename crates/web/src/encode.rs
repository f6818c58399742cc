//! Query results as JSON, NDJSON or CSV, encoded batch by batch on the query
//! pool and cut off as soon as the body passes its limit, so a large result
//! never sits in memory twice (batches and text) beyond that limit.
use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;

use lake::engine::{QueryError, QueryResult, ResultSink};

use crate::error::BadParameter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    NdJson,
    /// CSV for people: a text cell a spreadsheet would run as a formula is
    /// written with a leading `'` (OWASP's CSV injection advice).
    Csv,
    /// CSV as stored, for machines.
    CsvRaw,
}

impl Format {
    pub fn parse(s: Option<&str>) -> Result<Self, BadParameter> {
        match s.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("json") => Ok(Format::Json),
            Some("ndjson") | Some("jsonl") => Ok(Format::NdJson),
            Some("csv") => Ok(Format::Csv),
            Some("csv-raw") => Ok(Format::CsvRaw),
            Some(other) => Err(BadParameter::from(format!(
                "unknown format '{other}': use json, ndjson, csv or csv-raw"
            ))),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::NdJson => "application/x-ndjson",
            Format::Csv | Format::CsvRaw => "text/csv",
        }
    }
}

/// How large a response may be, and how its size is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseLimit {
    Unbounded,
    /// The body's own bytes (`hepop serve`).
    Body(usize),
    /// The bytes the body takes inside a Lambda response payload, which is
    /// JSON: the body is sent as text (never base64) and counted as escaped.
    LambdaPayload(usize),
}

impl ResponseLimit {
    fn limit(self) -> Option<usize> {
        match self {
            ResponseLimit::Unbounded => None,
            ResponseLimit::Body(n) | ResponseLimit::LambdaPayload(n) => Some(n),
        }
    }

    /// What `bytes` of text add to the counted size.
    fn cost(self, bytes: &[u8]) -> usize {
        match self {
            ResponseLimit::LambdaPayload(_) => json_escaped_len(bytes),
            _ => bytes.len(),
        }
    }

    /// What `n` bytes of a binary body add: a Lambda response carries them in base64.
    fn binary_cost(self, n: usize) -> usize {
        match self {
            ResponseLimit::LambdaPayload(_) => n.div_ceil(3) * 4,
            _ => n,
        }
    }
}

/// Length of `bytes` as a JSON string's contents, escaped as serde_json does.
pub fn json_escaped_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

/// The batch with each column `f` rewrites (to a new type) replaced; the
/// columns it answers None for are kept as they are.
fn map_columns(
    batch: &RecordBatch,
    f: impl Fn(&Field, &ArrayRef) -> Result<Option<ArrayRef>, ArrowError>,
) -> Result<RecordBatch, ArrowError> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut cols = Vec::with_capacity(batch.num_columns());
    for (field, c) in batch.schema().fields().iter().zip(batch.columns()) {
        match f(field, c)? {
            Some(new) => {
                fields.push(Field::new(
                    field.name(),
                    new.data_type().clone(),
                    field.is_nullable(),
                ));
                cols.push(new);
            }
            None => {
                fields.push(field.as_ref().clone());
                cols.push(c.clone());
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
}

/// Timestamps print as the seed's "2025-01-26T18:44:07.120" (UTC, no suffix).
fn naive_times(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    map_columns(batch, |f, c| match f.data_type() {
        DataType::Timestamp(unit, Some(_)) => cast(c, &DataType::Timestamp(*unit, None)).map(Some),
        _ => Ok(None),
    })
}

/// Whether a spreadsheet would take a cell starting so as a formula (or as
/// the start of one): `=`, `+`, `-`, `@`, tab and carriage return.
fn runs_as_formula(cell: &str) -> bool {
    cell.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// The batch with every text cell that would run as a formula prefixed by `'`.
fn neutralised(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let is_text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    map_columns(batch, |f, c| {
        let text = match f.data_type() {
            DataType::Dictionary(_, v) => is_text(v),
            t => is_text(t),
        };
        if !text {
            return Ok(None);
        }
        let utf8 = cast(c, &DataType::Utf8)?;
        let out: StringArray = utf8
            .as_string::<i32>()
            .iter()
            .map(|v| {
                v.map(|v| {
                    if runs_as_formula(v) {
                        Cow::Owned(format!("'{v}"))
                    } else {
                        Cow::Borrowed(v)
                    }
                })
            })
            .collect();
        Ok(Some(Arc::new(out) as ArrayRef))
    })
}

fn encoding(e: ArrowError) -> QueryError {
    QueryError::Internal(format!("encoding result: {e}"))
}

/// A response body under construction, counted against its limit as it grows.
pub struct Body {
    limit: ResponseLimit,
    out: Vec<u8>,
    counted: usize,
}

impl Body {
    pub fn new(limit: ResponseLimit) -> Self {
        Self {
            limit,
            out: Vec::new(),
            counted: 0,
        }
    }

    /// Counts text held for the body before it is written into it (entries
    /// that must be ordered first); over the limit is an error.
    pub fn reserve_text(&mut self, text: &[u8]) -> Result<(), QueryError> {
        let cost = self.limit.cost(text);
        self.reserve(cost)
    }

    /// Counts `n` bytes of a binary body held before it is written (a PCAP's frames).
    pub fn reserve_binary(&mut self, n: usize) -> Result<(), QueryError> {
        let cost = self.limit.binary_cost(n);
        self.reserve(cost)
    }

    /// Refuses a slice whose text alone would pass the limit, before it is
    /// encoded: one row can hold a value of hundreds of megabytes.
    fn expect(&self, slice: &RecordBatch) -> Result<(), QueryError> {
        match self.limit.limit() {
            Some(max) if self.counted.saturating_add(text_bytes(slice)) > max => {
                Err(QueryError::TooLarge(max))
            }
            _ => Ok(()),
        }
    }

    fn reserve(&mut self, cost: usize) -> Result<(), QueryError> {
        self.counted += cost;
        match self.limit.limit() {
            Some(max) if self.counted > max => Err(QueryError::TooLarge(max)),
            _ => Ok(()),
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> Result<(), QueryError> {
        self.out.extend_from_slice(bytes);
        self.counted_from(self.out.len() - bytes.len())
    }

    /// Counts what was written since `start`.
    fn counted_from(&mut self, start: usize) -> Result<(), QueryError> {
        let cost = self.limit.cost(&self.out[start..]);
        self.reserve(cost)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

/// About how much of a batch is encoded before the limit is checked again:
/// one batch of large payloads (8 192 rows of 64 KiB) is half a gigabyte.
const SLICE_BYTES: usize = 256 << 10;

/// `batch` in row ranges of about [`SLICE_BYTES`] each (one row at least).
fn slices(batch: &RecordBatch) -> impl Iterator<Item = RecordBatch> + '_ {
    let rows = batch.num_rows();
    let per_row = (batch.get_array_memory_size() / rows.max(1)).max(1);
    let step = (SLICE_BYTES / per_row).clamp(1, rows.max(1));
    (0..rows)
        .step_by(step)
        .map(move |at| batch.slice(at, step.min(rows - at)))
}

/// Bytes of the text and binary values of `batch`: every format writes at
/// least that many.
fn text_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .filter(|c| {
            matches!(
                c.data_type(),
                DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Binary
                    | DataType::LargeBinary
                    | DataType::BinaryView
            )
        })
        .filter_map(|c| {
            let lengths = arrow::compute::kernels::length::length(c).ok()?;
            let lengths = cast(&lengths, &DataType::UInt64).ok()?;
            arrow::compute::sum(lengths.as_primitive::<arrow::datatypes::UInt64Type>())
        })
        .map(|n| n as usize)
        .sum()
}

/// Rows as one JSON array of objects, written into a [`Body`] batch by batch.
#[derive(Default)]
pub struct JsonArray {
    rows: usize,
}

impl JsonArray {
    pub fn write(&mut self, body: &mut Body, batch: &RecordBatch) -> Result<(), QueryError> {
        let batch = naive_times(batch).map_err(encoding)?;
        for slice in slices(&batch) {
            body.expect(&slice)?;
            let mut one = Vec::new();
            let mut w = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(&mut one);
            w.write(&slice).map_err(encoding)?;
            w.finish().map_err(encoding)?;
            drop(w);
            let start = body.out.len();
            body.out.push(if self.rows == 0 { b'[' } else { b',' });
            body.out.extend_from_slice(&one[1..one.len() - 1]);
            self.rows += slice.num_rows();
            body.counted_from(start)?;
        }
        Ok(())
    }

    /// Closes the array (`[]` when it had no rows).
    pub fn close(self, body: &mut Body) -> Result<(), QueryError> {
        body.push(if self.rows == 0 { b"[]" } else { b"]" })
    }
}

/// A [`ResultSink`] that encodes; its output is the response body.
pub struct Encoder {
    format: Format,
    body: Body,
    json: JsonArray,
    rows: usize,
}

impl Encoder {
    pub fn new(format: Format, limit: ResponseLimit) -> Self {
        Self {
            format,
            body: Body::new(limit),
            json: JsonArray::default(),
            rows: 0,
        }
    }

    /// Bytes encoded so far: with a limit, never more than one slice past it.
    pub fn encoded_len(&self) -> usize {
        self.body.out.len()
    }

    fn csv_header(&mut self, schema: &SchemaRef) -> Result<(), ArrowError> {
        let empty = naive_times(&RecordBatch::new_empty(schema.clone()))?;
        arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut self.body.out)
            .write(&empty)
    }
}

impl ResultSink for Encoder {
    type Output = Vec<u8>;

    fn batch(&mut self, _: &SchemaRef, batch: &RecordBatch) -> Result<(), QueryError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.format == Format::Json {
            self.rows += batch.num_rows();
            return self.json.write(&mut self.body, batch);
        }
        let batch = naive_times(batch).map_err(encoding)?;
        for slice in slices(&batch) {
            self.body.expect(&slice)?;
            let start = self.body.out.len();
            let rows = slice.num_rows();
            match self.format {
                Format::Json => unreachable!("written above"),
                Format::NdJson => {
                    let mut w = arrow::json::WriterBuilder::new()
                        .with_explicit_nulls(true)
                        .build::<_, arrow::json::writer::LineDelimited>(&mut self.body.out);
                    w.write(&slice).map_err(encoding)?;
                    w.finish().map_err(encoding)?;
                }
                Format::Csv | Format::CsvRaw => {
                    let slice = if self.format == Format::Csv {
                        neutralised(&slice).map_err(encoding)?
                    } else {
                        slice
                    };
                    arrow::csv::WriterBuilder::new()
                        .with_header(self.rows == 0)
                        .build(&mut self.body.out)
                        .write(&slice)
                        .map_err(encoding)?;
                }
            }
            self.rows += rows;
            self.body.counted_from(start)?;
        }
        Ok(())
    }

    fn finish(mut self, schema: &SchemaRef) -> Result<Vec<u8>, QueryError> {
        match self.format {
            Format::Json => {
                let json = std::mem::take(&mut self.json);
                json.close(&mut self.body)?;
            }
            Format::NdJson => {}
            // Still print the header.
            Format::Csv | Format::CsvRaw if self.rows == 0 => {
                let start = self.body.out.len();
                self.csv_header(schema).map_err(encoding)?;
                self.body.counted_from(start)?;
            }
            Format::Csv | Format::CsvRaw => {}
        }
        Ok(self.body.into_bytes())
    }
}

/// Encodes a collected result (the CLI).
pub fn render(result: &QueryResult, format: Format) -> Result<Vec<u8>, QueryError> {
    let mut e = Encoder::new(format, ResponseLimit::Unbounded);
    for b in &result.batches {
        e.batch(&result.schema, b)?;
    }
    e.finish(&result.schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, StringViewArray};

    fn csv(format: Format, batch: &RecordBatch) -> String {
        let mut e = Encoder::new(format, ResponseLimit::Unbounded);
        e.batch(&batch.schema(), batch).unwrap();
        String::from_utf8(e.finish(&batch.schema()).unwrap()).unwrap()
    }

    #[test]
    fn csv_cells_that_would_run_as_formulas_are_neutralised_and_raw_csv_keeps_them() {
        let cells = [
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "sip:alice@example.com",
            "a=b",
            "",
        ];
        let batch = RecordBatch::try_from_iter([
            (
                "text",
                Arc::new(StringArray::from(cells.to_vec())) as ArrayRef,
            ),
            (
                "view",
                Arc::new(StringViewArray::from(cells.to_vec())) as ArrayRef,
            ),
            ("n", Arc::new(Int64Array::from(vec![-1; 9])) as ArrayRef),
        ])
        .unwrap();
        let people = csv(Format::Csv, &batch);
        let machines = csv(Format::CsvRaw, &batch);
        let mut rows = arrow::csv::ReaderBuilder::new(Arc::new(Schema::new(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("view", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ])))
        .with_header(true)
        .build(people.as_bytes())
        .unwrap();
        let read = rows.next().unwrap().unwrap();
        for col in ["text", "view"] {
            let got = read.column_by_name(col).unwrap().as_string::<i32>();
            for (i, cell) in cells.iter().enumerate() {
                let want = if runs_as_formula(cell) {
                    format!("'{cell}")
                } else {
                    cell.to_string()
                };
                assert_eq!(got.is_null(i) || got.value(i).is_empty(), cell.is_empty());
                if !cell.is_empty() {
                    assert_eq!(got.value(i), want, "{col} row {i}");
                }
            }
        }
        assert!(people.contains(",-1\n"), "numbers stay numbers: {people}");
        assert!(machines.contains("=HYPERLINK"), "{machines}");
        assert!(!machines.contains("'="), "{machines}");
        assert_eq!(Format::parse(Some("csv-raw")), Ok(Format::CsvRaw));
    }

    #[test]
    fn encoding_stops_at_the_limit_inside_one_batch() {
        // One batch of 512 payloads of 64 KiB: 32 MiB encoded whole.
        let payload = "x".repeat(64 << 10);
        let batch = RecordBatch::try_from_iter([(
            "payload",
            Arc::new(StringArray::from(vec![payload.as_str(); 512])) as ArrayRef,
        )])
        .unwrap();
        let limit = 1 << 20;
        for format in [Format::Json, Format::NdJson, Format::Csv, Format::CsvRaw] {
            let mut e = Encoder::new(format, ResponseLimit::Body(limit));
            let r = e.batch(&batch.schema(), &batch);
            assert!(
                matches!(r, Err(QueryError::TooLarge(l)) if l == limit),
                "{format:?}"
            );
            assert!(
                e.encoded_len() <= limit + SLICE_BYTES + (64 << 10) + 64,
                "{format:?}: {} bytes encoded for a {limit}-byte limit",
                e.encoded_len()
            );
        }
        // Under the limit, slicing changes nothing.
        let mut whole = Encoder::new(Format::Json, ResponseLimit::Unbounded);
        whole.batch(&batch.schema(), &batch).unwrap();
        let out = whole.finish(&batch.schema()).unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap();
        assert_eq!(rows.len(), 512);
        assert!(rows.iter().all(|r| r["payload"] == payload.as_str()));
    }
}
