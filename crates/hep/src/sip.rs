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
}

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
}

fn classify(name: &[u8]) -> Option<Header> {
    let eq = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    if eq("call-id") || eq("i") {
        Some(Header::CallId)
    } else if eq("from") || eq("f") {
        Some(Header::From)
    } else if eq("to") || eq("t") {
        Some(Header::To)
    } else if eq("cseq") {
        Some(Header::CSeq)
    } else if eq("user-agent") {
        Some(Header::UserAgent)
    } else {
        None
    }
}

/// Extracts SIP fields; every field is None when `payload` is not SIP.
pub fn extract(payload: &[u8]) -> SipFields<'_> {
    let mut out = SipFields::default();
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
            apply(&mut out, h, value);
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        current = Some((
            classify(trim(&line[..colon])),
            Cow::Borrowed(trim(&line[colon + 1..])),
        ));
    }
    if let Some((h, value)) = current {
        apply(&mut out, h, value);
    }
    out
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

fn apply<'a>(out: &mut SipFields<'a>, h: Option<Header>, value: Cow<'a, [u8]>) {
    let Some(h) = h else { return };
    let v: &[u8] = &value;
    match h {
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
        Header::From if out.from_user.is_none() && out.from_tag.is_none() => {
            let (user, tag) = name_addr_user_tag(v);
            out.from_user = user.map(|u| owned_or_borrowed(&value, u));
            out.from_tag = tag.map(|t| owned_or_borrowed(&value, t));
        }
        Header::To if out.to_user.is_none() && out.to_tag.is_none() => {
            let (user, tag) = name_addr_user_tag(v);
            out.to_user = user.map(|u| owned_or_borrowed(&value, u));
            out.to_tag = tag.map(|t| owned_or_borrowed(&value, t));
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

/// User of the URI and the `tag` parameter of a From/To value, in either
/// name-addr (`"Bob" <sip:bob@x>;tag=1`) or addr-spec (`sip:bob@x;tag=1`) form.
fn name_addr_user_tag(v: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
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
    let (user, _) = uri_user_domain(trim(uri));
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
    (user, tag)
}

#[cfg(test)]
mod tests {
    use super::*;

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
