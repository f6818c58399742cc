//! A call's flow (see `calls`) as a capture file: every SIP message of every
//! leg and its RTCP, as libpcap for Wireshark, or as plain text.
use std::net::{IpAddr, SocketAddr};

use packet::{Packet, Transport};
use serde_json::Value;

/// One row of the flow that can go on the wire.
struct Row {
    time_micros: i64,
    src: SocketAddr,
    dst: SocketAddr,
    transport: Transport,
    payload: Vec<u8>,
}

/// Times as the JSON renderer writes them: UTC, no zone, to the microsecond.
fn micros(t: &str) -> Option<i64> {
    let t = t.trim_end_matches('Z');
    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_micros())
}

fn addr(r: &Value, side: &str) -> Option<SocketAddr> {
    let ip: IpAddr = r[format!("{side}_ip")].as_str()?.parse().ok()?;
    let port = u16::try_from(r[format!("{side}_port")].as_i64()?).ok()?;
    Some(SocketAddr::new(ip, port))
}

/// A row as a frame: its time, addresses and transport (RTCP rows have no
/// `protocol`: UDP), and its payload as `payload` makes it. None when the
/// row has no addresses (a HEP sender that gave none): it cannot be framed.
fn framed(r: &Value, payload: impl Fn(&[u8]) -> Vec<u8>) -> Option<Row> {
    Some(Row {
        time_micros: r["time"].as_str().and_then(micros)?,
        src: addr(r, "src")?,
        dst: addr(r, "dst")?,
        transport: if r["protocol"] == 6 {
            Transport::Tcp
        } else {
            Transport::Udp
        },
        payload: payload(r["payload"].as_str().unwrap_or_default().as_bytes()),
    })
}

/// SIP messages, and RTCP reports rebuilt as packets (JSON reports) or as
/// stored (anything else), in time order.
fn rows(flow: &Value) -> Vec<Row> {
    let list = |k: &str| flow[k].as_array().cloned().unwrap_or_default();
    let sip = list("messages")
        .into_iter()
        .filter_map(|m| framed(&m, <[u8]>::to_vec));
    let rtcp = list("rtcp").into_iter().filter_map(|r| {
        framed(&r, |stored| {
            packet::rtcp::from_json(stored).unwrap_or_else(|| stored.to_vec())
        })
    });
    let mut out: Vec<Row> = sip.chain(rtcp).collect();
    out.sort_by_key(|r| r.time_micros);
    out
}

pub fn pcap(flow: &Value) -> Vec<u8> {
    let rows = rows(flow);
    packet::pcap(rows.iter().map(|r| Packet {
        time_micros: r.time_micros,
        src: r.src,
        dst: r.dst,
        transport: r.transport,
        payload: &r.payload,
    }))
}

/// The SIP messages and the RTCP reports as text, each under a line with its
/// time, addresses and transport (RTCP as the JSON it was stored as).
pub fn text(flow: &Value) -> String {
    let mut entries: Vec<(i64, String)> = Vec::new();
    for (key, kind) in [("messages", "SIP"), ("rtcp", "RTCP"), ("logs", "LOG")] {
        for r in flow[key].as_array().into_iter().flatten() {
            let t = r["time"].as_str().unwrap_or_default();
            let proto = if r["protocol"] == 6 { "TCP" } else { "UDP" };
            let ends = |side| addr(r, side).map_or("?".to_string(), |a| a.to_string());
            entries.push((
                micros(t).unwrap_or_default(),
                format!(
                    "{t}Z {} -> {} {proto} {kind}\n{}\n",
                    ends("src"),
                    ends("dst"),
                    r["payload"].as_str().unwrap_or_default().trim_end()
                ),
            ));
        }
    }
    entries.sort_by_key(|e| e.0);
    entries
        .into_iter()
        .map(|e| e.1)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_framed_in_time_order_and_json_rtcp_is_rebuilt() {
        let flow = serde_json::json!({
            "messages": [
                {"time": "2026-11-29T10:00:01.000002", "src_ip": "10.0.0.1", "src_port": 5060, "dst_ip": "10.0.0.2", "dst_port": 5060, "protocol": 6, "payload": "BYE sip:b@h SIP/2.0\r\n\r\n"},
                {"time": "2026-11-29T10:00:00.5", "src_ip": "10.0.0.1", "src_port": 5060, "dst_ip": null, "dst_port": 5060, "protocol": 17, "payload": "no address"},
            ],
            "rtcp": [
                {"time": "2026-11-29T10:00:00.000001", "src_ip": "10.0.0.1", "src_port": 16001, "dst_ip": "10.0.0.2", "dst_port": 20001, "payload": "{\"type\":201,\"ssrc\":7,\"report_blocks\":[]}"},
            ],
        });
        let r = rows(&flow);
        assert_eq!(r.len(), 2, "the row without a destination is left out");
        assert_eq!(
            r[0].payload,
            [0x80, 201, 0, 1, 0, 0, 0, 7],
            "the JSON RR rebuilt"
        );
        assert_eq!(r[1].time_micros % 1_000_000, 2);
        assert_eq!(r[1].transport, Transport::Tcp);
        assert!(text(&flow).starts_with(
            "2026-11-29T10:00:00.000001Z 10.0.0.1:16001 -> 10.0.0.2:20001 UDP RTCP\n"
        ));
    }
}
