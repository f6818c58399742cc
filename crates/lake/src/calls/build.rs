//! Call records from SIP rows: pure, no I/O.
//!
//! A call is an INVITE dialog with its legs: a leg is a Call-ID; a B leg
//! names its A leg by `aleg_id` (a B2BUA's X-CID header), by a HEP
//! correlation id other than its own Call-ID, or by the B2BUA suffix on the
//! A leg's Call-ID ([`B2B_SUFFIX`]). A call begins at its first initial
//! INVITE (one without a To tag) and belongs to that hour.
//!
//! Every value a record holds is a minimum, a maximum or a sum over the
//! call's messages, so the result does not depend on the order rows are
//! read in, on how they are split into files, or on a recompaction.
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, TimestampMicrosecondType};

use crate::paths::MICROS_PER_HOUR;
use crate::schema::{TIME, calls_schema};
use crate::{LakeError, Result};

pub use super::rtcp::{Direction, Quality, RTCP_COLUMNS, Reports, fold_rtcp};

/// The suffix some B2BUAs (Kamailio's, FreeSWITCH's) add to the A leg's
/// Call-ID to make the B leg's.
pub const B2B_SUFFIX: &str = "_b2b-1";

/// The `hep_1` columns a record is built from (no payload: the builder
/// reads a fraction of the table's bytes).
pub const SOURCE_COLUMNS: [&str; 22] = [
    TIME,
    "call_id",
    "aleg_id",
    "correlation_id",
    "method",
    "status",
    "cseq_method",
    "from_user",
    "from_domain",
    "from_tag",
    "to_user",
    "to_domain",
    "to_tag",
    "ruri_user",
    "ruri_domain",
    "user_agent",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "sdp_media_ip",
    "reason",
];

/// A leg's first initial INVITE: who called whom, from where. Ordered by
/// time first, so the earliest wins and equal times are settled by content.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Invite {
    time: i64,
    from_user: Option<String>,
    from_domain: Option<String>,
    to_user: Option<String>,
    to_domain: Option<String>,
    ruri_user: Option<String>,
    ruri_domain: Option<String>,
    user_agent: Option<String>,
    from_tag: Option<String>,
    src_ip: Option<String>,
    src_port: i32,
    dst_ip: Option<String>,
    dst_port: i32,
    /// The caller's media address, from the SDP offer.
    media_ip: Option<String>,
}

/// A message that ends a call or answers it: when, and what it carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    time: i64,
    /// The response's status (0 for a request).
    status: i32,
    /// The request's From tag: whose side sent it.
    from_tag: Option<String>,
    /// The Reason header.
    reason: Option<String>,
    /// The SDP's media address (an answer's: the callee's).
    media_ip: Option<String>,
}

/// What one Call-ID's messages say, folded as they are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    /// The A leg this leg names (the least, should several be named).
    aleg: Option<String>,
    first: i64,
    last: i64,
    messages: i64,
    /// The hours holding its messages, ascending.
    hours: Vec<i64>,
    invite: Option<Invite>,
    /// The first provisional 18x answering an INVITE.
    ringing: Option<i64>,
    /// The first 2xx answering an INVITE.
    answer: Option<Event>,
    /// The last final failure (≥ 300) answering an INVITE.
    failure: Option<Event>,
    /// The first BYE.
    bye: Option<Event>,
    /// The first CANCEL.
    cancel: Option<Event>,
}

fn min_some<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub(super) fn max_some<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// `into` ∪ `from`, both ascending without repeats.
fn union_sorted(into: &mut Vec<i64>, from: &[i64]) {
    for h in from {
        if let Err(at) = into.binary_search(h) {
            into.insert(at, *h);
        }
    }
}

impl Leg {
    fn new(time: i64) -> Self {
        Self {
            aleg: None,
            first: time,
            last: time,
            messages: 0,
            hours: Vec::new(),
            invite: None,
            ringing: None,
            answer: None,
            failure: None,
            bye: None,
            cancel: None,
        }
    }

    /// Folds `other` (the same Call-ID's other messages) into this leg.
    fn merge(&mut self, other: Leg) {
        self.aleg = min_some(self.aleg.take(), other.aleg);
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.messages += other.messages;
        union_sorted(&mut self.hours, &other.hours);
        self.invite = min_some(self.invite.take(), other.invite);
        self.ringing = min_some(self.ringing, other.ringing);
        self.answer = min_some(self.answer.take(), other.answer);
        self.failure = max_some(self.failure.take(), other.failure);
        self.bye = min_some(self.bye.take(), other.bye);
        self.cancel = min_some(self.cancel.take(), other.cancel);
    }

    /// The call this leg belongs to: the A leg it names, else itself.
    fn call(&self, call_id: &str) -> String {
        if let Some(a) = &self.aleg {
            return a.clone();
        }
        call_id
            .strip_suffix(B2B_SUFFIX)
            .filter(|base| !base.is_empty())
            .unwrap_or(call_id)
            .to_owned()
    }
}

/// Column `name` of `batch` cast to `to` (query and file batches may hold
/// views or narrower integers).
fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| LakeError::Other(format!("rows without `{name}`")))?;
    Ok(cast(c, to)?)
}

/// Text column `name` of `batch` as Utf8.
pub(super) fn text(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    Ok(column(batch, name, &DataType::Utf8)?
        .as_string::<i32>()
        .clone())
}

fn int32(batch: &RecordBatch, name: &str) -> Result<Int32Array> {
    Ok(column(batch, name, &DataType::Int32)?
        .as_primitive::<Int32Type>()
        .clone())
}

pub(super) fn value(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

fn owned(a: &StringArray, i: usize) -> Option<String> {
    value(a, i).map(str::to_owned)
}

fn int(a: &Int32Array, i: usize) -> Option<i32> {
    a.is_valid(i).then(|| a.value(i))
}

/// The SIP rows of one batch, column by column.
struct Rows {
    time: TimestampMicrosecondArray,
    call_id: StringArray,
    aleg_id: StringArray,
    correlation_id: StringArray,
    method: StringArray,
    status: Int32Array,
    cseq_method: StringArray,
    from_user: StringArray,
    from_domain: StringArray,
    from_tag: StringArray,
    to_user: StringArray,
    to_domain: StringArray,
    to_tag: StringArray,
    ruri_user: StringArray,
    ruri_domain: StringArray,
    user_agent: StringArray,
    src_ip: StringArray,
    src_port: Int32Array,
    dst_ip: StringArray,
    dst_port: Int32Array,
    sdp_media_ip: StringArray,
    reason: StringArray,
}

impl Rows {
    fn of(batch: &RecordBatch) -> Result<Self> {
        let time = batch
            .column_by_name(TIME)
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
            .ok_or_else(|| LakeError::Other("SIP rows without a `time` in µs".into()))?
            .clone();
        Ok(Self {
            time,
            call_id: text(batch, "call_id")?,
            aleg_id: text(batch, "aleg_id")?,
            correlation_id: text(batch, "correlation_id")?,
            method: text(batch, "method")?,
            status: int32(batch, "status")?,
            cseq_method: text(batch, "cseq_method")?,
            from_user: text(batch, "from_user")?,
            from_domain: text(batch, "from_domain")?,
            from_tag: text(batch, "from_tag")?,
            to_user: text(batch, "to_user")?,
            to_domain: text(batch, "to_domain")?,
            to_tag: text(batch, "to_tag")?,
            ruri_user: text(batch, "ruri_user")?,
            ruri_domain: text(batch, "ruri_domain")?,
            user_agent: text(batch, "user_agent")?,
            src_ip: text(batch, "src_ip")?,
            src_port: int32(batch, "src_port")?,
            dst_ip: text(batch, "dst_ip")?,
            dst_port: int32(batch, "dst_port")?,
            sdp_media_ip: text(batch, "sdp_media_ip")?,
            reason: text(batch, "reason")?,
        })
    }

    /// The A leg row `i` names, if any.
    fn aleg(&self, i: usize, call_id: &str) -> Option<String> {
        let named = |a: &StringArray| {
            value(a, i)
                .filter(|v| !v.is_empty() && *v != call_id)
                .map(str::to_owned)
        };
        named(&self.aleg_id).or_else(|| named(&self.correlation_id))
    }

    fn event(&self, i: usize, time: i64, status: i32) -> Event {
        Event {
            time,
            status,
            from_tag: (status == 0).then(|| owned(&self.from_tag, i)).flatten(),
            reason: owned(&self.reason, i),
            media_ip: owned(&self.sdp_media_ip, i),
        }
    }

    /// Row `i` as a leg of one message.
    fn leg(&self, i: usize, call_id: &str) -> Leg {
        let time = self.time.value(i);
        let mut leg = Leg::new(time);
        leg.messages = 1;
        leg.aleg = self.aleg(i, call_id);
        let cseq_invite = value(&self.cseq_method, i) == Some("INVITE");
        match (value(&self.method, i), int(&self.status, i)) {
            (Some("INVITE"), _) if self.to_tag.is_null(i) => {
                leg.invite = Some(Invite {
                    time,
                    from_user: owned(&self.from_user, i),
                    from_domain: owned(&self.from_domain, i),
                    to_user: owned(&self.to_user, i),
                    to_domain: owned(&self.to_domain, i),
                    ruri_user: owned(&self.ruri_user, i),
                    ruri_domain: owned(&self.ruri_domain, i),
                    user_agent: owned(&self.user_agent, i),
                    from_tag: owned(&self.from_tag, i),
                    src_ip: owned(&self.src_ip, i),
                    src_port: int(&self.src_port, i).unwrap_or(0),
                    dst_ip: owned(&self.dst_ip, i),
                    dst_port: int(&self.dst_port, i).unwrap_or(0),
                    media_ip: owned(&self.sdp_media_ip, i),
                });
            }
            (Some("BYE"), _) => leg.bye = Some(self.event(i, time, 0)),
            (Some("CANCEL"), _) => leg.cancel = Some(self.event(i, time, 0)),
            (None, Some(s)) if cseq_invite => match s {
                180..=189 => leg.ringing = Some(time),
                200..=299 => leg.answer = Some(self.event(i, time, s)),
                300..=699 => leg.failure = Some(self.event(i, time, s)),
                _ => {}
            },
            _ => {}
        }
        leg
    }
}

/// Folds every SIP row of `batch` into `legs`, by Call-ID.
pub fn fold(legs: &mut HashMap<String, Leg>, batch: &RecordBatch) -> Result<()> {
    let rows = Rows::of(batch)?;
    for i in 0..batch.num_rows() {
        let Some(call_id) = value(&rows.call_id, i) else {
            continue;
        };
        let leg = rows.leg(i, call_id);
        let hour = leg.first.div_euclid(MICROS_PER_HOUR);
        match legs.get_mut(call_id) {
            Some(l) => {
                l.merge(leg);
                union_sorted(&mut l.hours, &[hour]);
            }
            None => {
                let mut leg = leg;
                leg.hours.push(hour);
                legs.insert(call_id.to_owned(), leg);
            }
        }
    }
    Ok(())
}

/// The Call-IDs that began a call in `legs` (an hour before the one built),
/// with the calls they belong to: their calls began before it.
pub fn began(legs: &HashMap<String, Leg>) -> HashSet<String> {
    legs.iter()
        .filter(|(_, l)| l.invite.is_some())
        .flat_map(|(id, l)| [id.clone(), l.call(id)])
        .collect()
}

/// The records of one hour, built from its legs and the hours after it.
///
/// Feed [`fold`]ed legs: first those of the hour (`owner`), then each later
/// hour's with [`HourRecords::follow`], which keeps only legs of calls known
/// so far, and the RTCP reports of the hour and those after it with
/// [`HourRecords::rtcp`]; [`HourRecords::finish`] keeps the calls that began
/// in the hour and not before (`earlier`, from [`began`] over the hour before).
#[derive(Debug)]
pub struct HourRecords {
    hour: i64,
    legs: HashMap<String, Leg>,
    reports: Reports,
}

impl HourRecords {
    pub fn new(hour: i64, legs: HashMap<String, Leg>) -> Self {
        Self {
            hour,
            legs,
            reports: Reports::new(),
        }
    }

    /// Adds a later hour's legs: those of legs already held or of calls
    /// already held (B legs set up later); the others began after the hour.
    pub fn follow(&mut self, later: HashMap<String, Leg>) {
        let calls: HashSet<String> = self.legs.iter().map(|(id, l)| l.call(id)).collect();
        for (id, leg) in later {
            if let Some(l) = self.legs.get_mut(&id) {
                l.merge(leg);
            } else if calls.contains(&leg.call(&id)) {
                self.legs.insert(id, leg);
            }
        }
    }

    /// Adds an hour's RTCP reports (those of other calls are ignored when finishing).
    pub fn rtcp(&mut self, reports: Reports) {
        for (id, by_sender) in reports {
            let have = self.reports.entry(id).or_default();
            for (from, q) in by_sender {
                have.entry(from).or_default().merge(q);
            }
        }
    }

    pub fn finish(self, earlier: &HashSet<String>) -> Vec<CallRecord> {
        let mut calls: HashMap<String, Vec<(String, Leg)>> = HashMap::new();
        for (id, leg) in self.legs {
            calls.entry(leg.call(&id)).or_default().push((id, leg));
        }
        let reports = self.reports;
        let mut out: Vec<CallRecord> = calls
            .into_iter()
            .filter(|(call, legs)| {
                !earlier.contains(call) && legs.iter().all(|(id, _)| !earlier.contains(id))
            })
            .filter_map(|(call, legs)| CallRecord::of(call, legs, &reports))
            .filter(|r| r.start.div_euclid(MICROS_PER_HOUR) == self.hour)
            .collect();
        out.sort_by(|a, b| (a.start, &a.call_id).cmp(&(b.start, &b.call_id)));
        out
    }
}

/// One row of the `calls` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// The call's first initial INVITE, of any leg.
    pub start: i64,
    /// The A leg's first initial INVITE: what the delays are measured from.
    pub invited: i64,
    pub call_id: String,
    pub b_legs: Vec<String>,
    pub end: i64,
    pub ringing: Option<i64>,
    pub answer: Option<i64>,
    pub bye: Option<i64>,
    pub final_status: Option<i32>,
    /// The Reason header of what ended the call: the final failure, else
    /// the BYE, else the CANCEL.
    pub reason: Option<String>,
    pub ended_by: Option<&'static str>,
    pub caller: Option<String>,
    pub callee: Option<String>,
    pub from_domain: Option<String>,
    pub to_domain: Option<String>,
    pub ruri_user: Option<String>,
    pub ruri_domain: Option<String>,
    pub user_agent: Option<String>,
    pub src_ip: Option<String>,
    pub src_port: i32,
    pub dst_ip: Option<String>,
    pub dst_port: i32,
    pub messages: i64,
    /// The hours holding the call's SIP messages, ascending.
    pub hours: Vec<i64>,
    /// RTCP reports of the call's legs.
    pub rtcp_reports: i64,
    /// The caller's media as its receiver reported it, and the callee's.
    pub caller_to_callee: Direction,
    pub callee_to_caller: Direction,
}

impl CallRecord {
    /// The record of call `call` from its legs and the RTCP reports seen;
    /// None when no leg was invited.
    fn of(call: String, legs: Vec<(String, Leg)>, reports: &Reports) -> Option<Self> {
        // The A leg: the one the call is named after, else the first invited.
        let main = legs
            .iter()
            .filter(|(_, l)| l.invite.is_some())
            .min_by_key(|(id, l)| (*id != call, l.invite.clone()))?;
        let start = legs
            .iter()
            .filter_map(|(_, l)| l.invite.as_ref())
            .map(|i| i.time)
            .min()?;
        let (_, leg) = main;
        let invite = leg.invite.clone()?;
        let b_legs: Vec<String> = legs
            .iter()
            .map(|(id, _)| id.clone())
            .filter(|id| *id != call)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let final_status = leg
            .answer
            .as_ref()
            .or(leg.failure.as_ref())
            .map(|e| e.status);
        let caller_tag = invite.from_tag.as_ref();
        let ended_by = match (&leg.bye, &leg.cancel) {
            (Some(bye), _) => bye.from_tag.as_ref().zip(caller_tag).map(|(tag, caller)| {
                if tag == caller { "caller" } else { "callee" }
            }),
            // Only the caller cancels an INVITE.
            (None, Some(_)) if leg.answer.is_none() => Some("caller"),
            _ => None,
        };
        let reason = match &leg.answer {
            Some(_) => leg.bye.as_ref().and_then(|e| e.reason.clone()),
            None => leg
                .failure
                .as_ref()
                .and_then(|e| e.reason.clone())
                .or_else(|| leg.cancel.as_ref().and_then(|e| e.reason.clone())),
        };
        let mut hours = Vec::new();
        for (_, l) in &legs {
            union_sorted(&mut hours, &l.hours);
        }
        let (mut rtcp_reports, mut caller_to_callee, mut callee_to_caller) =
            (0, Direction::default(), Direction::default());
        // The reports of every leg, and of the call's own Call-ID even when
        // none of that leg's SIP messages is at hand.
        let named = (!legs.iter().any(|(id, _)| *id == call)).then_some((&call, None));
        let reported = legs.iter().map(|(id, l)| (id, Some(l))).chain(named);
        for (id, l) in reported {
            let Some(by_sender) = reports.get(id) else {
                continue;
            };
            // Each leg's sides: the caller's is the address its INVITE offered
            // media at (else sent it from), the callee's the one it answered with
            // (else the INVITE went to); a leg whose INVITE is missing takes the
            // call's. A report describes what its sender received.
            let offer = l.and_then(|l| l.invite.as_ref()).or(Some(&invite));
            let caller_side = [
                offer.and_then(|i| i.media_ip.as_ref()),
                offer.and_then(|i| i.src_ip.as_ref()),
            ];
            let callee_side = [
                l.and_then(|l| l.answer.as_ref())
                    .and_then(|a| a.media_ip.as_ref()),
                offer.and_then(|i| i.dst_ip.as_ref()),
            ];
            for (from, q) in by_sender {
                rtcp_reports += q.reports;
                let is = |side: &[Option<&String>; 2]| side.iter().flatten().any(|a| *a == from);
                if is(&callee_side) {
                    caller_to_callee.add(q);
                } else if is(&caller_side) {
                    callee_to_caller.add(q);
                }
            }
        }
        Some(Self {
            start,
            invited: invite.time,
            call_id: call,
            b_legs,
            end: legs.iter().map(|(_, l)| l.last).max()?,
            ringing: leg.ringing,
            answer: leg.answer.as_ref().map(|e| e.time),
            bye: leg.bye.as_ref().map(|e| e.time),
            final_status,
            reason,
            ended_by,
            caller: invite.from_user,
            callee: invite.to_user.or(invite.ruri_user.clone()),
            from_domain: invite.from_domain,
            to_domain: invite.to_domain,
            ruri_user: invite.ruri_user,
            ruri_domain: invite.ruri_domain,
            user_agent: invite.user_agent,
            src_ip: invite.src_ip,
            src_port: invite.src_port,
            dst_ip: invite.dst_ip,
            dst_port: invite.dst_port,
            messages: legs.iter().map(|(_, l)| l.messages).sum(),
            hours,
            rtcp_reports,
            caller_to_callee,
            callee_to_caller,
        })
    }

    /// Milliseconds from `from` to `to` when both happened, `to` not before.
    fn millis(from: Option<i64>, to: Option<i64>) -> Option<i64> {
        let (from, to) = (from?, to?);
        (to >= from).then_some((to - from) / 1000)
    }

    /// INVITE to first ringing (post-dial delay).
    pub fn pdd_ms(&self) -> Option<i64> {
        Self::millis(Some(self.invited), self.ringing)
    }

    /// INVITE to answer.
    pub fn setup_ms(&self) -> Option<i64> {
        Self::millis(Some(self.invited), self.answer)
    }

    /// Answer to BYE.
    pub fn duration_ms(&self) -> Option<i64> {
        Self::millis(self.answer, self.bye)
    }

    /// [`Self::hours`] as the `hours` column holds them: `2026-12-01T10`, space-separated.
    pub fn hours_text(&self) -> String {
        self.hours
            .iter()
            .filter_map(|h| chrono::DateTime::from_timestamp_micros(h * MICROS_PER_HOUR))
            .map(|t| t.format("%Y-%m-%dT%H").to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `records` as one batch of the `calls` table, in their order.
pub fn to_batch(records: &[CallRecord]) -> Result<RecordBatch> {
    let ts = |v: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
    };
    let text = |f: &dyn Fn(&CallRecord) -> Option<String>| -> ArrayRef {
        Arc::new(records.iter().map(f).collect::<StringArray>())
    };
    let int64 = |f: &dyn Fn(&CallRecord) -> Option<i64>| -> ArrayRef {
        Arc::new(records.iter().map(f).collect::<Int64Array>())
    };
    let int32 = |f: &dyn Fn(&CallRecord) -> Option<i32>| -> ArrayRef {
        Arc::new(records.iter().map(f).collect::<Int32Array>())
    };
    let columns: Vec<ArrayRef> = vec![
        ts(records.iter().map(|r| Some(r.start)).collect()),
        text(&|r| Some(r.call_id.clone())),
        text(&|r| (!r.b_legs.is_empty()).then(|| r.b_legs.join(" "))),
        int32(&|r| Some(r.b_legs.len() as i32 + 1)),
        ts(records.iter().map(|r| Some(r.end)).collect()),
        ts(records.iter().map(|r| r.ringing).collect()),
        ts(records.iter().map(|r| r.answer).collect()),
        ts(records.iter().map(|r| r.bye).collect()),
        int64(&|r| r.pdd_ms()),
        int64(&|r| r.setup_ms()),
        int64(&|r| r.duration_ms()),
        int32(&|r| r.final_status),
        text(&|r| r.ended_by.map(str::to_owned)),
        text(&|r| r.caller.clone()),
        text(&|r| r.callee.clone()),
        text(&|r| r.ruri_user.clone()),
        text(&|r| r.ruri_domain.clone()),
        text(&|r| r.user_agent.clone()),
        text(&|r| r.src_ip.clone()),
        int32(&|r| Some(r.src_port)),
        text(&|r| r.dst_ip.clone()),
        int32(&|r| Some(r.dst_port)),
        int64(&|r| Some(r.messages)),
        text(&|r| r.reason.clone()),
        text(&|r| r.from_domain.clone()),
        text(&|r| r.to_domain.clone()),
        text(&|r| Some(r.hours_text())),
        int64(&|r| Some(r.rtcp_reports)),
        int64(&|r| r.caller_to_callee.lost),
        int64(&|r| r.caller_to_callee.jitter_max),
        int64(&|r| r.callee_to_caller.lost),
        int64(&|r| r.callee_to_caller.jitter_max),
    ];
    Ok(RecordBatch::try_new(calls_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::schema_for;

    /// One SIP message, as the columns a record is built from.
    #[derive(Clone, Default)]
    struct Msg {
        time: i64,
        call_id: &'static str,
        aleg_id: Option<&'static str>,
        method: Option<&'static str>,
        status: Option<i32>,
        cseq_method: &'static str,
        from_tag: &'static str,
        to_tag: Option<&'static str>,
        src: &'static str,
        media: Option<&'static str>,
        reason: Option<&'static str>,
    }

    const S: i64 = 1_000_000;
    /// 2026-12-01T10:00:00Z.
    const T0: i64 = 1_796_119_200 * S;

    fn request(
        time: i64,
        call_id: &'static str,
        method: &'static str,
        from_tag: &'static str,
    ) -> Msg {
        Msg {
            time,
            call_id,
            method: Some(method),
            cseq_method: method,
            from_tag,
            to_tag: (method != "INVITE").then_some("b"),
            src: "10.0.0.1",
            ..Default::default()
        }
    }

    fn response(time: i64, call_id: &'static str, status: i32, cseq_method: &'static str) -> Msg {
        Msg {
            time,
            call_id,
            status: Some(status),
            cseq_method,
            from_tag: "a",
            to_tag: (status > 100).then_some("b"),
            src: "10.0.0.2",
            ..Default::default()
        }
    }

    fn batch(msgs: &[Msg]) -> RecordBatch {
        let sip = schema_for(1);
        let schema = Arc::new(
            sip.project(&SOURCE_COLUMNS.map(|c| sip.index_of(c).unwrap()))
                .unwrap(),
        );
        let text = |f: &dyn Fn(&Msg) -> Option<String>| -> ArrayRef {
            Arc::new(msgs.iter().map(f).collect::<StringArray>())
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(msgs.iter().map(|m| m.time))
                    .with_timezone("UTC"),
            ),
            text(&|m| Some(m.call_id.into())),
            text(&|m| m.aleg_id.map(Into::into)),
            text(&|m| Some(m.call_id.into())),
            text(&|m| m.method.map(Into::into)),
            Arc::new(msgs.iter().map(|m| m.status).collect::<Int32Array>()),
            text(&|m| Some(m.cseq_method.into())),
            text(&|m| Some(format!("user-{}", m.call_id))),
            text(&|_| Some("a.example".into())),
            text(&|m| Some(m.from_tag.into())),
            text(&|_| Some("bob".into())),
            text(&|_| Some("b.example".into())),
            text(&|m| m.to_tag.map(Into::into)),
            text(&|_| Some("bob".into())),
            text(&|_| Some("example.com".into())),
            text(&|_| Some("ua".into())),
            text(&|m| Some(m.src.into())),
            Arc::new(Int32Array::from_iter_values(msgs.iter().map(|_| 5060))),
            text(&|m| {
                Some(
                    if m.src == "10.0.0.1" {
                        "10.0.0.2"
                    } else {
                        "10.0.0.1"
                    }
                    .into(),
                )
            }),
            Arc::new(Int32Array::from_iter_values(msgs.iter().map(|_| 5060))),
            text(&|m| m.media.map(Into::into)),
            text(&|m| m.reason.map(Into::into)),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn legs(msgs: &[Msg]) -> HashMap<String, Leg> {
        let mut legs = HashMap::new();
        fold(&mut legs, &batch(msgs)).unwrap();
        legs
    }

    fn answered_call(t: i64, id: &'static str) -> Vec<Msg> {
        vec![
            request(t, id, "INVITE", "a"),
            response(t + 10_000, id, 100, "INVITE"),
            response(t + 1_500_000, id, 180, "INVITE"),
            response(t + 4 * S, id, 200, "INVITE"),
            request(t + 4 * S + 20_000, id, "ACK", "a"),
            // The callee hangs up: its From tag is the caller's To tag.
            request(t + 64 * S, id, "BYE", "b"),
            response(t + 64 * S + 5_000, id, 200, "BYE"),
        ]
    }

    #[test]
    fn a_record_holds_the_delays_duration_and_outcome_of_its_call() {
        let msgs = answered_call(T0 + 60 * S, "c1");
        let records = HourRecords::new(T0 / MICROS_PER_HOUR, legs(&msgs)).finish(&HashSet::new());
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!((r.start, r.end), (T0 + 60 * S, T0 + 124 * S + 5_000));
        assert_eq!(r.pdd_ms(), Some(1_500));
        assert_eq!(r.setup_ms(), Some(4_000));
        assert_eq!(r.duration_ms(), Some(60_000));
        assert_eq!(r.final_status, Some(200));
        assert_eq!(r.ended_by, Some("callee"));
        assert_eq!(r.messages, 7);
        assert_eq!(r.caller.as_deref(), Some("user-c1"));
        assert_eq!(r.callee.as_deref(), Some("bob"));
        assert_eq!(r.src_ip.as_deref(), Some("10.0.0.1"));
        assert!(r.b_legs.is_empty());
        let batch = to_batch(&records).unwrap();
        assert_eq!(batch.num_rows(), 1);
        let pdd = batch
            .column_by_name("pdd_ms")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(pdd.value(0), 1_500);
    }

    #[test]
    fn legs_are_one_call_and_a_failed_call_keeps_its_final_status() {
        let t = T0 + 600 * S;
        let mut b_invite = request(t + 20_000, "b-leg", "INVITE", "x");
        b_invite.aleg_id = Some("a-leg");
        let msgs = vec![
            request(t, "a-leg", "INVITE", "a"),
            b_invite,
            response(t + 30_000, "b-leg", 100, "INVITE"),
            response(t + 2 * S, "b-leg", 486, "INVITE"),
            response(t + 2 * S + 10_000, "a-leg", 486, "INVITE"),
            // The B2BUA's own Call-ID form of the A leg.
            request(t + 3 * S, "a-leg_b2b-1", "INVITE", "y"),
        ];
        let records = HourRecords::new(T0 / MICROS_PER_HOUR, legs(&msgs)).finish(&HashSet::new());
        assert_eq!(records.len(), 1, "{records:?}");
        let r = &records[0];
        assert_eq!(r.call_id, "a-leg");
        assert_eq!(r.b_legs, ["a-leg_b2b-1", "b-leg"]);
        assert_eq!(r.final_status, Some(486));
        assert_eq!(
            (r.setup_ms(), r.duration_ms(), r.ended_by),
            (None, None, None)
        );
        assert_eq!(r.messages, 6);
    }

    #[test]
    fn the_order_and_split_of_rows_change_nothing() {
        let mut msgs = answered_call(T0 + 5 * S, "c1");
        msgs.extend(answered_call(T0 + 7 * S, "c2"));
        let whole = HourRecords::new(T0 / MICROS_PER_HOUR, legs(&msgs)).finish(&HashSet::new());
        msgs.reverse();
        let mut split = HashMap::new();
        for chunk in msgs.chunks(3) {
            fold(&mut split, &batch(chunk)).unwrap();
        }
        assert_eq!(
            HourRecords::new(T0 / MICROS_PER_HOUR, split).finish(&HashSet::new()),
            whole
        );
        assert_eq!(whole.len(), 2);
    }

    #[test]
    fn a_call_belongs_to_the_hour_of_its_first_invite_and_follows_into_later_hours() {
        let hour = T0 / MICROS_PER_HOUR;
        // Began a second before the hour: the hour before's call.
        let before = answered_call(T0 - S, "early");
        // Begins at the end of the hour and is answered and ended in the next.
        let spanning = answered_call(T0 + 3600 * S - 2 * S, "late");
        let (in_hour, after): (Vec<Msg>, Vec<Msg>) = before
            .iter()
            .chain(&spanning)
            .cloned()
            .partition(|m| m.time.div_euclid(MICROS_PER_HOUR) == hour);
        let earlier_msgs: Vec<Msg> = before.iter().filter(|m| m.time < T0).cloned().collect();
        let earlier = began(&legs(&earlier_msgs));
        let mut records = HourRecords::new(hour, legs(&in_hour));
        // A call that begins in the next hour is not this hour's.
        let mut next = after.clone();
        next.extend(answered_call(T0 + 3700 * S, "next"));
        records.follow(legs(&next));
        let records = records.finish(&earlier);
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].call_id, "late");
        assert_eq!(records[0].duration_ms(), Some(60_000));
        assert_eq!(records[0].messages, 7);
        assert_eq!(records[0].hours, [hour, hour + 1]);
        assert_eq!(records[0].hours_text(), "2026-12-01T10 2026-12-01T11");
        // A BYE alone is no call.
        let bye = vec![request(T0 + S, "orphan", "BYE", "a")];
        assert!(
            HourRecords::new(hour, legs(&bye))
                .finish(&HashSet::new())
                .is_empty()
        );
    }

    #[test]
    fn the_reason_and_who_ended_come_from_what_ended_the_call() {
        let t = T0 + 60 * S;
        let mut answered = answered_call(t, "bye");
        answered[5].reason = Some("Q.850;cause=16");
        let mut cancel = request(t + 2 * S, "cancel", "CANCEL", "a");
        cancel.reason = Some("SIP;cause=200;text=\"Call completed elsewhere\"");
        let cancelled = vec![
            request(t, "cancel", "INVITE", "a"),
            response(t + 10_000, "cancel", 100, "INVITE"),
            cancel,
            response(t + 2 * S + 5_000, "cancel", 200, "CANCEL"),
            response(t + 2 * S + 6_000, "cancel", 487, "INVITE"),
        ];
        let mut busy = response(t + S, "busy", 486, "INVITE");
        busy.reason = Some("Q.850;cause=17");
        let failed = vec![request(t, "busy", "INVITE", "a"), busy];
        let all: Vec<Msg> = [answered, cancelled, failed].concat();
        let records = HourRecords::new(T0 / MICROS_PER_HOUR, legs(&all)).finish(&HashSet::new());
        let by_id = |id: &str| records.iter().find(|r| r.call_id == id).unwrap();
        let outcome = |id: &str| {
            let r = by_id(id);
            (r.final_status, r.reason.clone(), r.ended_by)
        };
        let text = |s: &str| Some(s.to_owned());
        assert_eq!(
            outcome("bye"),
            (Some(200), text("Q.850;cause=16"), Some("callee"))
        );
        assert_eq!(
            outcome("cancel"),
            (
                Some(487),
                text("SIP;cause=200;text=\"Call completed elsewhere\""),
                Some("caller")
            )
        );
        assert_eq!(outcome("busy"), (Some(486), text("Q.850;cause=17"), None));
        let r = by_id("bye");
        assert_eq!(
            (r.from_domain.as_deref(), r.to_domain.as_deref()),
            (Some("a.example"), Some("b.example"))
        );
    }

    /// RTCP rows: (Call-ID, sender address, heplify's JSON).
    fn rtcp(rows: &[(&str, &str, String)]) -> RecordBatch {
        let text = |f: &dyn Fn(&(&str, &str, String)) -> String| -> ArrayRef {
            Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>())
        };
        RecordBatch::try_from_iter([
            ("correlation_id", text(&|r| r.0.to_owned())),
            ("src_ip", text(&|r| r.1.to_owned())),
            ("payload", text(&|r| r.2.clone())),
        ])
        .unwrap()
    }

    fn report(lost: i64, jitter: i64) -> String {
        format!(
            r#"{{"type":201,"ssrc":1,"report_blocks":[{{"source_ssrc":2,"packets_lost":{lost},"ia_jitter":{jitter}}}]}}"#
        )
    }

    #[test]
    fn rtcp_quality_is_told_per_direction_by_the_sides_media_addresses() {
        let mut msgs = answered_call(T0 + 60 * S, "c1");
        msgs[0].media = Some("192.0.2.1");
        msgs[3].media = Some("192.0.2.2");
        let (caller_media, callee_media) = ("192.0.2.1", "192.0.2.2");
        let mut reports = Reports::new();
        // Reports split over two hours and read in any order.
        fold_rtcp(
            &mut reports,
            &rtcp(&[
                ("c1", callee_media, report(3, 7)),
                ("c1", caller_media, report(0, 1)),
                ("c1", "198.51.100.9", report(99, 99)),
                ("other", callee_media, report(50, 50)),
            ]),
        )
        .unwrap();
        let mut later = Reports::new();
        fold_rtcp(
            &mut later,
            &rtcp(&[
                ("c1", callee_media, report(5, 2)),
                ("c1", caller_media, "\u{80}\u{c8} binary".to_owned()),
            ]),
        )
        .unwrap();
        let mut hour = HourRecords::new(T0 / MICROS_PER_HOUR, legs(&msgs));
        hour.rtcp(later);
        hour.rtcp(reports);
        let r = &hour.finish(&HashSet::new())[0];
        assert_eq!(
            r.rtcp_reports, 5,
            "every report of the call, even unreadable"
        );
        assert_eq!(
            r.caller_to_callee,
            Direction {
                lost: Some(5),
                jitter_max: Some(7)
            },
            "the callee's reports tell the caller's media"
        );
        assert_eq!(
            r.callee_to_caller,
            Direction {
                lost: Some(0),
                jitter_max: Some(1)
            }
        );
        let batch = to_batch(std::slice::from_ref(r)).unwrap();
        let lost = batch
            .column_by_name("caller_to_callee_lost")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(lost.value(0), 5);
    }
}
