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
    pub fn parse(s: Option<&str>) -> Result<Self, String> {
        match s.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("json") => Ok(Format::Json),
            Some("ndjson") | Some("jsonl") => Ok(Format::NdJson),
            Some("csv") => Ok(Format::Csv),
            Some("csv-raw") => Ok(Format::CsvRaw),
            Some(other) => Err(format!(
                "unknown format '{other}': use json, ndjson, csv or csv-raw"
            )),
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

    /// What `bytes` add to the counted size.
    fn cost(self, bytes: &[u8]) -> usize {
        match self {
            ResponseLimit::LambdaPayload(_) => json_escaped_len(bytes),
            _ => bytes.len(),
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

/// A [`ResultSink`] that encodes; its output is the response body.
pub struct Encoder {
    format: Format,
    limit: ResponseLimit,
    out: Vec<u8>,
    counted: usize,
    rows: usize,
}

impl Encoder {
    pub fn new(format: Format, limit: ResponseLimit) -> Self {
        Self {
            format,
            limit,
            out: Vec::new(),
            counted: 0,
            rows: 0,
        }
    }

    fn counted_from(&mut self, start: usize) -> Result<(), QueryError> {
        self.counted += self.limit.cost(&self.out[start..]);
        match self.limit.limit() {
            Some(max) if self.counted > max => Err(QueryError::TooLarge(max)),
            _ => Ok(()),
        }
    }

    fn csv_header(&mut self, schema: &SchemaRef) -> Result<(), ArrowError> {
        let empty = naive_times(&RecordBatch::new_empty(schema.clone()))?;
        arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut self.out)
            .write(&empty)
    }
}

impl ResultSink for Encoder {
    type Output = Vec<u8>;

    fn batch(&mut self, _: &SchemaRef, batch: &RecordBatch) -> Result<(), QueryError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = naive_times(batch).map_err(encoding)?;
        let rows = batch.num_rows();
        let start = self.out.len();
        let first = self.rows == 0;
        match self.format {
            Format::Json => {
                // One array across batches: each batch's objects, comma-joined.
                let mut one = Vec::new();
                let mut w = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::JsonArray>(&mut one);
                w.write(&batch).map_err(encoding)?;
                w.finish().map_err(encoding)?;
                drop(w);
                self.out.push(if first { b'[' } else { b',' });
                self.out.extend_from_slice(&one[1..one.len() - 1]);
            }
            Format::NdJson => {
                let mut w = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::LineDelimited>(&mut self.out);
                w.write(&batch).map_err(encoding)?;
                w.finish().map_err(encoding)?;
            }
            Format::Csv | Format::CsvRaw => {
                let batch = if self.format == Format::Csv {
                    neutralised(&batch).map_err(encoding)?
                } else {
                    batch
                };
                arrow::csv::WriterBuilder::new()
                    .with_header(first)
                    .build(&mut self.out)
                    .write(&batch)
                    .map_err(encoding)?;
            }
        }
        self.rows += rows;
        self.counted_from(start)
    }

    fn finish(mut self, schema: &SchemaRef) -> Result<Vec<u8>, QueryError> {
        let start = self.out.len();
        match self.format {
            Format::Json if self.rows == 0 => self.out.extend_from_slice(b"[]"),
            Format::Json => self.out.push(b']'),
            Format::NdJson => {}
            // Still print the header.
            Format::Csv | Format::CsvRaw if self.rows == 0 => {
                self.csv_header(schema).map_err(encoding)?
            }
            Format::Csv | Format::CsvRaw => {}
        }
        self.counted_from(start)?;
        Ok(self.out)
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
}
