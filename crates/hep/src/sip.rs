//! Extracts the fields people look calls up by from a SIP message.
//!
//! Tolerant by design: captured traffic contains truncated datagrams, binary
//! junk and non-SIP payloads. Anything not recognised becomes `None`; nothing
//! here panics or allocates unless a value must be repaired (folded lines,
//! invalid UTF-8).
use std::borrow::Cow;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SipFields<'a> {
    /// Request method (INVITE, BYE, ...); None for responses.
    pub method: Option<Cow<'a, str>>,
    /// Response status code; None for requests.
    pub status: Option<u16>,
    pub call_id: Option<Cow<'a, str>>,
    pub cseq_num: Option<u32>,
    pub cseq_method: Option<Cow<'a, str>>,
    pub from_user: Option<Cow<'a, str>>,
    pub from_tag: Option<Cow<'a, str>>,
    pub to_user: Option<Cow<'a, str>>,
    pub to_tag: Option<Cow<'a, str>>,
    pub ruri_user: Option<Cow<'a, str>>,
    pub ruri_domain: Option<Cow<'a, str>>,
    pub user_agent: Option<Cow<'a, str>>,
    /// The `branch` of the top Via: one hop of one transaction.
    pub via_branch: Option<Cow<'a, str>>,
    /// The first Contact's URI.
    pub contact: Option<Cow<'a, str>>,
    pub content_type: Option<Cow<'a, str>>,
    /// The A leg's Call-ID, as a B2BUA copies it into the B leg: the value of
    /// the first of the configured headers (`X-CID` by default) present.
    pub aleg_id: Option<Cow<'a, str>>,
    /// Where the media goes, from an SDP body: the first media line's port
    /// and its connection address (the session's when it has none).
    pub sdp_media_ip: Option<Cow<'a, str>>,
    pub sdp_media_port: Option<u16>,
    /// The hosts of the From and To URIs.
    pub from_domain: Option<Cow<'a, str>>,
    pub to_domain: Option<Cow<'a, str>>,
    /// The first Reason header's value (RFC 3326), as a BYE, a CANCEL or a
    /// final response carries it: `Q.850;cause=16;text="Normal call clearing"`.
    pub reason: Option<Cow<'a, str>>,
}

/// The headers that carry the A leg's Call-ID, first preferred, as
/// heplify-server's `AlegIDs`.
pub const DEFAULT_ALEG_HEADERS: &[&str] = &["X-CID"];

fn lossy(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if first.is_ascii_whitespace() {
            b = rest
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if last.is_ascii_whitespace() {
            b = rest
        } else {
            break;
        }
    }
    b
}

/// Lines of the header section, CRLF or bare LF, ending at the blank line.
fn split_lines(msg: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(msg);
    std::iter::from_fn(move || {
        let cur = rest?;
        let (line, next) = match cur.iter().position(|&b| b == b'\n') {
            Some(i) => (&cur[..i], Some(&cur[i + 1..])),
            None => (cur, None),
        };
        rest = next;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            rest = None;
            None
        } else {
            Some(line)
        }
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Header {
    CallId,
    From,
    To,
    CSeq,
    UserAgent,
    Via,
    Contact,
    ContentType,
    Reason,
    /// The A-leg header at this index of the configured list.
    Aleg(usize),
}

fn classify(name: &[u8], aleg_headers: &[impl AsRef<str>]) -> Option<Header> {
    let eq = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    if let Some(i) = aleg_headers.iter().position(|h| eq(h.as_ref())) {
        Some(Header::Aleg(i))
    } else if eq("call-id") || eq("i") {
        Some(Header::CallId)
    } else if eq("from") || eq("f") {
        Some(Header::From)
    } else if eq("to") || eq("t") {
        Some(Header::To)
    } else if eq("cseq") {
        Some(Header::CSeq)
    } else if eq("user-agent") {
        Some(Header::UserAgent)
    } else if eq("via") || eq("v") {
        Some(Header::Via)
    } else if eq("contact") || eq("m") {
        Some(Header::Contact)
    } else if eq("content-type") || eq("c") {
        Some(Header::ContentType)
    } else if eq("reason") {
        Some(Header::Reason)
    } else {
        None
    }
}

/// Extracts SIP fields, the A leg's id from [`DEFAULT_ALEG_HEADERS`].
pub fn extract(payload: &[u8]) -> SipFields<'_> {
    extract_with(payload, DEFAULT_ALEG_HEADERS)
}

/// The longest a text field is kept, in bytes: longer values are cut at a
/// character boundary (the whole message stays in `payload`). Real values are
/// far shorter (Call-IDs under 100 bytes); this keeps what the calls API
/// matches and correlates on small whatever a sender puts in a header.
pub const MAX_FIELD_BYTES: usize = 256;

fn bounded(v: &mut Option<Cow<'_, str>>) {
    let Some(s) = v.as_mut() else { return };
    if s.len() <= MAX_FIELD_BYTES {
        return;
    }
    let mut end = MAX_FIELD_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    match s {
        Cow::Borrowed(b) => *b = &b[..end],
        Cow::Owned(o) => o.truncate(end),
    }
}

impl SipFields<'_> {
    /// Every text field cut to [`MAX_FIELD_BYTES`].
    fn bound(mut self) -> Self {
        for f in [
            &mut self.method,
            &mut self.call_id,
            &mut self.cseq_method,
            &mut self.from_user,
            &mut self.from_tag,
            &mut self.to_user,
            &mut self.to_tag,
            &mut self.ruri_user,
            &mut self.ruri_domain,
            &mut self.user_agent,
            &mut self.via_branch,
            &mut self.contact,
            &mut self.content_type,
            &mut self.aleg_id,
            &mut self.sdp_media_ip,
            &mut self.from_domain,
            &mut self.to_domain,
            &mut self.reason,
        ] {
            bounded(f);
        }
        self
    }
}

/// Extracts SIP fields, the A leg's id from the first of `aleg_headers`
/// present; every field is None when `payload` is not SIP; text fields are
/// at most [`MAX_FIELD_BYTES`] long.
pub fn extract_with<'a>(payload: &'a [u8], aleg_headers: &[impl AsRef<str>]) -> SipFields<'a> {
    extract_unbounded(payload, aleg_headers).bound()
}

fn extract_unbounded<'a>(payload: &'a [u8], aleg_headers: &[impl AsRef<str>]) -> SipFields<'a> {
    let mut out = SipFields::default();
    let mut seen = Seen {
        aleg_rank: usize::MAX,
        via: false,
        from: false,
        to: false,
    };
    let mut lines = split_lines(payload);
    let Some(first) = lines.next() else {
        return out;
    };
    if let Some(rest) = first.strip_prefix(b"SIP/2.0 ") {
        let code = rest.split(|&b| b == b' ').next().unwrap_or_default();
        match std::str::from_utf8(code)
            .ok()
            .and_then(|c| c.parse::<u16>().ok())
        {
            Some(c) if (100..700).contains(&c) => out.status = Some(c),
            _ => return out,
        }
    } else {
        let mut parts = first.split(|&b| b == b' ').filter(|p| !p.is_empty());
        let (Some(method), Some(uri), Some(version)) = (parts.next(), parts.next(), parts.next())
        else {
            return out;
        };
        if !version.starts_with(b"SIP/") || !method.iter().all(|b| b.is_ascii_alphabetic()) {
            return out;
        }
        out.method = Some(lossy(method));
        let (user, domain) = uri_user_domain(uri);
        out.ruri_user = user.map(lossy);
        out.ruri_domain = domain.map(lossy);
    }

    // Headers, with folded continuation lines joined by one space.
    let mut current: Option<(Option<Header>, Cow<'_, [u8]>)> = None;
    for line in lines {
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, value)) = current.as_mut() {
                let v = value.to_mut();
                if !v.is_empty() {
                    v.push(b' ');
                }
                v.extend_from_slice(trim(line));
            }
            continue;
        }
        if let Some((h, value)) = current.take() {
            apply(&mut out, &mut seen, h, value);
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        current = Some((
            classify(trim(&line[..colon]), aleg_headers),
            Cow::Borrowed(trim(&line[colon + 1..])),
        ));
    }
    if let Some((h, value)) = current {
        apply(&mut out, &mut seen, h, value);
    }
    let is_sdp = out.content_type.as_deref().is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
    });
    if is_sdp {
        let (ip, port) = sdp_media(body(payload));
        out.sdp_media_ip = ip.map(lossy);
        out.sdp_media_port = port;
    }
    out
}

/// What follows the blank line that ends the headers.
fn body(msg: &[u8]) -> &[u8] {
    let mut at = 0;
    while let Some(i) = msg[at..].iter().position(|&b| b == b'\n') {
        let next = at + i + 1;
        match msg.get(next..) {
            Some([b'\n', ..]) => return &msg[next + 1..],
            Some([b'\r', b'\n', ..]) => return &msg[next + 2..],
            _ => at = next,
        }
    }
    &[]
}

/// The first media line's port and its connection address: the `c=` inside
/// its section, else the session's (`c=` before any `m=`).
fn sdp_media(sdp: &[u8]) -> (Option<&[u8]>, Option<u16>) {
    let (mut session_ip, mut media_ip, mut port, mut in_media) = (None, None, None, false);
    for line in sdp.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(m) = line.strip_prefix(b"m=") {
            if in_media {
                break;
            }
            in_media = true;
            port = m
                .split(|&b| b == b' ')
                .nth(1)
                .and_then(|p| std::str::from_utf8(p).ok()?.split('/').next()?.parse().ok());
        } else if let Some(c) = line.strip_prefix(b"c=") {
            // c=IN IP4 192.0.2.1 (a multicast address may carry /ttl).
            let addr = c
                .split(|&b| b == b' ')
                .nth(2)
                .map(|a| a.split(|&b| b == b'/').next().unwrap_or(a))
                .filter(|a| !a.is_empty());
            if in_media {
                media_ip = media_ip.or(addr);
            } else {
                session_ip = session_ip.or(addr);
            }
        }
    }
    (media_ip.or(session_ip), port)
}

/// The URI of a name-addr (`"A" <sip:a@h>;expires=60`) or addr-spec value.
fn uri_of(v: &[u8]) -> &[u8] {
    match v.iter().position(|&b| b == b'<') {
        Some(lt) => {
            let rest = &v[lt + 1..];
            &rest[..rest.iter().position(|&b| b == b'>').unwrap_or(rest.len())]
        }
        None => {
            let first = v.split(|&b| b == b',').next().unwrap_or(v);
            trim(first.split(|&b| b == b';').next().unwrap_or(first))
        }
    }
}

/// The `branch` parameter of the first value of a Via header.
fn via_branch(v: &[u8]) -> Option<&[u8]> {
    let first = v.split(|&b| b == b',').next()?;
    first.split(|&b| b == b';').skip(1).map(trim).find_map(|p| {
        let eq = p.iter().position(|&b| b == b'=')?;
        trim(&p[..eq])
            .eq_ignore_ascii_case(b"branch")
            .then(|| trim(&p[eq + 1..]))
            .filter(|b| !b.is_empty())
    })
}

fn owned_or_borrowed<'a>(value: &Cow<'a, [u8]>, part: &[u8]) -> Cow<'a, str> {
    match value {
        Cow::Borrowed(b) => {
            // `part` is a subslice of `b`: re-slice to keep the 'a lifetime.
            let off = part.as_ptr() as usize - b.as_ptr() as usize;
            lossy(&b[off..off + part.len()])
        }
        Cow::Owned(_) => Cow::Owned(String::from_utf8_lossy(part).into_owned()),
    }
}

/// What the headers before this one settled.
struct Seen {
    /// Rank in the configured list of the A-leg header taken so far.
    aleg_rank: usize,
    /// The top Via was read (with or without a branch).
    via: bool,
    /// The From and To headers were read: a repeated one is ignored.
    from: bool,
    to: bool,
}

fn apply<'a>(out: &mut SipFields<'a>, seen: &mut Seen, h: Option<Header>, value: Cow<'a, [u8]>) {
    let Some(h) = h else { return };
    let v: &[u8] = &value;
    match h {
        // The earliest configured header wins, wherever it appears.
        Header::Aleg(rank) if rank < seen.aleg_rank && !v.is_empty() => {
            seen.aleg_rank = rank;
            out.aleg_id = Some(owned_or_borrowed(&value, v));
        }
        // The top Via: the first Via header's first value.
        Header::Via if !seen.via => {
            seen.via = true;
            out.via_branch = via_branch(v).map(|b| owned_or_borrowed(&value, b));
        }
        Header::Contact if out.contact.is_none() => {
            let uri = uri_of(v);
            out.contact = (!uri.is_empty()).then(|| owned_or_borrowed(&value, uri));
        }
        Header::ContentType if out.content_type.is_none() => {
            out.content_type = Some(owned_or_borrowed(&value, v))
        }
        // First occurrence wins, as a proxy would read it.
        Header::CallId if out.call_id.is_none() => out.call_id = Some(owned_or_borrowed(&value, v)),
        Header::UserAgent if out.user_agent.is_none() => {
            out.user_agent = Some(owned_or_borrowed(&value, v))
        }
        Header::CSeq if out.cseq_num.is_none() => {
            let mut parts = v
                .split(|b| b.is_ascii_whitespace())
                .filter(|p| !p.is_empty());
            out.cseq_num = parts
                .next()
                .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok());
            out.cseq_method = parts.next().map(|m| owned_or_borrowed(&value, m));
        }
        Header::From if !seen.from => {
            seen.from = true;
            let a = name_addr(v);
            out.from_user = a.user.map(|u| owned_or_borrowed(&value, u));
            out.from_domain = a.domain.map(|d| owned_or_borrowed(&value, d));
            out.from_tag = a.tag.map(|t| owned_or_borrowed(&value, t));
        }
        Header::To if !seen.to => {
            seen.to = true;
            let a = name_addr(v);
            out.to_user = a.user.map(|u| owned_or_borrowed(&value, u));
            out.to_domain = a.domain.map(|d| owned_or_borrowed(&value, d));
            out.to_tag = a.tag.map(|t| owned_or_borrowed(&value, t));
        }
        Header::Reason if out.reason.is_none() && !v.is_empty() => {
            out.reason = Some(owned_or_borrowed(&value, v))
        }
        _ => {}
    }
}

/// User and host of a SIP/SIPS/TEL URI (`sip:alice@example.com:5060;transport=udp`).
fn uri_user_domain(uri: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let colon = match uri.iter().position(|&b| b == b':') {
        Some(i) => i,
        None => return (None, None),
    };
    let scheme = &uri[..colon];
    let rest = &uri[colon + 1..];
    let end = rest
        .iter()
        .position(|&b| matches!(b, b';' | b'>' | b'?' | b' '))
        .unwrap_or(rest.len());
    let rest = &rest[..end];
    if scheme.eq_ignore_ascii_case(b"tel") {
        return (Some(rest).filter(|r| !r.is_empty()), None);
    }
    if !(scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips")) {
        return (None, None);
    }
    let (user, hostport) = match rest.iter().rposition(|&b| b == b'@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    // The user part may carry a password (user:pw@host): drop it.
    let user = user
        .map(|u| u.split(|&b| b == b':').next().unwrap_or(u))
        .filter(|u| !u.is_empty());
    let host = if hostport.first() == Some(&b'[') {
        hostport
            .iter()
            .position(|&b| b == b']')
            .map(|i| &hostport[..=i])
            .unwrap_or(hostport)
    } else {
        hostport.split(|&b| b == b':').next().unwrap_or(hostport)
    };
    (user, Some(host).filter(|h| !h.is_empty()))
}

/// What a From or To value names.
struct NameAddr<'a> {
    user: Option<&'a [u8]>,
    domain: Option<&'a [u8]>,
    tag: Option<&'a [u8]>,
}

/// User and host of the URI and the `tag` parameter of a From/To value, in either
/// name-addr (`"Bob" <sip:bob@x>;tag=1`) or addr-spec (`sip:bob@x;tag=1`) form.
fn name_addr(v: &[u8]) -> NameAddr<'_> {
    // Skip a quoted display name, which may itself contain '<' or ';'.
    let mut i = 0;
    if v.first() == Some(&b'"') {
        i = 1;
        while i < v.len() && v[i] != b'"' {
            i += if v[i] == b'\\' { 2 } else { 1 };
        }
        i = (i + 1).min(v.len());
    }
    let (uri, params) = match v[i..].iter().position(|&b| b == b'<') {
        Some(lt) => {
            let open = i + lt + 1;
            let close = v[open..]
                .iter()
                .position(|&b| b == b'>')
                .map_or(v.len(), |c| open + c);
            (&v[open..close], &v[(close + 1).min(v.len())..])
        }
        None => {
            // addr-spec: parameters after the URI belong to the header.
            let semi = v[i..]
                .iter()
                .position(|&b| b == b';')
                .map_or(v.len(), |s| i + s);
            (&v[i..semi], &v[semi..])
        }
    };
    let (user, domain) = uri_user_domain(trim(uri));
    let tag = params
        .split(|&b| b == b';')
        .map(trim)
        .find_map(|p| {
            let eq = p.iter().position(|&b| b == b'=')?;
            trim(&p[..eq])
                .eq_ignore_ascii_case(b"tag")
                .then(|| trim(&p[eq + 1..]))
        })
        .filter(|t| !t.is_empty());
    NameAddr { user, domain, tag }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_field_is_cut_to_the_bound_at_a_character_boundary() {
        let long = "é".repeat(40_000); // 80 000 bytes, two per character
        let msg = format!(
            "INVITE sip:{long}@{long} SIP/2.0\r\nCall-ID: {long}\r\nFrom: <sip:{long}@x>;tag={long}\r\n\
             To: <sip:{long}@x>\r\nX-CID: {long}\r\nUser-Agent: {long}\r\n\
             Via: SIP/2.0/UDP h;branch={long}\r\nContact: <sip:{long}@x>\r\n\
             Subject: x\r\n {long}\r\nCSeq: 1 INVITE\r\n\r\n"
        );
        let f = extract(msg.as_bytes());
        for v in [
            &f.call_id,
            &f.from_user,
            &f.from_tag,
            &f.to_user,
            &f.ruri_user,
            &f.ruri_domain,
            &f.user_agent,
            &f.via_branch,
            &f.contact,
            &f.aleg_id,
        ] {
            let v = v.as_deref().unwrap();
            assert_eq!(v.len(), MAX_FIELD_BYTES, "{}", &v[..10]);
            assert!(long.starts_with(v.trim_start_matches("sip:").trim_end_matches("@x")));
        }
        assert_eq!(f.method.as_deref(), Some("INVITE"));
        // A three-byte character across the bound is left out whole.
        let odd = format!("a{}", "€".repeat(100));
        let msg = format!("BYE sip:b@h SIP/2.0\r\nCall-ID: {odd}\r\n\r\n");
        let id = extract(msg.as_bytes()).call_id.unwrap();
        assert_eq!(id.len(), 1 + 3 * 85);
        assert!(odd.starts_with(&*id));
    }

    fn s<'a>(v: &'a Option<Cow<'a, str>>) -> Option<&'a str> {
        v.as_deref()
    }

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice <A>\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
User-Agent: Linphone/5.0\r\n\
Content-Length: 0\r\n\r\nv=0\r\nCall-ID: body-not-header\r\n";

    const B_LEG_INVITE: &str = "INVITE sip:+15551234@10.0.0.2 SIP/2.0\r\n\
v: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bK-b1, SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK-old\r\n\
Via: SIP/2.0/UDP 10.8.8.8;branch=z9hG4bK-third\r\n\
From: <sip:alice@a.example>;tag=f1\r\n\
To: <sip:+15551234@b.example>\r\n\
Call-ID: b-leg-1@sbc\r\n\
CSeq: 1 INVITE\r\n\
X-Other: other-1\r\n\
x-cid: a-leg-1@pbx\r\n\
Contact: \"Alice\" <sip:alice@10.0.0.1:5060;transport=udp>;expires=60\r\n\
Content-Type: application/sdp; charset=utf-8\r\n\
\r\n\
v=0\r\n\
o=- 1 1 IN IP4 10.0.0.1\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8\r\n\
c=IN IP4 192.0.2.20/127\r\n\
m=video 40002 RTP/AVP 96\r\n\
c=IN IP4 192.0.2.30\r\n";

    #[test]
    fn correlation_and_flow_fields() {
        let f = extract(B_LEG_INVITE.as_bytes());
        assert_eq!(s(&f.aleg_id), Some("a-leg-1@pbx"), "X-CID, any case");
        assert_eq!(s(&f.via_branch), Some("z9hG4bK-b1"), "the top Via's branch");
        assert_eq!(s(&f.contact), Some("sip:alice@10.0.0.1:5060;transport=udp"));
        assert_eq!(s(&f.content_type), Some("application/sdp; charset=utf-8"));
        assert_eq!(s(&f.sdp_media_ip), Some("192.0.2.20"), "the media's own c=");
        assert_eq!(f.sdp_media_port, Some(40000), "the first m= line");
        // The first configured header present wins, in the list's order.
        let f = extract_with(B_LEG_INVITE.as_bytes(), &["X-Other", "X-CID"]);
        assert_eq!(s(&f.aleg_id), Some("other-1"));
        let f = extract_with(B_LEG_INVITE.as_bytes(), &["X-Missing", "X-CID"]);
        assert_eq!(s(&f.aleg_id), Some("a-leg-1@pbx"));
        let none: &[&str] = &[];
        assert_eq!(extract_with(B_LEG_INVITE.as_bytes(), none).aleg_id, None);
    }

    #[test]
    fn domains_of_from_and_to_and_the_reason_a_call_ended() {
        let f = extract(B_LEG_INVITE.as_bytes());
        assert_eq!(
            (s(&f.from_domain), s(&f.to_domain)),
            (Some("a.example"), Some("b.example"))
        );
        assert_eq!(f.reason, None);
        let bye = "BYE sip:alice@10.0.0.1 SIP/2.0\r\n\
From: \"Bob\" <sips:bob@[2001:db8::2]:5061>;tag=b\r\n\
t: tel:+15551234;tag=a\r\n\
From: <sip:second@ignored.example>\r\n\
REASON: Q.850;cause=16;text=\"Normal call clearing\"\r\n\
Reason: SIP;cause=200\r\n\r\n";
        let f = extract(bye.as_bytes());
        assert_eq!(s(&f.from_domain), Some("[2001:db8::2]"));
        assert_eq!(s(&f.from_user), Some("bob"), "the first From wins");
        assert_eq!((s(&f.to_user), s(&f.to_domain)), (Some("+15551234"), None));
        assert_eq!(
            s(&f.reason),
            Some("Q.850;cause=16;text=\"Normal call clearing\""),
            "the first Reason, any case"
        );
    }

    #[test]
    fn session_connection_address_bare_lf_and_no_sdp() {
        let msg = "SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;rport\nVia: SIP/2.0/UDP g;branch=z9hG4bK-2\nm: sip:bob@10.0.0.2\nc: application/sdp\n\nv=0\nc=IN IP6 2001:db8::1\nm=audio 5004/2 RTP/AVP 0\n";
        let f = extract(msg.as_bytes());
        assert_eq!(f.via_branch, None, "the top Via has no branch");
        assert_eq!(s(&f.contact), Some("sip:bob@10.0.0.2"));
        assert_eq!(s(&f.sdp_media_ip), Some("2001:db8::1"));
        assert_eq!(f.sdp_media_port, Some(5004));
        // A body that is not SDP is not read as SDP.
        let f = extract(
            b"MESSAGE sip:a@b SIP/2.0\r\nContent-Type: text/plain\r\n\r\nm=audio 1 RTP/AVP 0\r\n",
        );
        assert_eq!((f.sdp_media_ip, f.sdp_media_port), (None, None));
        assert_eq!(extract(INVITE.as_bytes()).sdp_media_port, None);
    }

    #[test]
    fn request_fields() {
        let f = extract(INVITE.as_bytes());
        assert_eq!(s(&f.method), Some("INVITE"));
        assert_eq!(f.status, None);
        assert_eq!(s(&f.ruri_user), Some("bob"));
        assert_eq!(s(&f.ruri_domain), Some("biloxi.example.com"));
        assert_eq!(
            s(&f.call_id),
            Some("a84b4c76e66710@pc33.atlanta.example.com")
        );
        assert_eq!(f.cseq_num, Some(314159));
        assert_eq!(s(&f.cseq_method), Some("INVITE"));
        assert_eq!(s(&f.from_user), Some("alice"));
        assert_eq!(s(&f.from_tag), Some("1928301774"));
        assert_eq!(s(&f.to_user), Some("bob"));
        assert_eq!(s(&f.to_tag), None);
        assert_eq!(s(&f.user_agent), Some("Linphone/5.0"));
    }

    #[test]
    fn response_compact_forms_any_case_bare_lf() {
        let msg = "SIP/2.0 180 Ringing\n\
i: abc@host\n\
f: sip:alice@a.com;tag=ft\n\
T: <sip:+15551234@b.com:5061>;TAG=tt\n\
cseq: 2 INVITE\n\n";
        let f = extract(msg.as_bytes());
        assert_eq!(f.method, None);
        assert_eq!(f.status, Some(180));
        assert_eq!(s(&f.call_id), Some("abc@host"));
        assert_eq!(s(&f.from_user), Some("alice"));
        assert_eq!(s(&f.from_tag), Some("ft"));
        assert_eq!(s(&f.to_user), Some("+15551234"));
        assert_eq!(s(&f.to_tag), Some("tt"));
        assert_eq!(f.cseq_num, Some(2));
        assert_eq!(s(&f.cseq_method), Some("INVITE"));
    }

    #[test]
    fn folded_header_lines_are_joined() {
        let msg = b"BYE sip:x@y SIP/2.0\r\nUser-Agent: Foo\r\n  Bar/1.0\r\nCall-ID:\r\n\tfolded@id\r\n\r\n";
        let f = extract(msg);
        assert_eq!(s(&f.user_agent), Some("Foo Bar/1.0"));
        assert_eq!(s(&f.call_id), Some("folded@id"));
    }

    #[test]
    fn non_utf8_bytes_are_replaced_not_fatal() {
        let msg =
            b"OPTIONS sip:u@h SIP/2.0\r\nCall-ID: ab\xff\xfecd\r\nUser-Agent: \xc3\x28\r\n\r\n";
        let f = extract(msg);
        assert_eq!(s(&f.method), Some("OPTIONS"));
        assert_eq!(s(&f.call_id), Some("ab\u{fffd}\u{fffd}cd"));
        assert!(f.user_agent.is_some());
    }

    #[test]
    fn tel_and_ipv6_uris() {
        let f = extract(
            b"INVITE tel:+4930123 SIP/2.0\r\nFrom: <sips:carol@[2001:db8::1]:5061>;tag=x\r\n\r\n",
        );
        assert_eq!(s(&f.ruri_user), Some("+4930123"));
        assert_eq!(f.ruri_domain, None);
        assert_eq!(s(&f.from_user), Some("carol"));
        let f = extract(b"INVITE sip:[2001:db8::2]:5060 SIP/2.0\r\n\r\n");
        assert_eq!(f.ruri_user, None);
        assert_eq!(s(&f.ruri_domain), Some("[2001:db8::2]"));
    }

    #[test]
    fn not_sip_gives_nulls() {
        for junk in [
            &b""[..],
            b"\x80\x00\x12\x34binary rtcp",
            b"hello world",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"SIP/2.0 abc x\r\n",
        ] {
            assert_eq!(extract(junk), SipFields::default(), "{junk:?}");
        }
    }
}
