//! Calls as HOMER users ask for them: a search that answers one row per call,
//! and a call's flow across its legs with its RTCP and log lines. Both are
//! SQL over the lake; this module builds the statements (pure) and shapes
//! the answers.
use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, AsArray, RecordBatch};
use chrono::{DateTime, SecondsFormat};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::BadParameter;

/// The widest time range a call flow may ask for, and the widest a search
/// may read from SIP messages (past the call records, see [`Search`]).
pub const MAX_RANGE_MICROS: i64 = 24 * 3_600_000_000;
/// The widest time range a search may ask for: call records answer it.
pub const MAX_SEARCH_RANGE_MICROS: i64 = 366 * MAX_RANGE_MICROS;
/// How far before the records' end a call found from messages after it may
/// have begun (a record holds a few hours of its call's messages).
pub const RECORDED_REACH_MICROS: i64 = 6 * 3_600_000_000;
/// A call flow looks this far past each end of the range asked, so a call is
/// not cut off by it.
pub const FLOW_MARGIN_MICROS: i64 = 5 * 60_000_000;
/// Calls a search answers when `limit` is not given, and at most.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// Legs a call flow follows at most (a loop of B2BUAs cannot grow it further).
pub const MAX_LEGS: usize = 32;
/// Messages of each kind a call flow returns at most.
pub const MAX_FLOW_ROWS: usize = 5000;
pub use lake::calls::build::B2B_SUFFIX;

/// A time range, microseconds since the epoch, `to` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: i64,
    pub to: i64,
}

impl TimeRange {
    /// Kept within 1970..=9999, which every time literal can name.
    fn widened(self, by: i64) -> Self {
        Self {
            from: self.from.saturating_sub(by).max(0),
            to: self.to.saturating_add(by).min(MAX_TIME_MICROS),
        }
    }

    fn sql(self) -> String {
        format!("time >= {} AND time < {}", ts(self.from), ts(self.to))
    }
}

/// The latest time a range may name: 9999-12-31T23:59:59.999999Z (µs), so
/// that widening a range and writing it as SQL cannot overflow.
pub const MAX_TIME_MICROS: i64 = 253_402_300_799_999_999;

/// Epoch milliseconds (as HOMER sends them) or RFC 3339, from 1970 to 9999.
fn parse_time(name: &str, v: &str) -> Result<i64, BadParameter> {
    let v = v.trim();
    let micros = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        v.parse::<i64>().ok().and_then(|ms| ms.checked_mul(1000))
    } else {
        let t = DateTime::parse_from_rfc3339(v).map_err(|_| {
            BadParameter(format!(
                "{name}={v:?}: use RFC 3339 (2026-11-29T10:00:00Z) or epoch milliseconds"
            ))
        })?;
        Some(t.timestamp_micros())
    };
    micros
        .filter(|t| (0..=MAX_TIME_MICROS).contains(t))
        .ok_or_else(|| BadParameter(format!("{name}={v}: out of range (1970 to 9999)")))
}

/// The range `from`..`to`: both required, `from` before `to`, at most a day.
pub fn parse_range(from: Option<&str>, to: Option<&str>) -> Result<TimeRange, BadParameter> {
    parse_range_within(from, to, MAX_RANGE_MICROS)
}

/// The range `from`..`to`: both required, `from` before `to`, at most `max` µs.
pub fn parse_range_within(
    from: Option<&str>,
    to: Option<&str>,
    max: i64,
) -> Result<TimeRange, BadParameter> {
    let (Some(from), Some(to)) = (from, to) else {
        return Err(BadParameter::from(
            "give the time range as from= and to= (RFC 3339, e.g. \
                    2026-11-29T10:00:00Z, or epoch milliseconds)",
        ));
    };
    let r = TimeRange {
        from: parse_time("from", from)?,
        to: parse_time("to", to)?,
    };
    if r.to <= r.from {
        return Err(BadParameter::from("to must be later than from"));
    }
    if r.to - r.from > max {
        return Err(BadParameter::from(format!(
            "the range is {:.1} hours; at most {}: narrow from= and to=",
            (r.to - r.from) as f64 / 3.6e9,
            max / 3_600_000_000
        )));
    }
    Ok(r)
}

/// A SQL timestamp literal the scan's time pruning understands.
pub(crate) fn ts(micros: i64) -> String {
    let t = DateTime::from_timestamp_micros(micros).unwrap_or_default();
    format!("'{}'", t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// A statement and the text values bound to its `$1`, `$2` … Values taken
/// from a request or from the lake are never pasted into SQL: whatever a
/// captured Call-ID holds, it can neither change a statement nor grow its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<String>,
}

impl Statement {
    /// The placeholder of `value`, bound as the next parameter.
    pub(crate) fn bind(&mut self, value: &str) -> String {
        self.params.push(value.to_owned());
        format!("${}", self.params.len())
    }

    /// Placeholders of `values`, comma-separated, for an `IN (…)` list.
    pub(crate) fn bind_all<'a>(&mut self, values: impl IntoIterator<Item = &'a String>) -> String {
        values
            .into_iter()
            .map(|v| self.bind(v))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn params(&self) -> Vec<&str> {
        self.params.iter().map(String::as_str).collect()
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct SearchParams {
    pub from: Option<String>,
    pub to: Option<String>,
    /// The caller's user part (`From`).
    pub caller: Option<String>,
    /// The callee's user part (`To` or request URI).
    pub callee: Option<String>,
    /// A Call-ID: the call itself, or the B legs that name it as their A leg.
    pub call_id: Option<String>,
    /// An address any message of the call was sent from or to.
    pub ip: Option<String>,
    /// The final status of the call's INVITE (200, 486 ...).
    pub status: Option<String>,
    pub limit: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A checked search: what `GET /api/v1/calls` asks, in three statements
/// that never join the hour with itself (a hash join over an hour of
/// 10 M messages outgrew the query pool): [`Search::recent_sql`] picks the
/// calls, [`Search::summary_sql`] sums them up, [`links_sql`] finds their B legs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    pub range: TimeRange,
    pub limit: usize,
    pub status: Option<u16>,
    /// Conditions on a message that make its call a hit, and their values.
    hit: Vec<String>,
    hit_params: Statement,
    /// The same conditions on a call record (`calls`), and their values.
    record_hit: Vec<String>,
    record_params: Statement,
}

/// Messages the first step reads per call asked for: calls whose latest
/// messages crowd the newest rows leave room for the others.
const ROWS_PER_CALL: usize = 64;

impl Search {
    pub fn parse(p: &SearchParams) -> Result<Self, BadParameter> {
        let range =
            parse_range_within(p.from.as_deref(), p.to.as_deref(), MAX_SEARCH_RANGE_MICROS)?;
        let limit = match p.limit.as_deref() {
            None | Some("") => DEFAULT_LIMIT,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(BadParameter::from(format!(
                        "limit={l:?}: a number from 1 to {MAX_LIMIT}"
                    )));
                }
            },
        };
        let status = match p.status.as_deref() {
            None | Some("") => None,
            Some(s) => match s.parse::<u16>() {
                Ok(n) if (100..700).contains(&n) => Some(n),
                _ => {
                    return Err(BadParameter::from(format!(
                        "status={s:?}: a SIP status code, 100 to 699"
                    )));
                }
            },
        };
        let mut hit = vec![range.sql(), "call_id IS NOT NULL".to_string()];
        let mut values = Statement::default();
        // A record holds its call's first INVITE's users and addresses.
        let mut record_hit = Vec::new();
        let mut record_values = Statement::default();
        if let Some(c) = given(&p.caller) {
            hit.push(format!("from_user = {}", values.bind(c)));
            record_hit.push(format!("caller = {}", record_values.bind(c)));
        }
        if let Some(c) = given(&p.callee) {
            hit.push(format!(
                "(to_user = {0} OR ruri_user = {0})",
                values.bind(c)
            ));
            record_hit.push(format!(
                "(callee = {0} OR ruri_user = {0})",
                record_values.bind(c)
            ));
        }
        if let Some(c) = given(&p.call_id) {
            hit.push(format!(
                "(call_id = {0} OR aleg_id = {0} OR correlation_id = {0})",
                values.bind(c)
            ));
            record_hit.push(format!(
                "(call_id = {0} OR strpos(coalesce(b_legs, ''), {0}) > 0)",
                record_values.bind(c)
            ));
        }
        if let Some(ip) = given(&p.ip) {
            hit.push(format!("(src_ip = {0} OR dst_ip = {0})", values.bind(ip)));
            record_hit.push(format!(
                "(src_ip = {0} OR dst_ip = {0})",
                record_values.bind(ip)
            ));
        }
        if let Some(s) = status {
            // A call whose INVITE got this answer; the summary keeps those whose final answer it is.
            hit.push(format!("status = {s} AND cseq_method = 'INVITE'"));
            record_hit.push(format!("final_status = {s}"));
        }
        Ok(Self {
            range,
            limit,
            status,
            hit,
            hit_params: values,
            record_hit,
            record_params: record_values,
        })
    }

    /// Where calls are found, given where the call records end (`until`,
    /// µs; None: no records): (the part the records answer, the part the
    /// messages answer). A call belongs to the part its first INVITE is in.
    pub fn split(&self, until: Option<i64>) -> (Option<TimeRange>, Option<TimeRange>) {
        let TimeRange { from, to } = self.range;
        let until = until.unwrap_or(i64::MIN).clamp(from, to);
        let part = |from: i64, to: i64| (from < to).then_some(TimeRange { from, to });
        (part(from, until), part(until, to))
    }

    /// Which of `calls` (picked from messages after `until`) the records
    /// before `until` hold already: calls that began before it and went on.
    pub fn recorded_sql(until: i64, follow: i64, calls: &BTreeSet<String>) -> Statement {
        let mut st = Statement::default();
        let ids = st.bind_all(calls);
        st.sql = format!(
            "SELECT call_id FROM calls WHERE start_time >= {} AND start_time < {} AND call_id IN ({ids})",
            ts(until - follow),
            ts(until)
        );
        st
    }

    /// This search over `range` only.
    pub fn within(&self, range: TimeRange) -> Self {
        let mut s = self.clone();
        s.range = range;
        s.hit[0] = range.sql();
        s
    }

    /// The newest `limit` calls of `range` from the call records, in the
    /// summary's columns and the records' own: `pdd_ms`, `setup_ms`,
    /// `talk_ms` (answer to BYE), `ended_by`.
    pub fn records_sql(&self, range: TimeRange, limit: usize) -> Statement {
        let mut conditions = vec![format!(
            "start_time >= {} AND start_time < {}",
            ts(range.from),
            ts(range.to)
        )];
        conditions.extend(self.record_hit.iter().cloned());
        Statement {
            sql: format!(
                "SELECT call_id, start_time, end_time, \
                   (CAST(end_time AS BIGINT) - CAST(start_time AS BIGINT)) / 1000 AS duration_ms, \
                   caller, callee, final_status, src_ip, src_port, dst_ip, dst_port, messages, \
                   b_legs, pdd_ms, setup_ms, duration_ms AS talk_ms, ended_by, reason, \
                   from_domain, to_domain, hours, rtcp_reports, caller_to_callee_lost, \
                   caller_to_callee_jitter_max, callee_to_caller_lost, callee_to_caller_jitter_max \
                 FROM calls WHERE {} ORDER BY start_time DESC, call_id LIMIT {limit}",
                conditions.join(" AND ")
            ),
            params: self.record_params.params.clone(),
        }
    }

    /// Step 1: the newest matching messages (a top-k the scan prunes by time,
    /// no aggregation); their distinct Call-IDs, newest first, are the calls.
    pub fn recent_sql(&self) -> Statement {
        Statement {
            sql: format!(
                "SELECT call_id, time FROM hep_1 WHERE {} ORDER BY time DESC LIMIT {}",
                self.hit.join(" AND "),
                self.limit * ROWS_PER_CALL
            ),
            params: self.hit_params.params.clone(),
        }
    }

    /// Step 2: one row per picked call, over its messages in range, newest first.
    pub fn summary_sql(&self, calls: &BTreeSet<String>) -> Statement {
        let mut st = Statement::default();
        let ids = st.bind_all(calls);
        let status = self
            .status
            .map(|s| format!("WHERE final_status = {s}"))
            .unwrap_or_default();
        st.sql = format!(
            "SELECT * FROM (SELECT call_id, min(time) AS start_time, max(time) AS end_time, \
               (CAST(max(time) AS BIGINT) - CAST(min(time) AS BIGINT)) / 1000 AS duration_ms, \
               first_value(from_user ORDER BY time) AS caller, \
               first_value(coalesce(to_user, ruri_user) ORDER BY time) AS callee, \
               min(CASE WHEN status >= 200 AND cseq_method = 'INVITE' THEN status END) AS final_status, \
               first_value(src_ip ORDER BY time) AS src_ip, first_value(src_port ORDER BY time) AS src_port, \
               first_value(dst_ip ORDER BY time) AS dst_ip, first_value(dst_port ORDER BY time) AS dst_port, \
               count(*) AS messages, \
               max(coalesce(aleg_id, CASE WHEN correlation_id <> call_id THEN correlation_id END)) AS aleg_id \
             FROM hep_1 WHERE {} AND call_id IN ({ids}) GROUP BY call_id) {status} \
             ORDER BY start_time DESC, call_id",
            self.range.sql(),
        );
        st
    }
}

/// Column `name` of `b` as plain UTF-8 (query results hold text as views);
/// None when the result has no such column.
pub(crate) fn text_column(b: &RecordBatch, name: &str) -> Option<arrow::array::ArrayRef> {
    let col = b.column_by_name(name)?;
    Some(arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8).expect("text casts to Utf8"))
}

/// The distinct Call-IDs of step 1's rows, the newest `limit` of them.
pub fn pick_calls(batches: &[RecordBatch], limit: usize) -> BTreeSet<String> {
    let mut picked = BTreeSet::new();
    for b in batches {
        let col = text_column(b, "call_id").expect("step 1 selects call_id");
        for id in col.as_string::<i32>().iter().flatten() {
            if picked.len() == limit {
                return picked;
            }
            picked.insert(id.to_owned());
        }
    }
    picked
}

/// Step 3: the messages of other calls naming one of `calls` as their A
/// leg, by header or HEP correlation id.
pub fn links_sql(range: TimeRange, calls: &BTreeSet<String>) -> Statement {
    let mut st = Statement::default();
    let ids = st.bind_all(calls);
    st.sql = format!(
        "SELECT DISTINCT call_id, aleg_id, correlation_id FROM hep_1 WHERE {} AND call_id IS NOT NULL \
         AND (aleg_id IN ({ids}) OR (correlation_id IN ({ids}) AND correlation_id <> call_id))",
        range.sql()
    );
    st
}

/// Each call's B legs, from step 3's rows, sorted.
pub fn b_legs(
    batches: &[RecordBatch],
    calls: &BTreeSet<String>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for b in batches {
        let text = |name: &str| text_column(b, name).expect("step 3 selects it");
        let (call, aleg, corr) = (text("call_id"), text("aleg_id"), text("correlation_id"));
        let (call, aleg, corr) = (
            call.as_string::<i32>(),
            aleg.as_string::<i32>(),
            corr.as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            for a in [aleg, corr]
                .into_iter()
                .filter(|c| c.is_valid(i))
                .map(|c| c.value(i))
            {
                if calls.contains(a) && a != call.value(i) {
                    out.entry(a.to_owned())
                        .or_default()
                        .insert(call.value(i).to_owned());
                }
            }
        }
    }
    out
}

#[derive(Debug, Default, Deserialize)]
pub struct FlowParams {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The window a call flow reads: the range asked, widened on both sides.
pub fn flow_window(p: &FlowParams) -> Result<TimeRange, BadParameter> {
    Ok(parse_range(p.from.as_deref(), p.to.as_deref())?.widened(FLOW_MARGIN_MICROS))
}

/// The Call-IDs a leg may appear under: itself, and the B2BUA suffix form
/// added or removed.
pub fn id_forms(ids: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = ids.clone();
    for id in ids {
        match id.strip_suffix(B2B_SUFFIX) {
            Some(base) => out.insert(base.to_owned()),
            None => out.insert(format!("{id}{B2B_SUFFIX}")),
        };
    }
    out
}

/// The columns that name a leg: its own Call-ID, the A leg's from the
/// configured header, and the HEP correlation id some agents set to it.
pub const LEG_COLUMNS: [&str; 3] = ["call_id", "aleg_id", "correlation_id"];

/// One step of leg discovery: the ids in [`LEG_COLUMNS`] of every message
/// that is one of `legs` or names one of them.
pub fn legs_sql(window: TimeRange, legs: &BTreeSet<String>) -> Statement {
    let mut st = Statement::default();
    let ids = st.bind_all(&id_forms(legs));
    st.sql = format!(
        "SELECT DISTINCT {} FROM hep_1 WHERE {} AND ({})",
        LEG_COLUMNS.join(", "),
        window.sql(),
        LEG_COLUMNS.map(|c| format!("{c} IN ({ids})")).join(" OR ")
    );
    st
}

/// The SIP messages of the legs, in time order.
pub fn messages_sql(window: TimeRange, legs: &BTreeSet<String>) -> Statement {
    let mut st = Statement::default();
    let ids = st.bind_all(legs);
    st.sql = format!(
        "SELECT time, call_id, method, status, cseq_num, cseq_method, src_ip, src_port, dst_ip, dst_port, \
         protocol, from_user, to_user, via_branch, aleg_id, content_type, sdp_media_ip, sdp_media_port, payload \
         FROM hep_1 WHERE {} AND call_id IN ({ids}) ORDER BY time, call_id LIMIT {MAX_FLOW_ROWS}",
        window.sql(),
    );
    st
}

/// Which of the tables a call's RTCP and logs live in exist.
pub const CORRELATED_TABLES_SQL: &str =
    "SELECT table_name FROM information_schema.tables WHERE table_name IN ('hep_5', 'hep_100')";

/// The RTCP reports (`hep_5`) or log lines (`hep_100`) correlated with the legs.
pub fn correlated_sql(table: &str, window: TimeRange, legs: &BTreeSet<String>) -> Statement {
    let mut st = Statement::default();
    let ids = st.bind_all(&id_forms(legs));
    st.sql = format!(
        "SELECT time, correlation_id, src_ip, src_port, dst_ip, dst_port, payload FROM {table} \
         WHERE {} AND correlation_id IN ({ids}) ORDER BY time LIMIT {MAX_FLOW_ROWS}",
        window.sql(),
    );
    st
}

/// Every non-null text of the named columns.
pub fn texts(batches: &[RecordBatch], columns: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for b in batches {
        for c in columns {
            let Some(col) = text_column(b, c) else {
                continue;
            };
            let col = col.as_string::<i32>();
            out.extend(
                (0..col.len())
                    .filter(|&i| col.is_valid(i))
                    .map(|i| col.value(i).to_owned()),
            );
        }
    }
    out
}

/// The columns of a batch a flow reads, as plain arrays.
pub struct Columns {
    pub rows: usize,
    text: BTreeMap<&'static str, arrow::array::ArrayRef>,
    int: BTreeMap<&'static str, arrow::array::ArrayRef>,
}

impl Columns {
    const TEXT: [&'static str; 5] = ["call_id", "correlation_id", "src_ip", "dst_ip", "payload"];
    const INT: [&'static str; 4] = ["time", "src_port", "dst_port", "protocol"];

    pub fn of(b: &RecordBatch) -> Self {
        use arrow::datatypes::{DataType, TimeUnit};
        let int = Self::INT
            .into_iter()
            .filter_map(|name| {
                let col = b.column_by_name(name)?;
                // Times as µs since the epoch: drop the zone, then the type.
                let col = match col.data_type() {
                    DataType::Timestamp(_, _) => {
                        arrow::compute::cast(col, &DataType::Timestamp(TimeUnit::Microsecond, None))
                            .ok()?
                    }
                    _ => col.clone(),
                };
                Some((name, arrow::compute::cast(&col, &DataType::Int64).ok()?))
            })
            .collect();
        let text = Self::TEXT
            .into_iter()
            .filter_map(|name| Some((name, text_column(b, name)?)))
            .collect();
        Self {
            rows: b.num_rows(),
            text,
            int,
        }
    }

    pub fn text(&self, name: &str, row: usize) -> Option<&str> {
        let col = self.text.get(name)?.as_string::<i32>();
        col.is_valid(row).then(|| col.value(row))
    }

    pub fn int(&self, name: &str, row: usize) -> Option<i64> {
        let col = self
            .int
            .get(name)?
            .as_primitive::<arrow::datatypes::Int64Type>();
        col.is_valid(row).then(|| col.value(row))
    }

    /// `src` or `dst` as `ip:port` (`[ip]:port` for IPv6).
    pub fn endpoint(&self, side: &str, row: usize) -> Option<String> {
        let (ip_col, port_col) = match side {
            "src" => ("src_ip", "src_port"),
            _ => ("dst_ip", "dst_port"),
        };
        let ip = self.text(ip_col, row)?;
        let port = self.int(port_col, row)?;
        Some(if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        })
    }
}

/// The ladder's columns: every address in the order it first appears.
#[derive(Debug, Default)]
pub struct Hosts(Vec<String>);

impl Hosts {
    pub fn add(&mut self, c: &Columns) {
        for row in 0..c.rows {
            for side in ["src", "dst"] {
                if let Some(h) = c.endpoint(side, row).filter(|h| !self.0.contains(h)) {
                    self.0.push(h);
                }
            }
        }
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

/// RTCP quality per direction, from the JSON reports heplify sends: how many
/// reports, the most packets lost (the counter is cumulative) and the
/// interarrival jitter (mean and worst). Binary reports are only counted.
#[derive(Debug, Default)]
pub struct RtcpSummary(BTreeMap<(String, String), Direction>);

#[derive(Debug, Default)]
struct Direction {
    reports: u64,
    unparsed: u64,
    lost: i64,
    jitter_sum: f64,
    jitters: u64,
    jitter_max: Option<f64>,
}

impl RtcpSummary {
    pub fn add(&mut self, c: &Columns) {
        for row in 0..c.rows {
            let key = (
                c.endpoint("src", row).unwrap_or_default(),
                c.endpoint("dst", row).unwrap_or_default(),
            );
            let d = self.0.entry(key).or_default();
            d.reports += 1;
            let report: Option<Value> = c
                .text("payload", row)
                .and_then(|p| serde_json::from_str(p).ok());
            let Some(blocks) = report.as_ref().and_then(|v| v["report_blocks"].as_array()) else {
                d.unparsed += 1;
                continue;
            };
            for b in blocks {
                if let Some(l) = b["packets_lost"].as_i64() {
                    d.lost = d.lost.max(l);
                }
                if let Some(j) = b["ia_jitter"].as_f64() {
                    d.jitter_sum += j;
                    d.jitters += 1;
                    d.jitter_max = Some(d.jitter_max.map_or(j, |m| m.max(j)));
                }
            }
        }
    }

    pub fn to_json(&self) -> Value {
        self.0
            .iter()
            .map(|((src, dst), d)| {
                let mean = (d.jitters > 0).then(|| d.jitter_sum / d.jitters as f64);
                json!({
                    "src": src, "dst": dst, "reports": d.reports, "unparsed_reports": d.unparsed,
                    "packets_lost": d.lost, "jitter_mean": mean, "jitter_max": d.jitter_max,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_range_of_year_9999_widens_without_overflow() {
        let r = parse_range(Some("253402300799000"), Some("253402300799999")).unwrap();
        let w = r.widened(FLOW_MARGIN_MICROS);
        assert_eq!(w.to, MAX_TIME_MICROS);
        assert!(
            w.sql().ends_with("time < '9999-12-31T23:59:59.999999Z'"),
            "{}",
            w.sql()
        );
    }

    #[test]
    fn ranges_are_required_ordered_and_at_most_a_day() {
        let r = parse_range(Some("2026-11-29T10:00:00Z"), Some("1795950000000")).unwrap();
        assert_eq!(
            r,
            TimeRange {
                from: 1_795_946_400_000_000,
                to: 1_795_950_000_000_000
            }
        );
        for (from, to, says) in [
            (None, Some("1"), "from= and to="),
            (Some("yesterday"), Some("1"), "RFC 3339"),
            (Some("2000"), Some("1000"), "later than"),
            (Some("0"), Some("90000000"), "at most 24"),
            (
                Some("9223372036854775000"),
                Some("9223372036854775807"),
                "out of range",
            ),
            (Some("1"), Some("9223372036854775000"), "out of range"),
            (
                Some("253402300799998"),
                Some("99999999999999999999"),
                "out of range",
            ),
            (Some("1969-12-31T23:00:00Z"), Some("1"), "out of range"),
        ] {
            let e = parse_range(from, to).unwrap_err();
            assert!(e.0.contains(says), "{e}");
        }
    }

    #[test]
    fn values_are_bound_never_pasted_into_the_sql() {
        let hostile = "x' OR '1'='1";
        let search = Search::parse(&SearchParams {
            from: Some("0".into()),
            to: Some("1000".into()),
            caller: Some(hostile.into()),
            call_id: Some("c".repeat(60_000)),
            ..Default::default()
        })
        .unwrap();
        let recent = search.recent_sql();
        assert!(recent.sql.contains("from_user = $1"), "{}", recent.sql);
        assert!(recent.sql.contains("call_id = $2"), "{}", recent.sql);
        assert_eq!(recent.params[0], hostile);
        assert!(
            recent.sql.len() < 1000,
            "the text does not grow with the values"
        );
        // Ids read from the lake: however long, the statement's text is the same.
        let ids = |len: usize| -> BTreeSet<String> {
            (0..100)
                .map(|i| format!("{i}{}", "x".repeat(len)))
                .collect()
        };
        let window = TimeRange { from: 0, to: 1000 };
        for build in [
            |ids: &BTreeSet<String>, w| legs_sql(w, ids),
            |ids: &BTreeSet<String>, w| messages_sql(w, ids),
            |ids: &BTreeSet<String>, w| links_sql(w, ids),
            |ids: &BTreeSet<String>, w| correlated_sql("hep_5", w, ids),
        ] {
            let (short, long) = (build(&ids(1), window), build(&ids(60_000), window));
            assert_eq!(short.sql, long.sql);
            assert!(long.params.iter().all(|p| p.len() > 60_000));
        }
        assert_eq!(
            search.summary_sql(&ids(1)).sql,
            search.summary_sql(&ids(60_000)).sql
        );
    }

    #[test]
    fn limits_and_statuses_are_checked() {
        let ranged = |f: fn(&mut SearchParams)| {
            let mut p = SearchParams {
                from: Some("0".into()),
                to: Some("1000".into()),
                ..Default::default()
            };
            f(&mut p);
            Search::parse(&p).map(|s| s.summary_sql(&["c".to_string()].into()).sql)
        };
        assert!(
            ranged(|p| p.limit = Some("0".into()))
                .unwrap_err()
                .0
                .contains("limit")
        );
        assert!(
            ranged(|p| p.limit = Some("5000".into()))
                .unwrap_err()
                .0
                .contains("1 to 1000")
        );
        assert!(
            ranged(|p| p.status = Some("99".into()))
                .unwrap_err()
                .0
                .contains("status")
        );
        assert!(
            ranged(|p| p.status = Some("486".into()))
                .unwrap()
                .contains("final_status = 486")
        );
    }

    #[test]
    fn b2bua_suffix_forms_both_ways() {
        let ids: BTreeSet<String> = ["a@h".to_string(), format!("b@h{B2B_SUFFIX}")].into();
        let forms = id_forms(&ids);
        assert!(forms.contains(&format!("a@h{B2B_SUFFIX}")));
        assert!(forms.contains("b@h"));
        assert_eq!(forms.len(), 4);
    }
}
