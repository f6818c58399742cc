//! homer-app's v3 API, as HOMER's own clients call it: homer-ui's search,
//! jambonz's api-server (token, call transaction, PCAP export), scripts
//! written against HOMER 7. Request and answer shapes are homer-app's
//! (`model/search.go`, `data/service/search.go`); the data is the lake's,
//! read with the same bounded statements as `/api/v1/calls`.
//!
//! Request bodies are parsed here (pure); the handlers in [`crate::flow`]
//! style run as one query-pool job and count their answer against the
//! response limit as it grows.
use std::collections::{BTreeMap, BTreeSet};

use arrow::array::RecordBatch;
use lake::engine::{QueryError, Statements};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::calls::{MAX_FLOW_ROWS, MAX_TIME_MICROS, Statement, TimeRange};
use crate::encode::{Body, ResponseLimit};
use crate::error::{ApiError, BadParameter};

/// The widest range a transaction, export or report may ask for: jambonz asks
/// for the last seven days of one Call-ID.
pub const MAX_LOOKUP_RANGE_MICROS: i64 = 8 * 24 * 3_600_000_000;
/// The widest range a search may ask for, as `/api/v1/calls`.
pub const MAX_SEARCH_RANGE_MICROS: i64 = crate::calls::MAX_RANGE_MICROS;
/// Rows a search answers when `limit` is not given (homer-app's default), and at most.
pub const DEFAULT_SEARCH_LIMIT: usize = 200;
pub const MAX_SEARCH_LIMIT: usize = MAX_FLOW_ROWS;
/// Call-IDs one request may name.
pub const MAX_CALL_IDS: usize = 100;

/// `{"timestamp": {"from", "to"}, "param": {...}}`, times in epoch milliseconds.
#[derive(Debug, Deserialize)]
pub struct HomerRequest {
    timestamp: Option<Stamp>,
    #[serde(default)]
    param: Param,
}

#[derive(Debug, Deserialize)]
struct Stamp {
    from: Value,
    to: Value,
}

#[derive(Debug, Default, Deserialize)]
struct Param {
    #[serde(default)]
    search: Map<String, Value>,
    #[serde(default)]
    limit: Option<Value>,
    #[serde(default)]
    orlogic: bool,
}

/// Epoch milliseconds as a JSON number or numeric string, in 1970..=9999.
fn millis(name: &str, v: &Value) -> Result<i64, BadParameter> {
    let ms = match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    ms.and_then(|ms: i64| ms.checked_mul(1000))
        .filter(|t| (0..=MAX_TIME_MICROS).contains(t))
        .ok_or_else(|| {
            BadParameter(format!(
                "timestamp.{name}: epoch milliseconds from 1970 to 9999"
            ))
        })
}

impl HomerRequest {
    /// The request's time range, `to` included as homer-app's `BETWEEN` does.
    pub fn range(&self, widest: i64) -> Result<TimeRange, BadParameter> {
        let s = self
            .timestamp
            .as_ref()
            .ok_or("give timestamp.from and timestamp.to (epoch milliseconds)")?;
        let r = TimeRange {
            from: millis("from", &s.from)?,
            to: millis("to", &s.to)?.saturating_add(1).min(MAX_TIME_MICROS),
        };
        if r.to <= r.from {
            return Err(BadParameter::from(
                "timestamp.to must not be before timestamp.from",
            ));
        }
        if r.to - r.from > widest {
            return Err(BadParameter::from(format!(
                "the range is {:.1} hours; at most {}: narrow timestamp.from and timestamp.to",
                (r.to - r.from) as f64 / 3.6e9,
                widest / 3_600_000_000
            )));
        }
        Ok(r)
    }

    /// The Call-IDs of `param.search`: `{"1_call": {"callid": [...]}}` as
    /// homer-ui's transaction and jambonz send them, or a search form's
    /// `callid`/`sid` fields (`;` separates several).
    pub fn call_ids(&self) -> Result<BTreeSet<String>, BadParameter> {
        let mut ids = BTreeSet::new();
        for (profile, v) in &self.param.search {
            match v {
                Value::Object(o) => {
                    for id in o
                        .get("callid")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let id = id
                            .as_str()
                            .ok_or(format!("param.search.{profile}.callid: a list of strings"))?;
                        ids.insert(id.to_owned());
                    }
                }
                Value::Array(fields) => {
                    for f in fields {
                        let (name, value) = field(profile, f)?;
                        if matches!(column_of(name), Some("call_id")) {
                            ids.extend(value.split(';').map(|s| s.trim().to_owned()));
                        }
                    }
                }
                _ => {
                    return Err(BadParameter::from(format!(
                        "param.search.{profile}: an object or a list"
                    )));
                }
            }
        }
        ids.retain(|i| !i.is_empty());
        if ids.is_empty() {
            return Err(BadParameter::from(
                "name the call: param.search.1_call.callid = [\"<Call-ID>\"]",
            ));
        }
        if ids.len() > MAX_CALL_IDS {
            return Err(BadParameter::from(format!(
                "{} Call-IDs; at most {MAX_CALL_IDS} in one request",
                ids.len()
            )));
        }
        Ok(ids)
    }

    /// The statement of `POST /api/v3/search/call/data`: SIP messages whose
    /// fields match the search form, oldest first, at most `param.limit`.
    pub fn search_sql(&self, range: TimeRange) -> Result<Statement, BadParameter> {
        let mut st = Statement::default();
        let mut conditions = Vec::new();
        let mut limit = match &self.param.limit {
            None => DEFAULT_SEARCH_LIMIT,
            Some(v) => limit_of(v)?,
        };
        for (profile, v) in &self.param.search {
            if !profile.starts_with("1_") {
                return Err(BadParameter::from(format!(
                    "param.search.{profile}: only SIP (1_call, 1_registration, 1_default) is searched"
                )));
            }
            let Value::Array(fields) = v else {
                return Err(BadParameter::from(format!(
                    "param.search.{profile}: a list of {{name, value}} fields"
                )));
            };
            for f in fields {
                let (name, value) = field(profile, f)?;
                if name == "limit" {
                    limit = limit_of(&Value::from(value))?;
                    continue;
                }
                if name == "smartinput" {
                    return Err(BadParameter::from(
                        "smartinput is not supported: use the search fields",
                    ));
                }
                let column = column_of(name).ok_or(format!(
                    "param.search.{profile}: no field {name:?}; fields: {}",
                    FIELDS.map(|f| f.0).join(", ")
                ))?;
                conditions.push(condition(&mut st, column, value));
            }
        }
        let joined = if conditions.is_empty() {
            "TRUE".to_owned()
        } else {
            conditions.join(if self.param.orlogic { " OR " } else { " AND " })
        };
        st.sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM hep_1 WHERE time >= {} AND time < {} AND ({joined}) \
             ORDER BY time LIMIT {limit}",
            crate::calls::ts(range.from),
            crate::calls::ts(range.to),
        );
        Ok(st)
    }
}

fn limit_of(v: &Value) -> Result<usize, BadParameter> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.filter(|n| (1..=MAX_SEARCH_LIMIT as u64).contains(n))
        .map(|n| n as usize)
        .ok_or_else(|| BadParameter(format!("limit: a number from 1 to {MAX_SEARCH_LIMIT}")))
}

/// A search form field `{name, value, type, hepid}`: its name and value.
fn field<'a>(profile: &str, f: &'a Value) -> Result<(&'a str, &'a str), BadParameter> {
    let name = f["name"]
        .as_str()
        .ok_or_else(|| BadParameter(format!("param.search.{profile}: a field without a name")))?;
    let value = f["value"].as_str().ok_or_else(|| {
        BadParameter(format!(
            "param.search.{profile}: field {name:?} needs a text value"
        ))
    })?;
    Ok((name, value))
}

/// homer-app's field names (with or without their `data_header.` or
/// `protocol_header.` prefix) and the lake's column for each.
const FIELDS: [(&str, &str); 14] = [
    ("callid", "call_id"),
    ("sid", "call_id"),
    ("method", "method"),
    ("from_user", "from_user"),
    ("to_user", "to_user"),
    ("ruri_user", "ruri_user"),
    ("ruri_domain", "ruri_domain"),
    ("user_agent", "user_agent"),
    ("from_tag", "from_tag"),
    ("to_tag", "to_tag"),
    ("srcIp", "src_ip"),
    ("dstIp", "dst_ip"),
    ("srcPort", "src_port"),
    ("dstPort", "dst_port"),
];

fn column_of(name: &str) -> Option<&'static str> {
    let bare = name
        .strip_prefix("data_header.")
        .or_else(|| name.strip_prefix("protocol_header."))
        .unwrap_or(name);
    FIELDS.iter().find(|(f, _)| *f == bare).map(|(_, c)| *c)
}

/// One field's condition, as homer-app reads its value: `!=` negates, `%`
/// makes a LIKE, `;` separates alternatives. Values are bound, never pasted.
fn condition(st: &mut Statement, column: &'static str, value: &str) -> String {
    let (not, value) = match value.strip_prefix("!=") {
        Some(rest) => ("NOT ", rest),
        None => ("", value.strip_prefix("||").unwrap_or(value)),
    };
    // A method field holds a request method or a response code, as homer-app's data_header.method.
    let target = match column {
        "method" => "COALESCE(method, CAST(status AS VARCHAR))",
        "src_port" | "dst_port" => {
            return format!("CAST({column} AS VARCHAR) {not}IN ({})", {
                let alts: Vec<String> = value.split(';').map(|v| v.trim().to_owned()).collect();
                st.bind_all(&alts)
            });
        }
        c => c,
    };
    let alts: Vec<String> = value.split(';').map(|v| v.trim().to_owned()).collect();
    if alts.iter().any(|a| a.contains('%')) {
        let likes: Vec<String> = alts
            .iter()
            .map(|a| format!("{target} LIKE {}", st.bind(a)))
            .collect();
        format!("{not}({})", likes.join(" OR "))
    } else {
        format!("{target} {not}IN ({})", st.bind_all(&alts))
    }
}

/// The columns every homer answer is made from.
pub const MESSAGE_COLUMNS: &str = "time_sec, time_usec, call_id, method, status, cseq_method, \
    from_user, to_user, ruri_user, ruri_domain, user_agent, from_tag, to_tag, src_ip, src_port, \
    dst_ip, dst_port, protocol, ip_family, capture_id, capture_pass, correlation_id, payload";

/// The SIP messages of `ids` (and nothing else) in `range`, oldest first.
pub fn transaction_sql(range: TimeRange, ids: &BTreeSet<String>) -> Statement {
    let mut st = Statement::default();
    let list = st.bind_all(ids);
    st.sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM hep_1 WHERE time >= {} AND time < {} AND call_id IN ({list}) \
         ORDER BY time, call_id LIMIT {MAX_FLOW_ROWS}",
        crate::calls::ts(range.from),
        crate::calls::ts(range.to),
    );
    st
}

/// The RTCP reports (`hep_5`) or log lines (`hep_100`) of `ids`, oldest first.
pub fn report_sql(table: &str, range: TimeRange, ids: &BTreeSet<String>) -> Statement {
    let mut st = Statement::default();
    let list = st.bind_all(ids);
    st.sql = format!(
        "SELECT time_sec, time_usec, src_ip, src_port, dst_ip, dst_port, protocol, ip_family, \
         capture_id, capture_pass, correlation_id, proto_type, payload FROM {table} \
         WHERE time >= {} AND time < {} AND correlation_id IN ({list}) ORDER BY time LIMIT {MAX_FLOW_ROWS}",
        crate::calls::ts(range.from),
        crate::calls::ts(range.to),
    );
    st
}

fn text<'a>(row: &'a Map<String, Value>, k: &str) -> &'a str {
    row.get(k).and_then(Value::as_str).unwrap_or("")
}

fn int(row: &Map<String, Value>, k: &str) -> i64 {
    row.get(k).and_then(Value::as_i64).unwrap_or(0)
}

/// `ip:port`, `[ip]:port` for IPv6, as homer-app names a host.
fn host(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// One lake row (as its JSON object) as homer-app's message: protocol
/// header and data header merged, with `id`, `sid`, times and the table.
pub fn message(row: &Map<String, Value>, id: usize, table: &str) -> Map<String, Value> {
    let (sec, usec) = (int(row, "time_sec"), int(row, "time_usec"));
    let micro_ts = sec * 1_000_000 + usec;
    let method = match row.get("method").and_then(Value::as_str) {
        Some(m) => m.to_owned(),
        None => row
            .get("status")
            .and_then(Value::as_i64)
            .map(|s| s.to_string())
            .unwrap_or_default(),
    };
    let sid = row
        .get("call_id")
        .and_then(Value::as_str)
        .or_else(|| row.get("correlation_id").and_then(Value::as_str))
        .unwrap_or("");
    let mut m = json!({
        "id": id,
        "sid": sid,
        "srcIp": text(row, "src_ip"),
        "dstIp": text(row, "dst_ip"),
        "srcPort": int(row, "src_port"),
        "dstPort": int(row, "dst_port"),
        "protocol": int(row, "protocol"),
        "protocolFamily": int(row, "ip_family"),
        "captureId": int(row, "capture_id").to_string(),
        "capturePass": text(row, "capture_pass"),
        "payloadType": row.get("proto_type").and_then(Value::as_i64).unwrap_or(1),
        "timeSeconds": sec,
        "timeUseconds": usec,
        "correlation_id": text(row, "correlation_id"),
        "create_date": micro_ts / 1000,
        "create_ts": micro_ts / 1000,
        "micro_ts": micro_ts,
        "raw": text(row, "payload"),
        "dbnode": "hepop",
        "node": "hepop",
        "profile": table.trim_start_matches("hep_proto_"),
        "table": table,
    });
    if row.contains_key("call_id") {
        let data = json!({
            "callid": sid,
            "method": method,
            "cseq_method": text(row, "cseq_method"),
            "from_user": text(row, "from_user"),
            "to_user": text(row, "to_user"),
            "ruri_user": text(row, "ruri_user"),
            "ruri_domain": text(row, "ruri_domain"),
            "user_agent": text(row, "user_agent"),
            "from_tag": text(row, "from_tag"),
            "to_tag": text(row, "to_tag"),
        });
        m.as_object_mut()
            .expect("an object")
            .extend(data.as_object().expect("an object").clone());
    }
    match m {
        Value::Object(o) => o,
        _ => unreachable!("json! of an object"),
    }
}

/// What `call/transaction` adds beside the messages: homer-ui's ladder
/// (`hosts` in order of appearance, `calldata`, `alias`), built as they stream.
#[derive(Debug, Default)]
pub struct Ladder {
    hosts: BTreeMap<String, usize>,
    calldata: Vec<Value>,
    keys: BTreeSet<String>,
}

impl Ladder {
    pub fn add(&mut self, m: &Map<String, Value>) {
        let src = host(text(m, "srcIp"), int(m, "srcPort"));
        let dst = host(text(m, "dstIp"), int(m, "dstPort"));
        for h in [&src, &dst] {
            let next = self.hosts.len();
            self.hosts.entry(h.clone()).or_insert(next);
        }
        let method = text(m, "method");
        let raw = text(m, "raw");
        let cut = raw.char_indices().nth(50).map_or(raw.len(), |(i, _)| i);
        self.calldata.push(json!({
            "id": m["id"],
            "sid": m["sid"],
            "srcHost": text(m, "srcIp"),
            "dstHost": text(m, "dstIp"),
            "srcIp": text(m, "srcIp"),
            "dstIp": text(m, "dstIp"),
            "srcPort": m["srcPort"],
            "dstPort": m["dstPort"],
            "srcId": src,
            "dstId": dst,
            "aliasSrc": src,
            "aliasDst": dst,
            "method": method,
            "method_text": method,
            "create_date": m["create_date"],
            "micro_ts": m["micro_ts"],
            "protocol": m["protocol"],
            "msg_color": "blue",
            "table": m["table"],
            "ruri_user": &raw[..cut],
            "destination": self.hosts[&dst],
        }));
        self.keys.extend(m.keys().cloned());
    }

    /// `"hosts":…,"calldata":…,"alias":…` and the keys seen.
    pub fn finish(self) -> (Value, Value, Value, Vec<String>) {
        let hosts: Map<String, Value> = self
            .hosts
            .iter()
            .map(|(h, p)| (h.clone(), json!({"host": [h], "position": p})))
            .collect();
        let alias: Map<String, Value> = self
            .hosts
            .keys()
            .map(|h| (h.clone(), Value::from(h.as_str())))
            .collect();
        (
            Value::Object(hosts),
            Value::Array(self.calldata),
            Value::Object(alias),
            self.keys.into_iter().collect(),
        )
    }
}

/// The body of `POST /api/v3/auth`: HEPop's API tokens are homer-app's
/// passwords; the token answered is the one given.
#[derive(Debug, Deserialize)]
pub struct AuthRequest {
    #[serde(default)]
    pub username: String,
    pub password: String,
}

/// A batch's rows as JSON objects: text columns as strings, integers as
/// numbers, nulls left out (the columns of [`MESSAGE_COLUMNS`] and of
/// [`report_sql`]; any other type is an error).
fn objects(batch: &RecordBatch) -> Result<Vec<Map<String, Value>>, QueryError> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Int64Type};
    let cast = |c: &dyn Array, to: &DataType| {
        arrow::compute::cast(c, to).map_err(|e| QueryError::Internal(format!("homer rows: {e}")))
    };
    let mut out = vec![Map::new(); batch.num_rows()];
    for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
        let name = field.name();
        match col.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let c = cast(col, &DataType::Utf8)?;
                for (row, v) in c.as_string::<i32>().iter().enumerate() {
                    if let Some(v) = v {
                        out[row].insert(name.clone(), Value::from(v));
                    }
                }
            }
            t if t.is_integer() => {
                let c = cast(col, &DataType::Int64)?;
                for (row, v) in c.as_primitive::<Int64Type>().iter().enumerate() {
                    if let Some(v) = v {
                        out[row].insert(name.clone(), Value::from(v));
                    }
                }
            }
            t => {
                return Err(QueryError::Internal(format!(
                    "homer rows: column {name} is {t}, not text or an integer"
                )));
            }
        }
    }
    Ok(out)
}

/// Streams `statement`'s rows as homer messages into `f`, numbered from 1.
async fn each_message(
    st: &Statements,
    statement: &Statement,
    table: &str,
    mut f: impl FnMut(Map<String, Value>) -> Result<(), QueryError>,
) -> Result<usize, QueryError> {
    let mut rows = st.rows(&statement.sql, &statement.params()).await?;
    let mut n = 0;
    while let Some(batch) = rows.next().await? {
        for row in objects(&batch)? {
            n += 1;
            f(message(&row, n, table))?;
        }
    }
    Ok(n)
}

fn push_json(body: &mut Body, v: &impl serde::Serialize) -> Result<(), QueryError> {
    body.push(&serde_json::to_vec(v).expect("JSON values serialise"))
}

/// `POST /api/v3/call/transaction`: the messages of the calls named, with
/// homer-ui's ladder, streamed and counted against the response limit.
pub async fn transaction(
    st: Statements,
    ids: BTreeSet<String>,
    range: TimeRange,
    limit: ResponseLimit,
) -> Result<Vec<u8>, ApiError> {
    let mut body = Body::new(limit);
    let mut ladder = Ladder::default();
    body.push(b"{\"data\":{\"messages\":[")?;
    let statement = transaction_sql(range, &ids);
    let total = each_message(&st, &statement, "hep_proto_1_call", |m| {
        if !ladder.calldata.is_empty() {
            body.push(b",")?;
        }
        ladder.add(&m);
        push_json(&mut body, &m)
    })
    .await?;
    let (hosts, calldata, alias, keys) = ladder.finish();
    body.push(b"],\"hosts\":")?;
    push_json(&mut body, &hosts)?;
    body.push(b",\"calldata\":")?;
    push_json(&mut body, &calldata)?;
    body.push(b",\"alias\":")?;
    push_json(&mut body, &alias)?;
    body.push(b"},\"keys\":")?;
    push_json(&mut body, &keys)?;
    body.push(format!(",\"total\":{total}}}").as_bytes())?;
    Ok(body.into_bytes())
}

/// `POST /api/v3/search/call/data`: `{"data": [...], "keys": [...], "total": n}`.
pub async fn search(
    st: Statements,
    statement: Statement,
    limit: ResponseLimit,
) -> Result<Vec<u8>, ApiError> {
    let mut body = Body::new(limit);
    let mut keys = BTreeSet::new();
    body.push(b"{\"data\":[")?;
    let total = each_message(&st, &statement, "hep_proto_1_call", |m| {
        if !keys.is_empty() {
            body.push(b",")?;
        }
        keys.extend(m.keys().cloned());
        push_json(&mut body, &m)
    })
    .await?;
    body.push(b"],\"keys\":")?;
    push_json(&mut body, &keys)?;
    body.push(format!(",\"total\":{total}}}").as_bytes())?;
    Ok(body.into_bytes())
}

/// Which report `call/report/*` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// `{"rtcp": {"data": [...]}, "rtp": {"data": []}}` from `hep_5`.
    Qos,
    /// `{"data": [...]}` from `hep_100`.
    Log,
}

/// `POST /api/v3/call/report/qos` and `/log`: the RTCP reports or log lines
/// whose correlation id is one of the calls named.
pub async fn report(
    st: Statements,
    ids: BTreeSet<String>,
    range: TimeRange,
    which: Report,
    limit: ResponseLimit,
) -> Result<Vec<u8>, ApiError> {
    let (table, profile, proto) = match which {
        Report::Qos => ("hep_5", "hep_proto_5_default", "rtcp"),
        Report::Log => ("hep_100", "hep_proto_100_default", "log"),
    };
    let mut body = Body::new(limit);
    body.push(match which {
        Report::Qos => b"{\"rtcp\":{\"data\":[".as_slice(),
        Report::Log => b"{\"data\":[".as_slice(),
    })?;
    if crate::flow::present_tables(&st).await?.contains(table) {
        let mut first = true;
        each_message(&st, &report_sql(table, range, &ids), profile, |mut m| {
            if !first {
                body.push(b",")?;
            }
            first = false;
            m.insert("proto".into(), proto.into());
            push_json(&mut body, &m)
        })
        .await?;
    }
    body.push(match which {
        Report::Qos => b"]},\"rtp\":{\"data\":[]}}".as_slice(),
        Report::Log => b"]}".as_slice(),
    })?;
    Ok(body.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> HomerRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn call_ids_come_from_transaction_objects_and_search_forms() {
        // jambonz's api-server (lib/utils/homer-utils.js): callid lists under two profiles.
        let r = req(json!({"param": {"orlogic": true, "search": {
            "1_call": {"callid": ["a@x"]}, "1_registration": {"callid": ["a@x", "r@y"]}}},
            "timestamp": {"from": 1, "to": 2}}));
        assert_eq!(
            r.call_ids().unwrap(),
            ["a@x".to_owned(), "r@y".into()].into()
        );
        let r = req(json!({"param": {"search": {"1_call": [
            {"name": "data_header.callid", "value": "c1;c2", "type": "string", "hepid": 1}]}}}));
        assert_eq!(r.call_ids().unwrap().len(), 2);
        let none = req(json!({"param": {"search": {"1_call": {"callid": []}}}}));
        assert!(none.call_ids().unwrap_err().0.contains("name the call"));
    }

    #[test]
    fn ranges_are_milliseconds_bounded_and_checked() {
        let r = req(json!({"timestamp": {"from": 1_000, "to": "2000"}}));
        assert_eq!(
            r.range(MAX_LOOKUP_RANGE_MICROS).unwrap(),
            TimeRange {
                from: 1_000_000,
                to: 2_000_001
            }
        );
        let huge = req(json!({"timestamp": {"from": 0, "to": 9_223_372_036_854_775_000i64}}));
        assert!(
            huge.range(MAX_LOOKUP_RANGE_MICROS)
                .unwrap_err()
                .0
                .contains("1970 to 9999")
        );
        let wide = req(json!({"timestamp": {"from": 0, "to": 9 * 86_400_000}}));
        assert!(
            wide.range(MAX_LOOKUP_RANGE_MICROS)
                .unwrap_err()
                .0
                .contains("at most 192")
        );
        assert!(req(json!({})).range(1).is_err());
    }

    #[test]
    fn search_fields_become_bound_conditions() {
        let r = req(json!({"param": {"limit": 10, "search": {"1_call": [
            {"name": "from_user", "value": "+4930%", "type": "string"},
            {"name": "protocol_header.srcIp", "value": "10.0.0.1;10.0.0.2", "type": "string"},
            {"name": "method", "value": "!=OPTIONS", "type": "string"},
            {"name": "limit", "value": "5", "type": "string"}]}}}));
        let st = r.search_sql(TimeRange { from: 0, to: 1 }).unwrap();
        assert!(st.sql.contains("(from_user LIKE $1)"), "{}", st.sql);
        assert!(st.sql.contains("src_ip IN ($2, $3)"), "{}", st.sql);
        assert!(st.sql.contains("NOT IN ($4)"), "{}", st.sql);
        assert!(st.sql.ends_with("LIMIT 5"), "{}", st.sql);
        assert_eq!(st.params, ["+4930%", "10.0.0.1", "10.0.0.2", "OPTIONS"]);
        let bad =
            req(json!({"param": {"search": {"1_call": [{"name": "x'; DROP", "value": "1"}]}}}));
        assert!(
            bad.search_sql(TimeRange { from: 0, to: 1 })
                .unwrap_err()
                .0
                .contains("no field")
        );
    }
}
