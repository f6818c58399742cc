//! The one definition of every table's columns. Writer, compactor, query
//! engine and Glue tables all derive from here.
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType};

use crate::{LakeError, Result};

/// HEP type carrying SIP: its table gets the extracted SIP columns too.
pub const SIP_TYPE: u8 = 1;
/// HEP type of RTCP reports (heplify sends them as JSON).
pub const RTCP_TYPE: u8 = 5;

/// Name of the table for a HEP payload type.
pub fn table_name(hep_type: u8) -> String {
    format!("hep_{hep_type}")
}

/// The HEP type a table name stands for (`hep_1` → 1).
pub fn parse_table_name(name: &str) -> Option<u8> {
    let n = name.strip_prefix("hep_")?;
    // Only canonical spellings: "hep_01" would alias "hep_1".
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    n.parse().ok()
}

pub const TIME: &str = "time";
/// The capture time a message carried when it was outside the accepted
/// window and `time` holds its arrival instead (null otherwise).
pub const ORIGINAL_TIME: &str = "original_time";

/// Timestamps are UTC instants (Parquet isAdjustedToUTC = true).
pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn common_fields() -> Vec<Field> {
    vec![
        Field::new(TIME, time_type(), false),
        Field::new("time_sec", DataType::Int64, false),
        // HEP carries a u32; Int64 holds all of it (files before 0.2 have Int32: read cast).
        Field::new("time_usec", DataType::Int64, false),
        Field::new("type", DataType::Int32, false),
        Field::new("capture_id", DataType::Int64, false),
        Field::new("capture_pass", DataType::Utf8, true),
        Field::new("correlation_id", DataType::Utf8, true),
        Field::new("src_ip", DataType::Utf8, true),
        Field::new("dst_ip", DataType::Utf8, true),
        Field::new("src_port", DataType::Int32, false),
        Field::new("dst_port", DataType::Int32, false),
        Field::new("ip_family", DataType::Int32, false),
        Field::new("protocol", DataType::Int32, false),
        Field::new("proto_type", DataType::Int32, false),
        Field::new("node_name", DataType::Utf8, true),
        Field::new("vlan", DataType::Int32, true),
        Field::new("payload", DataType::Utf8, false),
    ]
}

/// Columns extracted from SIP messages (table hep_1 only).
pub const SIP_COLUMNS: [(&str, DataType); 12] = [
    ("method", DataType::Utf8),
    ("status", DataType::Int32),
    ("call_id", DataType::Utf8),
    ("cseq_num", DataType::Int64),
    ("cseq_method", DataType::Utf8),
    ("from_user", DataType::Utf8),
    ("from_tag", DataType::Utf8),
    ("to_user", DataType::Utf8),
    ("to_tag", DataType::Utf8),
    ("ruri_user", DataType::Utf8),
    ("ruri_domain", DataType::Utf8),
    ("user_agent", DataType::Utf8),
];

/// SIP columns added after the first release, after `original_time`: what
/// ties a call's legs together (`aleg_id`: the A leg's Call-ID a B2BUA copies
/// into the B leg), what a call flow shows, and what a call record names
/// (the From and To domains, the Reason header). New ones go last.
pub const ADDED_SIP_COLUMNS: [(&str, DataType); 9] = [
    ("aleg_id", DataType::Utf8),
    ("via_branch", DataType::Utf8),
    ("contact", DataType::Utf8),
    ("content_type", DataType::Utf8),
    ("sdp_media_ip", DataType::Utf8),
    ("sdp_media_port", DataType::Int32),
    ("from_domain", DataType::Utf8),
    ("to_domain", DataType::Utf8),
    ("reason", DataType::Utf8),
];

/// Columns given Parquet bloom filters: the ones calls are looked up by.
pub fn bloom_columns(hep_type: u8) -> &'static [&'static str] {
    if hep_type == SIP_TYPE {
        &[
            "correlation_id",
            "call_id",
            "from_user",
            "to_user",
            "ruri_user",
            "aleg_id",
        ]
    } else {
        &["correlation_id"]
    }
}

/// Columns without a dictionary: nearly every value differs within a row
/// group, so a dictionary saves nothing, and a lookup that reads one page of
/// the column would first decode the whole row group's dictionary (with text
/// read as views, 12 % of a warm Call-ID lookup). The lookup columns are
/// among them; `payload` too; and the microsecond times, whose dictionary in
/// a 64k-row group is half a megabyte.
pub fn no_dictionary_columns(hep_type: u8) -> &'static [&'static str] {
    if hep_type == SIP_TYPE {
        &[
            TIME,
            "time_usec",
            ORIGINAL_TIME,
            "payload",
            "correlation_id",
            "call_id",
            "from_user",
            "from_tag",
            "to_user",
            "to_tag",
            "ruri_user",
        ]
    } else {
        &[
            TIME,
            "time_usec",
            ORIGINAL_TIME,
            "payload",
            "correlation_id",
        ]
    }
}

/// The columns rows are ordered by inside a time bucket (see [`SortKey`]):
/// a call's messages together, in time order.
pub fn sort_columns(hep_type: u8) -> &'static [&'static str] {
    if hep_type == SIP_TYPE {
        &["call_id", TIME]
    } else {
        &["correlation_id", TIME]
    }
}

/// Width of the time buckets rows are ordered by first.
pub const SORT_BUCKET_MICROS: i64 = 60_000_000;

/// The order of rows in every file of a table: by minute of `time`, then by
/// [`sort_columns`]. Row groups so hold a stretch of time each, and their
/// statistics tell a query which ones a time window covers whole (no filter)
/// or misses (not read); inside a minute a call's messages stay together,
/// so a lookup still reads one page per column of each minute the call
/// spans. Ascending, nulls last.
#[derive(Debug, Clone, Copy)]
pub struct SortKey {
    hep_type: u8,
}

impl SortKey {
    pub fn of(hep_type: u8) -> Self {
        Self { hep_type }
    }

    /// The key's types, as [`Self::columns`] gives them.
    pub fn types(&self) -> Vec<DataType> {
        let schema = schema_for(self.hep_type);
        std::iter::once(Ok(DataType::Int64))
            .chain(
                sort_columns(self.hep_type)
                    .iter()
                    .map(|c| schema.field_with_name(c).map(|f| f.data_type().clone())),
            )
            .collect::<std::result::Result<_, _>>()
            .expect("sort columns are in the schema")
    }

    /// The key of each row of `batch` (a batch of this table).
    pub fn columns(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        let time = batch
            .column_by_name(TIME)
            .ok_or_else(|| LakeError::Other("a batch without `time`".into()))?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| LakeError::Other("`time` is not in microseconds".into()))?;
        let bucket: Int64Array = time.unary(|t| t.div_euclid(SORT_BUCKET_MICROS));
        let mut key: Vec<ArrayRef> = vec![Arc::new(bucket)];
        for c in sort_columns(self.hep_type) {
            key.push(
                batch
                    .column_by_name(c)
                    .ok_or_else(|| LakeError::Other(format!("a batch without `{c}`")))?
                    .clone(),
            );
        }
        Ok(key)
    }
}

// Columns added after the first release go last, so older files' columns
// are a prefix of today's and readers fill the rest with nulls.
fn added_fields() -> Vec<Field> {
    vec![Field::new(ORIGINAL_TIME, time_type(), true)]
}

static COMMON: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = common_fields();
    f.extend(added_fields());
    Arc::new(Schema::new(f))
});
static SIP: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = common_fields();
    f.extend(
        SIP_COLUMNS
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true)),
    );
    f.extend(added_fields());
    f.extend(
        ADDED_SIP_COLUMNS
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true)),
    );
    Arc::new(Schema::new(f))
});

/// Arrow schema of table `hep_<hep_type>`.
pub fn schema_for(hep_type: u8) -> SchemaRef {
    if hep_type == SIP_TYPE {
        SIP.clone()
    } else {
        COMMON.clone()
    }
}

/// The table as queries see it: text columns as Utf8View, which the Parquet
/// reader fills with views into the decoded pages instead of copying every
/// value (a payload scan spent a fifth of its time in that copy).
pub fn query_schema_for(hep_type: u8) -> SchemaRef {
    static QUERY: LazyLock<[SchemaRef; 2]> =
        LazyLock::new(|| [SIP_TYPE, 0].map(|t| text_as_views(&schema_for(t))));
    QUERY[usize::from(hep_type != SIP_TYPE)].clone()
}

/// `schema` with its Utf8 columns as Utf8View.
fn text_as_views(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The table of call records (`lake::calls`): one row per call.
pub const CALLS_TABLE: &str = "calls";
/// When a call began: its first INVITE. A record's partition is this hour.
pub const START_TIME: &str = "start_time";

/// Columns of the `calls` table, in order: when, which legs, how it went
/// (post-dial delay, setup time, duration, final status, who hung up), who
/// called whom, from where, and how many messages.
pub fn calls_schema() -> SchemaRef {
    static CALLS: LazyLock<SchemaRef> = LazyLock::new(|| {
        let text = |n: &str| Field::new(n, DataType::Utf8, true);
        let time = |n: &str| Field::new(n, time_type(), true);
        let int = |n: &str| Field::new(n, DataType::Int64, true);
        Arc::new(Schema::new(vec![
            Field::new(START_TIME, time_type(), false),
            Field::new("call_id", DataType::Utf8, false),
            // The other legs' Call-IDs, space-separated (null for a one-leg call).
            text("b_legs"),
            Field::new("legs", DataType::Int32, false),
            Field::new("end_time", time_type(), false),
            time("ringing_time"),
            time("answer_time"),
            time("bye_time"),
            int("pdd_ms"),
            int("setup_ms"),
            int("duration_ms"),
            Field::new("final_status", DataType::Int32, true),
            // `caller` or `callee`: whose side sent the first BYE.
            text("ended_by"),
            text("caller"),
            text("callee"),
            text("ruri_user"),
            text("ruri_domain"),
            text("user_agent"),
            text("src_ip"),
            Field::new("src_port", DataType::Int32, true),
            text("dst_ip"),
            Field::new("dst_port", DataType::Int32, true),
            Field::new("messages", DataType::Int64, false),
            // Added after the first builds (BUILD_VERSION 2): go last.
            // The Reason header of what ended the call (failure, BYE or CANCEL).
            text("reason"),
            text("from_domain"),
            text("to_domain"),
            // The hours holding the call's SIP messages: `2026-12-01T10`, space-separated.
            text("hours"),
            int("rtcp_reports"),
            // Media quality per direction, as the receiving side's RTCP
            // reports tell it: the most packets lost, the worst jitter.
            int("caller_to_callee_lost"),
            int("caller_to_callee_jitter_max"),
            int("callee_to_caller_lost"),
            int("callee_to_caller_jitter_max"),
        ]))
    });
    CALLS.clone()
}

/// The timestamp columns of `calls`.
pub const CALLS_TIME_COLUMNS: [&str; 5] = [
    START_TIME,
    "end_time",
    "ringing_time",
    "answer_time",
    "bye_time",
];

/// Columns of `calls` given bloom filters: what a search looks calls up by.
pub const CALLS_BLOOM_COLUMNS: [&str; 4] = ["call_id", "caller", "callee", "ruri_user"];

/// `calls` as queries see it: text as Utf8View, like the other tables.
pub fn calls_query_schema() -> SchemaRef {
    static QUERY: LazyLock<SchemaRef> = LazyLock::new(|| text_as_views(&calls_schema()));
    QUERY.clone()
}

/// `batch` with exactly `schema`'s columns, by name: a file written before a
/// column was added gets nulls for it. A missing required column is an error.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema() == *schema {
        return Ok(batch.clone());
    }
    let cols = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => Ok(cast(c, f.data_type())?),
            None if f.is_nullable() => Ok(new_null_array(f.data_type(), batch.num_rows())),
            None => Err(LakeError::Other(format!("column {} missing", f.name()))),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_roundtrip_and_reject_aliases() {
        assert_eq!(parse_table_name(&table_name(100)), Some(100));
        assert_eq!(parse_table_name("hep_1"), Some(1));
        for bad in ["hep_", "hep_01", "hep_256", "hep_x", "sip", "hep_-1"] {
            assert_eq!(parse_table_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn sip_table_has_extra_columns() {
        assert_eq!(
            schema_for(1).fields().len(),
            schema_for(5).fields().len() + SIP_COLUMNS.len() + ADDED_SIP_COLUMNS.len()
        );
        assert_eq!(schema_for(5).fields().last().unwrap().name(), ORIGINAL_TIME);
        // Added columns go last: an older file's columns are a prefix.
        let sip = schema_for(1);
        let n = sip.fields().len();
        assert_eq!(
            sip.fields()[n - ADDED_SIP_COLUMNS.len() - 1].name(),
            ORIGINAL_TIME
        );
        for c in bloom_columns(1).iter().chain(sort_columns(1)) {
            schema_for(1).field_with_name(c).unwrap();
        }
    }
}
