//! A call's flow (see `flow`) as a capture file: every SIP message of every
//! leg and its RTCP, as libpcap for Wireshark, or as plain text. Built from
//! the query's columns, row by row; the caller counts what is held.
use std::net::{IpAddr, SocketAddr};

use packet::{Packet, Transport};

use crate::calls::Columns;

/// One row of the flow that can go on the wire.
pub struct Frame {
    pub time_micros: i64,
    src: SocketAddr,
    dst: SocketAddr,
    transport: Transport,
    payload: Vec<u8>,
}

/// Bytes a frame adds to a PCAP beyond its payload: record, Ethernet, IPv6
/// and TCP headers at most.
pub const FRAME_OVERHEAD: usize = 16 + 14 + 40 + 20;

impl Frame {
    /// What the frame adds to the file, at most.
    pub fn size(&self) -> usize {
        self.payload.len() + FRAME_OVERHEAD
    }
}

fn addr(c: &Columns, side: &str, row: usize) -> Option<SocketAddr> {
    let ip: IpAddr = c.text(&format!("{side}_ip"), row)?.parse().ok()?;
    let port = u16::try_from(c.int(&format!("{side}_port"), row)?).ok()?;
    Some(SocketAddr::new(ip, port))
}

fn transport(c: &Columns, row: usize) -> Transport {
    if c.int("protocol", row) == Some(6) {
        Transport::Tcp
    } else {
        Transport::Udp
    }
}

/// Row `row` as a frame: its time, addresses and transport (RTCP rows have
/// no `protocol`: UDP), and its payload as `payload` makes it. None when the
/// row has no addresses (a HEP sender that gave none): it cannot be framed.
fn framed(c: &Columns, row: usize, payload: impl Fn(&[u8]) -> Vec<u8>) -> Option<Frame> {
    Some(Frame {
        time_micros: c.int("time", row)?,
        src: addr(c, "src", row)?,
        dst: addr(c, "dst", row)?,
        transport: transport(c, row),
        payload: payload(c.text("payload", row).unwrap_or_default().as_bytes()),
    })
}

/// SIP messages as captured.
pub fn sip_frames(c: &Columns) -> impl Iterator<Item = Frame> + '_ {
    (0..c.rows).filter_map(|row| framed(c, row, <[u8]>::to_vec))
}

/// RTCP reports rebuilt as packets (JSON reports) or as stored (anything else).
pub fn rtcp_frames(c: &Columns) -> impl Iterator<Item = Frame> + '_ {
    (0..c.rows).filter_map(|row| {
        framed(c, row, |stored| {
            packet::rtcp::from_json(stored).unwrap_or_else(|| stored.to_vec())
        })
    })
}

/// The frames as a libpcap file, in time order (SIP before RTCP at one instant).
pub fn pcap(mut frames: Vec<Frame>) -> Vec<u8> {
    frames.sort_by_key(|f| f.time_micros);
    packet::pcap(frames.iter().map(|f| Packet {
        time_micros: f.time_micros,
        src: f.src,
        dst: f.dst,
        transport: f.transport,
        payload: &f.payload,
    }))
}

/// Times as the JSON renderer writes them: UTC, to the microsecond.
fn time_text(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string())
        .unwrap_or_default()
}

/// Each row as text under a line with its time, addresses, transport and
/// `kind` (SIP, RTCP, LOG; RTCP as the JSON it was stored as).
pub fn text_entries<'a>(c: &'a Columns, kind: &'a str) -> impl Iterator<Item = (i64, String)> + 'a {
    (0..c.rows).map(move |row| {
        let t = c.int("time", row).unwrap_or_default();
        let proto = match transport(c, row) {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
        };
        let ends = |side| addr(c, side, row).map_or("?".to_string(), |a| a.to_string());
        (
            t,
            format!(
                "{}Z {} -> {} {proto} {kind}\n{}\n",
                time_text(t),
                ends("src"),
                ends("dst"),
                c.text("payload", row).unwrap_or_default().trim_end()
            ),
        )
    })
}

/// The entries in time order, a blank line between them.
pub fn text(mut entries: Vec<(i64, String)>) -> String {
    entries.sort_by_key(|e| e.0);
    entries
        .into_iter()
        .map(|e| e.1)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray};

    use super::*;

    /// time µs, src_ip, dst_ip, port, protocol, payload
    type Row<'a> = (i64, &'a str, Option<&'a str>, i32, Option<i32>, &'a str);

    fn batch(rows: &[Row]) -> RecordBatch {
        let col = |f: &dyn Fn(&Row) -> Option<String>| {
            Arc::new(rows.iter().map(f).collect::<StringArray>()) as ArrayRef
        };
        RecordBatch::try_from_iter([
            (
                "time",
                Arc::new(
                    TimestampMicrosecondArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ) as ArrayRef,
            ),
            ("src_ip", col(&|r| Some(r.1.to_owned()))),
            ("dst_ip", col(&|r| r.2.map(str::to_owned))),
            (
                "src_port",
                Arc::new(Int32Array::from(
                    rows.iter().map(|r| r.3).collect::<Vec<_>>(),
                )) as ArrayRef,
            ),
            (
                "dst_port",
                Arc::new(Int32Array::from(
                    rows.iter().map(|r| r.3).collect::<Vec<_>>(),
                )) as ArrayRef,
            ),
            (
                "protocol",
                Arc::new(Int32Array::from(
                    rows.iter().map(|r| r.4).collect::<Vec<_>>(),
                )) as ArrayRef,
            ),
            ("payload", col(&|r| Some(r.5.to_owned()))),
        ])
        .unwrap()
    }

    #[test]
    fn rows_are_framed_in_time_order_and_json_rtcp_is_rebuilt() {
        let t = 1_795_946_400_000_000;
        let sip = batch(&[
            (
                t + 1_000_002,
                "10.0.0.1",
                Some("10.0.0.2"),
                5060,
                Some(6),
                "BYE sip:b@h SIP/2.0\r\n\r\n",
            ),
            (t + 500_000, "10.0.0.1", None, 5060, Some(17), "no address"),
        ]);
        let rtcp = batch(&[(
            t + 1,
            "10.0.0.1",
            Some("10.0.0.2"),
            16001,
            None,
            "{\"type\":201,\"ssrc\":7,\"report_blocks\":[]}",
        )]);
        let (sip, rtcp) = (Columns::of(&sip), Columns::of(&rtcp));
        let mut frames: Vec<Frame> = sip_frames(&sip).chain(rtcp_frames(&rtcp)).collect();
        assert_eq!(frames.len(), 2, "the row without a destination is left out");
        frames.sort_by_key(|f| f.time_micros);
        assert_eq!(
            frames[0].payload,
            [0x80, 201, 0, 1, 0, 0, 0, 7],
            "the JSON RR rebuilt"
        );
        assert_eq!(frames[1].time_micros % 1_000_000, 2);
        assert_eq!(frames[1].transport, Transport::Tcp);
        let text = text(
            text_entries(&sip, "SIP")
                .chain(text_entries(&rtcp, "RTCP"))
                .collect(),
        );
        assert!(
            text.starts_with(
                "2026-11-29T10:00:00.000001Z 10.0.0.1:16001 -> 10.0.0.2:16001 UDP RTCP\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("10:00:00.500Z 10.0.0.1:5060 -> ? UDP SIP\nno address\n"),
            "{text}"
        );
    }
}
