//! `hepop import`: a pcap or pcapng capture into the lake (or to a HEP
//! server), its SIP and RTCP as the HEP messages a capture agent would have
//! sent, with the capture's times.
use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use hep::HepMessage;
use packet::Transport;
use packet::read::Captured;

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// A pcap or pcapng file.
    pub file: PathBuf,
    #[command(flatten)]
    pub lake: crate::args::LakeArgs,
    /// Send to this HEP server (host:port, over TCP) instead of writing the lake.
    #[arg(long)]
    pub to: Option<String>,
    /// SIP headers carrying the A leg's Call-ID (as `hepop serve --aleg-headers`).
    #[arg(long = "aleg-headers", env = "HEPOP_ALEG_HEADERS", default_value_t = hep::sip::DEFAULT_ALEG_HEADERS.join(","))]
    pub aleg_headers: String,
}

/// What an import found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub sip: usize,
    pub rtcp: usize,
    /// RTCP reports tied to a call through an SDP offer or answer of the capture.
    pub rtcp_correlated: usize,
    /// UDP or TCP payloads that are neither SIP nor RTCP.
    pub other: usize,
}

fn is_sip(p: &[u8]) -> bool {
    if p.starts_with(b"SIP/2.0 ") {
        return true;
    }
    // A request line: METHOD SP URI SP SIP/2.0
    let line = p.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    !method.is_empty()
        && method.iter().all(u8::is_ascii_uppercase)
        && parts.nth(1).is_some_and(|v| v.starts_with(b"SIP/2.0"))
}

/// RTCP: version 2, a packet type of the RTCP range (RFC 5761's demultiplexing rule).
fn is_rtcp(c: &Captured) -> bool {
    c.transport == Transport::Udp
        && c.payload.len() >= 8
        && c.payload[0] >> 6 == 2
        && (200..=207).contains(&c.payload[1])
}

fn hep_message(
    c: &Captured,
    proto_type: u8,
    payload: Vec<u8>,
    correlation: Option<String>,
) -> HepMessage {
    let (src, dst) = (c.src.ip(), c.dst.ip());
    HepMessage {
        version: 3,
        ip_family: if src.is_ipv4() {
            hep::ip_family::IPV4
        } else {
            hep::ip_family::IPV6
        },
        protocol: if c.transport == Transport::Tcp { 6 } else { 17 },
        src_ip: Some(src),
        dst_ip: Some(dst),
        src_port: c.src.port(),
        dst_port: c.dst.port(),
        time_sec: c.time_micros.div_euclid(1_000_000) as u32,
        time_usec: c.time_micros.rem_euclid(1_000_000) as u32,
        proto_type,
        capture_id: 0,
        capture_pass: None,
        payload,
        correlation_id: correlation,
        vlan: None,
        node_name: Some("hepop-import".into()),
        keep_alive: None,
        original_time_micros: None,
    }
}

/// The capture's SIP and RTCP as HEP messages, in capture order. RTCP takes
/// the Call-ID of the call whose SDP announced its media address (RTCP on
/// the media port + 1, or on the media port itself when multiplexed) as its
/// correlation id, as heplify does; JSON like heplify's replaces binary
/// reports it can read.
pub fn to_hep(packets: &[Captured], aleg_headers: &[String]) -> (Vec<HepMessage>, Found) {
    let mut media: HashMap<(IpAddr, u16), String> = HashMap::new();
    for c in packets.iter().filter(|c| is_sip(&c.payload)) {
        let f = hep::sip::extract_with(&c.payload, aleg_headers);
        if let (Some(ip), Some(port), Some(call)) = (&f.sdp_media_ip, f.sdp_media_port, &f.call_id)
            && let Ok(ip) = ip.parse::<IpAddr>()
        {
            media.insert((ip, port), call.to_string());
        }
    }
    let call_of = |a: SocketAddr| {
        media
            .get(&(a.ip(), a.port().wrapping_sub(1)))
            .or_else(|| media.get(&(a.ip(), a.port())))
            .cloned()
    };
    let mut found = Found::default();
    let mut out = Vec::new();
    for c in packets {
        if is_sip(&c.payload) {
            found.sip += 1;
            out.push(hep_message(c, 1, c.payload.clone(), None));
        } else if is_rtcp(c) {
            found.rtcp += 1;
            let call = call_of(c.src).or_else(|| call_of(c.dst));
            found.rtcp_correlated += usize::from(call.is_some());
            let payload = packet::rtcp::to_json(&c.payload)
                .map_or_else(|| c.payload.clone(), String::into_bytes);
            out.push(hep_message(c, 5, payload, call));
        } else {
            found.other += 1;
        }
    }
    (out, found)
}

pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let aleg_headers = lake::rows::parse_aleg_headers(&args.aleg_headers)
        .map_err(|e| anyhow::anyhow!("--aleg-headers: {e}"))?;
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let capture = packet::read::read(&bytes).with_context(|| format!("{}", args.file.display()))?;
    let (msgs, found) = to_hep(&capture.packets, &aleg_headers);
    match &args.to {
        Some(to) => {
            let mut s = std::io::BufWriter::new(
                TcpStream::connect(to).with_context(|| format!("connecting to {to}"))?,
            );
            for m in &msgs {
                s.write_all(&hep::encode_v3(m)?)?;
            }
            s.flush()?;
        }
        None => {
            let store = lake::store::open(&args.lake.data)?;
            let mut buf = lake::writer::WriteBuffer::new(lake::writer::WriterConfig {
                writer_id: "import".into(),
                aleg_headers,
                ..Default::default()
            });
            for m in &msgs {
                buf.append(m);
                // Cut files as the server would, so memory stays at one file per table and hour.
                for f in buf.take_due(Instant::now(), false) {
                    f.write(&store).await?;
                }
            }
            for f in buf.take_due(Instant::now(), true) {
                f.write(&store).await?;
            }
        }
    }
    println!(
        "imported {} messages from {} (SIP {}, RTCP {} of which {} tied to a call); skipped {} frames and {} other payloads; {}",
        msgs.len(),
        args.file.display(),
        found.sip,
        found.rtcp,
        found.rtcp_correlated,
        capture.skipped,
        found.other,
        args.to.as_ref().map_or_else(
            || format!("into {}", args.lake.data),
            |t| format!("sent to {t}")
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(src: &str, dst: &str, payload: &[u8]) -> Captured {
        Captured {
            time_micros: 1,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            transport: Transport::Udp,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn sip_and_rtcp_are_told_apart_and_rtcp_finds_its_call() {
        let invite = b"INVITE sip:b@h SIP/2.0\r\nCall-ID: c1@h\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 16000 RTP/AVP 0\r\n";
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 9];
        let packets = [
            captured("10.0.0.1:5060", "10.0.0.2:5060", invite),
            captured("10.0.0.1:16001", "10.0.0.2:20001", &rr),
            captured("10.0.0.3:16001", "10.0.0.4:20001", &rr),
            captured(
                "10.0.0.1:16000",
                "10.0.0.2:20000",
                &[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
        ];
        let (msgs, found) = to_hep(&packets, &["X-CID".to_string()]);
        assert_eq!(
            found,
            Found {
                sip: 1,
                rtcp: 2,
                rtcp_correlated: 1,
                other: 1
            }
        );
        assert_eq!(msgs[1].correlation_id.as_deref(), Some("c1@h"));
        assert!(String::from_utf8_lossy(&msgs[1].payload).starts_with(r#"{"ssrc":9,"type":201"#));
        assert_eq!(msgs[2].correlation_id, None);
        assert!(!is_sip(b"HTTP/1.1 200 OK\r\n"));
        assert!(!is_sip(b"GET / HTTP/1.1\r\n"));
    }
}
