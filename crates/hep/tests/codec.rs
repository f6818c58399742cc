use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hep::{DecodeError, HepMessage, StreamFramer, decode, encode_legacy, encode_v3};
use proptest::prelude::*;

fn sample() -> HepMessage {
    HepMessage {
        version: 3,
        ip_family: 2,
        protocol: 17,
        src_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1))),
        dst_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2))),
        src_port: 5060,
        dst_port: 5060,
        time_sec: 1_737_917_047,
        time_usec: 120_000,
        proto_type: 1,
        capture_id: 2001,
        capture_pass: Some("myHep".into()),
        payload: b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n\r\n".to_vec(),
        correlation_id: Some("067d3@127.0.0.1".into()),
        vlan: Some(42),
        node_name: Some("edge-1".into()),
        keep_alive: None,
        original_time_micros: None,
    }
}

/// Builds a raw chunk for hand-made malformed messages.
fn chunk(vendor: u16, kind: u16, value: &[u8]) -> Vec<u8> {
    let mut c = vendor.to_be_bytes().to_vec();
    c.extend(kind.to_be_bytes());
    c.extend(((value.len() + 6) as u16).to_be_bytes());
    c.extend(value);
    c
}

fn hep3(chunks: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = chunks.concat();
    let mut m = b"HEP3".to_vec();
    m.extend(((body.len() + 6) as u16).to_be_bytes());
    m.extend(body);
    m
}

#[test]
fn v3_roundtrip_every_standard_chunk() {
    let m = sample();
    assert_eq!(decode(&encode_v3(&m).unwrap()).unwrap(), m);
}

#[test]
fn v3_ipv6() {
    let mut m = sample();
    m.ip_family = 10;
    m.src_ip = Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)));
    m.dst_ip = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert_eq!(decode(&encode_v3(&m).unwrap()).unwrap(), m);
}

#[test]
fn unknown_and_vendor_chunks_are_skipped() {
    let m = hep3(&[
        chunk(0, 1, &[2]),
        chunk(0x0b, 1, b"vendor-private"), // vendor chunk reusing a standard type id
        chunk(0, 0x20, &[1, 2, 3]),        // a standard id we do not store
        chunk(0, 0xffff, b""),
        chunk(0, 11, &[5]),
        chunk(0, 15, b"rtcp"),
    ]);
    let d = decode(&m).unwrap();
    assert_eq!(d.ip_family, 2);
    assert_eq!(d.proto_type, 5);
    assert_eq!(d.payload, b"rtcp");
}

#[test]
fn nul_padded_strings_are_trimmed() {
    let m = hep3(&[chunk(0, 14, b"secret\0\0"), chunk(0, 15, b"x")]);
    assert_eq!(decode(&m).unwrap().capture_pass.as_deref(), Some("secret"));
}

#[test]
fn eep1_magic_is_accepted() {
    let mut m = encode_v3(&sample()).unwrap();
    m[..4].copy_from_slice(b"EEP1");
    assert_eq!(decode(&m).unwrap(), sample());
}

#[test]
fn malformed_inputs_give_typed_errors() {
    let good = encode_v3(&sample()).unwrap();
    // truncated
    assert!(matches!(
        decode(&good[..3]),
        Err(DecodeError::Truncated { .. })
    ));
    assert!(matches!(
        decode(&good[..good.len() - 1]),
        Err(DecodeError::LengthMismatch { .. })
    ));
    // length mismatch: header says more than we have, and less
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        decode(&longer),
        Err(DecodeError::LengthMismatch { .. })
    ));
    // chunk length < 6
    let mut short = hep3(&[chunk(0, 15, b"x")]);
    short[6 + 5] = 3;
    assert!(matches!(
        decode(&short),
        Err(DecodeError::ChunkTooShort { len: 3, .. })
    ));
    // chunk running past the end
    let mut over = hep3(&[chunk(0, 15, b"x")]);
    over[6 + 5] = 200;
    assert!(matches!(
        decode(&over),
        Err(DecodeError::ChunkOverrun { .. })
    ));
    // truncated chunk header
    let mut stub = hep3(&[chunk(0, 15, b"x")]);
    stub.extend([0, 0, 0]);
    let n = stub.len() as u16;
    stub[4..6].copy_from_slice(&n.to_be_bytes());
    assert!(matches!(decode(&stub), Err(DecodeError::Truncated { .. })));
    // wrong size for fixed-size chunks
    for (kind, len) in [
        (1u16, 2usize),
        (3, 5),
        (5, 4),
        (7, 1),
        (9, 8),
        (12, 2),
        (18, 3),
    ] {
        let m = hep3(&[chunk(0, kind, &vec![0; len]), chunk(0, 15, b"x")]);
        assert!(
            matches!(decode(&m), Err(DecodeError::BadChunkSize { kind: k, .. }) if k == kind),
            "kind {kind}"
        );
    }
    // over 64 KiB
    assert!(matches!(
        decode(&vec![b'H'; 70_000]),
        Err(DecodeError::TooLarge(70_000))
    ));
    // no payload, compressed payload, unknown version, empty
    assert_eq!(
        decode(&hep3(&[chunk(0, 1, &[2])])),
        Err(DecodeError::MissingPayload)
    );
    assert_eq!(
        decode(&hep3(&[chunk(0, 16, b"zz")])),
        Err(DecodeError::CompressedPayloadUnsupported)
    );
    assert_eq!(decode(b"\x07abc"), Err(DecodeError::UnknownVersion(7)));
    assert!(decode(b"").is_err());
    assert_eq!(decode(b"HEPX\x00\x0c123456"), Err(DecodeError::BadMagic));
}

#[test]
fn encode_refuses_oversized_payload() {
    let mut m = sample();
    m.payload = vec![b'a'; 65_500];
    assert!(matches!(encode_v3(&m), Err(DecodeError::TooLarge(_))));
}

#[test]
fn v1_and_v2_decode() {
    let mut m = sample();
    m.capture_pass = None;
    m.correlation_id = None;
    m.vlan = None;
    m.node_name = None;
    m.capture_id = 2001;
    let v2 = decode(&encode_legacy(&m, 2)).unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        (v2.src_ip, v2.dst_ip, v2.src_port, v2.dst_port),
        (m.src_ip, m.dst_ip, 5060, 5060)
    );
    assert_eq!(
        (v2.time_sec, v2.time_usec, v2.capture_id, v2.proto_type),
        (m.time_sec, m.time_usec, 2001, 1)
    );
    assert_eq!(v2.payload, m.payload);
    let mut v1 = decode(&encode_legacy(&m, 1)).unwrap();
    assert_eq!((v1.version, v1.time_sec, v1.protocol), (1, 0, 17));
    v1.stamp_if_untimed(1_737_917_047_120_000);
    assert_eq!((v1.time_sec, v1.time_usec), (1_737_917_047, 120_000));
    let mut timed = v2.clone();
    timed.stamp_if_untimed(42);
    assert_eq!(
        timed.time_micros(),
        v2.time_micros(),
        "a timed message keeps its time"
    );
    assert_eq!(v1.payload, m.payload);
    // IPv6 v2
    m.src_ip = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
    m.dst_ip = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let v6 = decode(&encode_legacy(&m, 2)).unwrap();
    assert_eq!((v6.ip_family, v6.src_ip), (10, m.src_ip));
    // malformed legacy
    assert!(matches!(
        decode(&[2, 28, 2, 17, 0, 1]),
        Err(DecodeError::Truncated { .. })
    ));
    assert_eq!(
        decode(&[2, 28, 9, 17, 0, 1, 0, 2]),
        Err(DecodeError::BadFamily(9))
    );
    assert!(matches!(
        decode(&[2, 16, 2, 17, 0, 1, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        Err(DecodeError::Truncated { needed: 28, .. })
    ));
    // sngrep's HEPv2 as captured from `sngrep -H` with eep.send.version 2: hp_l is 0.
    let sngrep = hex("0200021113c413c40a0000010a00000200f1536520a107004d00f9a4494e56495445");
    let d = decode(&sngrep).unwrap();
    assert_eq!(
        (d.time_sec, d.time_usec, d.capture_id),
        (1_700_000_000, 500_000, 77)
    );
    assert_eq!(d.src_ip, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    assert_eq!(d.payload, b"INVITE");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn arb_ip() -> impl Strategy<Value = Option<IpAddr>> {
    prop_oneof![
        Just(None),
        any::<[u8; 4]>().prop_map(|a| Some(IpAddr::V4(a.into()))),
        any::<[u8; 16]>().prop_map(|a| Some(IpAddr::V6(a.into()))),
    ]
}

prop_compose! {
    fn arb_msg()(ip_family in prop_oneof![Just(2u8), Just(10u8)], protocol: u8, src_ip in arb_ip(), dst_ip in arb_ip(),
        src_port: u16, dst_port: u16, time_sec: u32, time_usec: u32, proto_type: u8, capture_id: u32,
        capture_pass in proptest::option::of("[a-zA-Z0-9]{1,16}"), payload in proptest::collection::vec(any::<u8>(), 0..2000),
        correlation_id in proptest::option::of("[ -~]{1,40}"), vlan in proptest::option::of(any::<u16>()),
        node_name in proptest::option::of("[a-z0-9-]{1,20}"), keep_alive in proptest::option::of(any::<u16>()))
        -> HepMessage {
        HepMessage { version: 3, ip_family, protocol, src_ip, dst_ip, src_port, dst_port, time_sec, time_usec,
            proto_type, capture_id, capture_pass, payload, correlation_id, vlan, node_name, keep_alive, original_time_micros: None }
    }
}

proptest! {
    #[test]
    fn prop_v3_roundtrip(m in arb_msg()) {
        prop_assert_eq!(decode(&encode_v3(&m).unwrap()).unwrap(), m);
    }

    #[test]
    fn prop_replacing_the_auth_key_changes_only_it(m in arb_msg(), name in "[a-z0-9-]{1,24}") {
        let raw = encode_v3(&m).unwrap();
        match hep::replace_auth_key(&raw, &name) {
            Some(out) => {
                prop_assert!(m.capture_pass.is_some());
                let mut want = m.clone();
                want.capture_pass = Some(name.clone());
                prop_assert_eq!(decode(&out).unwrap(), want);
            }
            None => prop_assert!(m.capture_pass.is_none()),
        }
        // Not HEPv3 or cut short: refused, never a panic.
        prop_assert!(hep::replace_auth_key(&raw[..raw.len() - 1], &name).is_none());
    }

    #[test]
    fn prop_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode(&bytes);
        let _ = hep::sip::extract(&bytes);
    }

    #[test]
    fn prop_mutated_messages_never_panic(m in arb_msg(), idx: usize, byte: u8) {
        let mut b = encode_v3(&m).unwrap();
        let i = idx % b.len();
        b[i] = byte;
        let _ = decode(&b);
    }

    #[test]
    fn prop_stream_roundtrip_any_split(msgs in proptest::collection::vec(arb_msg(), 1..8), cuts in proptest::collection::vec(1usize..300, 1..20)) {
        let stream: Vec<u8> = msgs.iter().flat_map(|m| encode_v3(m).unwrap()).collect();
        let mut f = StreamFramer::new();
        let mut got = vec![];
        let mut pos = 0;
        let mut ci = 0;
        while pos < stream.len() {
            let n = cuts[ci % cuts.len()].min(stream.len() - pos);
            ci += 1;
            f.push(&stream[pos..pos + n]);
            pos += n;
            while let Some(fr) = f.next_frame() {
                got.push(decode(fr).unwrap());
            }
        }
        prop_assert_eq!(got, msgs);
        prop_assert_eq!(f.stats().garbage_bytes, 0);
    }
}
