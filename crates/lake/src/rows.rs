//! HEP messages → Arrow record batches, column by column.
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use hep::HepMessage;
use hep::sip::{DEFAULT_ALEG_HEADERS, SipFields};

use crate::schema::{SIP_TYPE, schema_for};

/// Accumulates rows of one table; `finish` yields a batch in schema order.
pub struct BatchBuilder {
    hep_type: u8,
    time: TimestampMicrosecondBuilder,
    time_sec: Int64Builder,
    time_usec: Int64Builder,
    kind: Int32Builder,
    capture_id: Int64Builder,
    capture_pass: StringBuilder,
    correlation_id: StringBuilder,
    src_ip: StringBuilder,
    dst_ip: StringBuilder,
    src_port: Int32Builder,
    dst_port: Int32Builder,
    ip_family: Int32Builder,
    protocol: Int32Builder,
    proto_type: Int32Builder,
    node_name: StringBuilder,
    vlan: Int32Builder,
    payload: StringBuilder,
    sip: Option<SipBuilders>,
    original_time: TimestampMicrosecondBuilder,
    aleg_headers: AlegHeaders,
    rows: usize,
    payload_bytes: usize,
}

/// The headers SIP extraction takes the A leg's Call-ID from, first preferred.
pub type AlegHeaders = Arc<[String]>;

pub fn default_aleg_headers() -> AlegHeaders {
    DEFAULT_ALEG_HEADERS.iter().map(|h| h.to_string()).collect()
}

/// A comma-separated list of header names (`X-CID,X-Leg-ID`); empty for none.
pub fn parse_aleg_headers(list: &str) -> Result<AlegHeaders, String> {
    list.split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            // RFC 3261 token characters: what a header name may hold.
            let token = h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
            if token {
                Ok(h.to_string())
            } else {
                Err(format!("A-leg header {h:?} is not a SIP header name"))
            }
        })
        .collect()
}

#[derive(Default)]
struct SipBuilders {
    method: StringBuilder,
    status: Int32Builder,
    call_id: StringBuilder,
    cseq_num: Int64Builder,
    cseq_method: StringBuilder,
    from_user: StringBuilder,
    from_tag: StringBuilder,
    to_user: StringBuilder,
    to_tag: StringBuilder,
    ruri_user: StringBuilder,
    ruri_domain: StringBuilder,
    user_agent: StringBuilder,
    aleg_id: StringBuilder,
    via_branch: StringBuilder,
    contact: StringBuilder,
    content_type: StringBuilder,
    sdp_media_ip: StringBuilder,
    sdp_media_port: Int32Builder,
    from_domain: StringBuilder,
    to_domain: StringBuilder,
    reason: StringBuilder,
}

impl SipBuilders {
    fn append(&mut self, f: &SipFields<'_>) {
        self.method.append_option(f.method.as_deref());
        self.status.append_option(f.status.map(i32::from));
        self.call_id.append_option(f.call_id.as_deref());
        self.cseq_num.append_option(f.cseq_num.map(i64::from));
        self.cseq_method.append_option(f.cseq_method.as_deref());
        self.from_user.append_option(f.from_user.as_deref());
        self.from_tag.append_option(f.from_tag.as_deref());
        self.to_user.append_option(f.to_user.as_deref());
        self.to_tag.append_option(f.to_tag.as_deref());
        self.ruri_user.append_option(f.ruri_user.as_deref());
        self.ruri_domain.append_option(f.ruri_domain.as_deref());
        self.user_agent.append_option(f.user_agent.as_deref());
        self.aleg_id.append_option(f.aleg_id.as_deref());
        self.via_branch.append_option(f.via_branch.as_deref());
        self.contact.append_option(f.contact.as_deref());
        self.content_type.append_option(f.content_type.as_deref());
        self.sdp_media_ip.append_option(f.sdp_media_ip.as_deref());
        self.sdp_media_port
            .append_option(f.sdp_media_port.map(i32::from));
        self.from_domain.append_option(f.from_domain.as_deref());
        self.to_domain.append_option(f.to_domain.as_deref());
        self.reason.append_option(f.reason.as_deref());
    }

    /// The columns added later, which go after `original_time`.
    fn finish_added(&mut self) -> [ArrayRef; 9] {
        [
            Arc::new(self.aleg_id.finish()),
            Arc::new(self.via_branch.finish()),
            Arc::new(self.contact.finish()),
            Arc::new(self.content_type.finish()),
            Arc::new(self.sdp_media_ip.finish()),
            Arc::new(self.sdp_media_port.finish()),
            Arc::new(self.from_domain.finish()),
            Arc::new(self.to_domain.finish()),
            Arc::new(self.reason.finish()),
        ]
    }

    fn finish(&mut self) -> [ArrayRef; 12] {
        [
            Arc::new(self.method.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.call_id.finish()),
            Arc::new(self.cseq_num.finish()),
            Arc::new(self.cseq_method.finish()),
            Arc::new(self.from_user.finish()),
            Arc::new(self.from_tag.finish()),
            Arc::new(self.to_user.finish()),
            Arc::new(self.to_tag.finish()),
            Arc::new(self.ruri_user.finish()),
            Arc::new(self.ruri_domain.finish()),
            Arc::new(self.user_agent.finish()),
        ]
    }
}

impl BatchBuilder {
    pub fn new(hep_type: u8) -> Self {
        Self::with_aleg_headers(hep_type, default_aleg_headers())
    }

    pub fn with_aleg_headers(hep_type: u8, aleg_headers: AlegHeaders) -> Self {
        Self {
            hep_type,
            time: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            time_sec: Default::default(),
            time_usec: Default::default(),
            kind: Default::default(),
            capture_id: Default::default(),
            capture_pass: Default::default(),
            correlation_id: Default::default(),
            src_ip: Default::default(),
            dst_ip: Default::default(),
            src_port: Default::default(),
            dst_port: Default::default(),
            ip_family: Default::default(),
            protocol: Default::default(),
            proto_type: Default::default(),
            node_name: Default::default(),
            vlan: Default::default(),
            payload: Default::default(),
            sip: (hep_type == SIP_TYPE).then(SipBuilders::default),
            original_time: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            aleg_headers,
            rows: 0,
            payload_bytes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Rough in-memory size, for flush-on-size decisions.
    pub fn approx_bytes(&self) -> usize {
        self.payload_bytes + self.rows * 160
    }

    /// Appends one message. Its type must be this builder's.
    pub fn append(&mut self, m: &HepMessage) {
        self.append_seen(m, |_| {});
    }

    /// [`Self::append`], handing `seen` the SIP fields it extracted (None for
    /// other types), so a caller that needs them does not extract them again.
    pub fn append_seen(&mut self, m: &HepMessage, seen: impl FnOnce(Option<&SipFields<'_>>)) {
        debug_assert_eq!(m.proto_type, self.hep_type);
        self.time.append_value(m.time_micros());
        self.time_sec.append_value(m.time_sec as i64);
        self.time_usec.append_value(m.time_usec as i64);
        self.kind.append_value(m.proto_type as i32);
        self.capture_id.append_value(m.capture_id as i64);
        self.capture_pass.append_option(m.capture_pass.as_deref());
        self.correlation_id
            .append_option(m.correlation_id.as_deref());
        append_ip(&mut self.src_ip, m.src_ip);
        append_ip(&mut self.dst_ip, m.dst_ip);
        self.src_port.append_value(m.src_port as i32);
        self.dst_port.append_value(m.dst_port as i32);
        self.ip_family.append_value(m.ip_family as i32);
        self.protocol.append_value(m.protocol as i32);
        self.proto_type.append_value(m.proto_type as i32);
        self.node_name.append_option(m.node_name.as_deref());
        self.vlan.append_option(m.vlan.map(i32::from));
        // Stored as text (SIP, JSON RTCP reports, logs): invalid UTF-8 becomes U+FFFD.
        self.payload
            .append_value(String::from_utf8_lossy(&m.payload));
        match self.sip.as_mut() {
            Some(sip) => {
                let fields = hep::sip::extract_with(&m.payload, &self.aleg_headers);
                sip.append(&fields);
                seen(Some(&fields));
            }
            None => seen(None),
        }
        self.original_time.append_option(m.original_time_micros);
        self.rows += 1;
        self.payload_bytes += m.payload.len();
    }

    /// Takes the rows so far as a batch and leaves the builder empty.
    pub fn finish(&mut self) -> RecordBatch {
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.time_sec.finish()),
            Arc::new(self.time_usec.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.capture_id.finish()),
            Arc::new(self.capture_pass.finish()),
            Arc::new(self.correlation_id.finish()),
            Arc::new(self.src_ip.finish()),
            Arc::new(self.dst_ip.finish()),
            Arc::new(self.src_port.finish()),
            Arc::new(self.dst_port.finish()),
            Arc::new(self.ip_family.finish()),
            Arc::new(self.protocol.finish()),
            Arc::new(self.proto_type.finish()),
            Arc::new(self.node_name.finish()),
            Arc::new(self.vlan.finish()),
            Arc::new(self.payload.finish()),
        ];
        if let Some(sip) = self.sip.as_mut() {
            cols.extend(sip.finish());
        }
        cols.push(Arc::new(self.original_time.finish()));
        if let Some(sip) = self.sip.as_mut() {
            cols.extend(sip.finish_added());
        }
        self.rows = 0;
        self.payload_bytes = 0;
        RecordBatch::try_new(schema_for(self.hep_type), cols).expect("builders match the schema")
    }
}

fn append_ip(b: &mut StringBuilder, ip: Option<std::net::IpAddr>) {
    use std::fmt::Write;
    match ip {
        Some(ip) => {
            write!(b, "{ip}").expect("writing to a StringBuilder cannot fail");
            b.append_value("");
        }
        None => b.append_null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aleg_header_lists_parse_or_say_what_is_wrong() {
        assert_eq!(
            &*parse_aleg_headers(" X-CID, X-Leg-ID ,").unwrap(),
            ["X-CID", "X-Leg-ID"]
        );
        assert!(parse_aleg_headers("").unwrap().is_empty());
        let e = parse_aleg_headers("X-CID,X CID").unwrap_err();
        assert!(e.contains("\"X CID\""), "{e}");
    }
}
