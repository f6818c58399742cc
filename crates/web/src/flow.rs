//! The calls endpoints as query-pool jobs: every statement of a search or a
//! flow, and the encoding of its answer, run on the query pool under one
//! slot and one timeout (`QueryEngine::job`), and the answer is encoded from
//! the query's batches as they come, counted against the response limit, so
//! a flow of large payloads stops at the limit rather than being held twice.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, ListBuilder, RecordBatch, StringBuilder};
use arrow::datatypes::{Field, Schema};
use lake::engine::{QueryError, QueryResult, Rows, Statements};

use crate::calls::{self, Columns, Hosts, RtcpSummary, Search, Statement, TimeRange};
use crate::encode::{Body, JsonArray, ResponseLimit};
use crate::error::ApiError;
use crate::export;

async fn query(st: &Statements, s: &Statement) -> Result<QueryResult, QueryError> {
    st.query(&s.sql, &s.params()).await
}

async fn rows(st: &Statements, s: &Statement) -> Result<Rows, QueryError> {
    st.rows(&s.sql, &s.params()).await
}

/// `GET /api/v1/calls`: one JSON object per call, newest first, each with
/// its B legs. Calls that began where the call records end or later are
/// found from their messages (at most [`calls::MAX_RANGE_MICROS`] of them);
/// earlier ones from the records, over the whole range.
pub async fn search(
    st: Statements,
    search: Search,
    limit: ResponseLimit,
) -> Result<Vec<u8>, ApiError> {
    let until = st.calls_recorded_until().await?;
    let (recorded, open) = search.split(until);
    if let Some(open) = open
        && open.to - open.from > calls::MAX_RANGE_MICROS
    {
        return Err(ApiError::BadRequest(match until {
            Some(u) => format!(
                "calls are recorded up to {}; a search reaches at most 24 hours past that: \
                 narrow from= and to=",
                calls::ts(u)
            ),
            None => {
                "no call records yet: a search covers at most 24 hours; narrow from= and to=".into()
            }
        }));
    }
    let mut body = Body::new(limit);
    let mut out = JsonArray::default();
    let mut found = 0;
    if let Some(open) = open {
        let search = search.within(open);
        let recent = query(&st, &search.recent_sql()).await?;
        let mut picked = calls::pick_calls(&recent.batches, search.limit);
        if let Some(until) = until.filter(|_| !picked.is_empty()) {
            let reach = calls::RECORDED_REACH_MICROS;
            let known = query(&st, &Search::recorded_sql(until, reach, &picked)).await?;
            for id in calls::texts(&known.batches, &["call_id"]) {
                picked.remove(&id);
            }
        }
        if !picked.is_empty() {
            let links = query(&st, &calls::links_sql(search.range, &picked)).await?;
            let b_legs = calls::b_legs(&links.batches, &picked);
            let mut summary = rows(&st, &search.summary_sql(&picked)).await?;
            while let Some(batch) = summary.next().await? {
                found += batch.num_rows();
                out.write(&mut body, &with_b_legs(&batch, &b_legs)?)?;
            }
        }
    }
    if let Some(recorded) = recorded.filter(|_| found < search.limit) {
        let mut records = rows(&st, &search.records_sql(recorded, search.limit - found)).await?;
        while let Some(batch) = records.next().await? {
            out.write(&mut body, &b_legs_as_list(&batch)?)?;
        }
    }
    out.close(&mut body)?;
    Ok(body.into_bytes())
}

/// Record rows with `b_legs` as a list, as the summary answers it (the
/// table holds them space-separated).
fn b_legs_as_list(batch: &RecordBatch) -> Result<RecordBatch, QueryError> {
    use arrow::array::{Array, AsArray};
    let text = |name| {
        calls::text_column(batch, name)
            .ok_or_else(|| QueryError::Internal(format!("a record without {name}")))
    };
    let (ids, legs) = (text("call_id")?, text("b_legs")?);
    let (ids, legs) = (ids.as_string::<i32>(), legs.as_string::<i32>());
    let mut b_legs = BTreeMap::new();
    for row in (0..batch.num_rows()).filter(|&r| ids.is_valid(r) && legs.is_valid(r)) {
        let split = legs.value(row).split(' ').map(str::to_owned).collect();
        b_legs.insert(ids.value(row).to_owned(), split);
    }
    let without: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| batch.schema().field(i).name() != "b_legs")
        .collect();
    let batch = batch
        .project(&without)
        .map_err(|e| QueryError::Internal(format!("b_legs: {e}")))?;
    with_b_legs(&batch, &b_legs)
}

/// The summary rows with a `b_legs` column: each call's B legs, or null.
fn with_b_legs(
    batch: &RecordBatch,
    b_legs: &BTreeMap<String, BTreeSet<String>>,
) -> Result<RecordBatch, QueryError> {
    let ids = Columns::of(batch);
    let mut legs = ListBuilder::new(StringBuilder::new());
    for row in 0..batch.num_rows() {
        match ids.text("call_id", row).and_then(|id| b_legs.get(id)) {
            Some(l) => legs.append_value(l.iter().map(Some)),
            None => legs.append_null(),
        }
    }
    let legs: ArrayRef = Arc::new(legs.finish());
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("b_legs", legs.data_type().clone(), true));
    let mut columns = batch.columns().to_vec();
    columns.push(legs);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| QueryError::Internal(format!("adding b_legs: {e}")))
}

/// What a call flow is answered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Json,
    Pcap,
    Text,
}

/// The tables beside `hep_1` a flow reads, with the JSON key and text kind of each.
const CORRELATED: [(&str, &str, &str); 2] = [("hep_5", "rtcp", "RTCP"), ("hep_100", "logs", "LOG")];

/// A call's legs: the call, the calls naming it as their A leg (header or
/// HEP correlation id), the A leg it names, and so on, until nothing new
/// turns up or [`calls::MAX_LEGS`] are found.
async fn legs(
    st: &Statements,
    mut legs: BTreeSet<String>,
    window: TimeRange,
) -> Result<BTreeSet<String>, QueryError> {
    loop {
        let r = query(st, &calls::legs_sql(window, &legs)).await?;
        let found = calls::texts(&r.batches, &calls::LEG_COLUMNS);
        let before = legs.len();
        legs.extend(
            found
                .into_iter()
                .take(calls::MAX_LEGS.saturating_sub(before)),
        );
        if legs.len() == before || legs.len() >= calls::MAX_LEGS {
            return Ok(legs);
        }
    }
}

/// Which of [`CORRELATED`] exist: a lake that never received RTCP or logs has no such table.
pub(crate) async fn present_tables(st: &Statements) -> Result<BTreeSet<String>, QueryError> {
    let r = st.query(calls::CORRELATED_TABLES_SQL, &[]).await?;
    Ok(calls::texts(&r.batches, &["table_name"]))
}

fn not_found(call_ids: &BTreeSet<String>) -> ApiError {
    let named = match call_ids.len() {
        1 => format!("Call-ID {:?}", call_ids.first().expect("one")),
        n => format!("any of {n} Call-IDs"),
    };
    ApiError::NotFound(format!(
        "no SIP message of {named} between from and to, widened by {} minutes",
        calls::FLOW_MARGIN_MICROS / 60_000_000
    ))
}

/// `GET /api/v1/calls/{id}` and its exports.
pub async fn flow(
    st: Statements,
    call_id: String,
    window: TimeRange,
    view: View,
    limit: ResponseLimit,
) -> Result<Vec<u8>, ApiError> {
    flow_of(st, [call_id].into(), window, view, limit).await
}

/// The flow of the calls `call_ids` and their legs; JSON names the first.
pub async fn flow_of(
    st: Statements,
    call_ids: BTreeSet<String>,
    window: TimeRange,
    view: View,
    limit: ResponseLimit,
) -> Result<Vec<u8>, ApiError> {
    let call_id = call_ids.first().cloned().unwrap_or_default();
    let legs = legs(&st, call_ids.clone(), window).await?;
    let mut body = Body::new(limit);
    let mut out = match view {
        View::Json => FlowOut::Json {
            hosts: Hosts::default(),
            rtcp: RtcpSummary::default(),
        },
        View::Pcap => FlowOut::Pcap(Vec::new()),
        View::Text => FlowOut::Text(Vec::new()),
    };
    if let FlowOut::Json { .. } = out {
        body.push(b"{\"call_id\":")?;
        body.push(&serde_json::to_vec(&call_id).expect("a string serialises"))?;
        body.push(b",\"messages\":")?;
    }
    // The messages, streamed; only Call-IDs that have some are legs (the
    // suffix forms were guesses).
    let mut messages = rows(&st, &calls::messages_sql(window, &legs)).await?;
    let (mut count, mut found, mut array) = (0, BTreeSet::new(), JsonArray::default());
    while let Some(batch) = messages.next().await? {
        let c = Columns::of(&batch);
        count += c.rows;
        found.extend((0..c.rows).filter_map(|r| c.text("call_id", r).map(str::to_owned)));
        match &mut out {
            FlowOut::Json { hosts, .. } => {
                hosts.add(&c);
                array.write(&mut body, &batch)?;
            }
            FlowOut::Pcap(frames) => hold(&mut body, frames, export::sip_frames(&c))?,
            FlowOut::Text(entries) => hold(&mut body, entries, export::text_entries(&c, "SIP"))?,
        }
    }
    if count == 0 {
        return Err(not_found(&call_ids));
    }
    if let FlowOut::Json { hosts, .. } = &mut out {
        array.close(&mut body)?;
        let head = serde_json::json!({
            "legs": found,
            "hosts": std::mem::take(hosts).into_vec(),
            "truncated": count >= calls::MAX_FLOW_ROWS,
        });
        body.push(&object_members(&head))?;
    }
    let present = present_tables(&st).await?;
    for (table, key, kind) in CORRELATED {
        if matches!(out, FlowOut::Pcap(_)) && key == "logs" {
            continue;
        }
        let mut array = JsonArray::default();
        if let FlowOut::Json { .. } = out {
            body.push(format!(",\"{key}\":").as_bytes())?;
        }
        if present.contains(table) {
            let mut rows = rows(&st, &calls::correlated_sql(table, window, &found)).await?;
            while let Some(batch) = rows.next().await? {
                let c = Columns::of(&batch);
                match &mut out {
                    FlowOut::Json { rtcp, .. } => {
                        if key == "rtcp" {
                            rtcp.add(&c);
                        }
                        array.write(&mut body, &batch)?;
                    }
                    FlowOut::Pcap(frames) => hold(&mut body, frames, export::rtcp_frames(&c))?,
                    FlowOut::Text(entries) => {
                        hold(&mut body, entries, export::text_entries(&c, kind))?
                    }
                }
            }
        }
        if let FlowOut::Json { .. } = out {
            array.close(&mut body)?;
        }
    }
    Ok(match out {
        FlowOut::Json { rtcp, .. } => {
            body.push(b",\"rtcp_summary\":")?;
            body.push(&serde_json::to_vec(&rtcp.to_json()).expect("JSON values serialise"))?;
            body.push(b"}")?;
            body.into_bytes()
        }
        FlowOut::Pcap(frames) => export::pcap(frames),
        FlowOut::Text(entries) => export::text(entries).into_bytes(),
    })
}

/// What a flow gathers while its rows stream: JSON is written at once; a
/// PCAP's frames and the text's entries are held (counted against the
/// limit) until the last row, since they go out in time order.
enum FlowOut {
    Json { hosts: Hosts, rtcp: RtcpSummary },
    Pcap(Vec<export::Frame>),
    Text(Vec<(i64, String)>),
}

/// Something held for the body until the last row: what it will add to it.
trait Held {
    fn reserve(&self, body: &mut Body) -> Result<(), QueryError>;
}

impl Held for export::Frame {
    fn reserve(&self, body: &mut Body) -> Result<(), QueryError> {
        body.reserve_binary(self.size())
    }
}

impl Held for (i64, String) {
    fn reserve(&self, body: &mut Body) -> Result<(), QueryError> {
        body.reserve_text(self.1.as_bytes())
    }
}

fn hold<T: Held>(
    body: &mut Body,
    held: &mut Vec<T>,
    items: impl Iterator<Item = T>,
) -> Result<(), QueryError> {
    for item in items {
        item.reserve(body)?;
        held.push(item);
    }
    Ok(())
}

/// `{"a":1,"b":2}` as `,"a":1,"b":2`: members to append to an open object.
fn object_members(v: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).expect("JSON values serialise");
    out.pop();
    out[0] = b',';
    out
}
