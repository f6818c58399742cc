//! Cuts a TCP byte stream into HEPv3 messages.
//!
//! TCP delivers bytes, not messages: one read may hold half a message or
//! several. HEPv3 frames itself (magic + 16-bit total length). When the stream
//! holds something else the framer skips to the next magic ("HEP3"/"EEP1")
//! and counts the bytes it skipped, so one bad sender cannot wedge the
//! connection; the caller decides when too much garbage means closing it.

use crate::v3::{declared_len, is_magic};

/// Smallest sensible HEPv3 message: 6-byte header plus one 6-byte chunk.
const MIN_FRAME: usize = 12;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FramerStats {
    /// Complete frames handed out.
    pub frames: u64,
    /// Bytes discarded while resynchronising.
    pub garbage_bytes: u64,
    /// Times the framer had to search for the next magic.
    pub resyncs: u64,
    /// Garbage bytes since the last good frame (resets on each frame).
    pub garbage_since_frame: u64,
}

#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    start: usize,
    stats: FramerStats,
}

impl StreamFramer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> FramerStats {
        self.stats
    }

    /// Bytes held that have not yet formed a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    fn discard(&mut self, n: usize) {
        self.start += n;
        self.stats.garbage_bytes += n as u64;
        self.stats.garbage_since_frame += n as u64;
    }

    /// Returns the next complete frame, or None until more bytes arrive.
    pub fn next_frame(&mut self) -> Option<&[u8]> {
        loop {
            let pending = &self.buf[self.start..];
            if pending.len() < 4 {
                // Could be the start of a magic split across reads: wait.
                if !is_magic_prefix(pending) {
                    self.stats.resyncs += 1;
                    self.discard(pending.len());
                }
                return None;
            }
            if !is_magic(&pending[..4]) {
                self.stats.resyncs += 1;
                let skip = find_magic(pending).unwrap_or_else(|| {
                    // Keep a tail that may be the first bytes of a magic.
                    let keep = (1..4)
                        .rev()
                        .find(|&k| is_magic_prefix(&pending[pending.len() - k..]))
                        .unwrap_or(0);
                    pending.len() - keep
                });
                self.discard(skip);
                continue;
            }
            let len = declared_len(pending)?;
            if len < MIN_FRAME {
                // A magic with an impossible length: skip it and search on.
                self.stats.resyncs += 1;
                self.discard(4);
                continue;
            }
            if pending.len() < len {
                return None;
            }
            let from = self.start;
            self.start += len;
            self.stats.frames += 1;
            self.stats.garbage_since_frame = 0;
            return Some(&self.buf[from..from + len]);
        }
    }
}

fn is_magic_prefix(b: &[u8]) -> bool {
    b"HEP3".starts_with(b) || b"EEP1".starts_with(b)
}

fn find_magic(b: &[u8]) -> Option<usize> {
    b.windows(4).position(is_magic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HepMessage, decode, encode_v3};

    fn frame(payload: &str) -> Vec<u8> {
        let m = HepMessage {
            ip_family: 2,
            protocol: 17,
            proto_type: 1,
            payload: payload.into(),
            ..Default::default()
        };
        encode_v3(&m).unwrap()
    }

    fn drain(f: &mut StreamFramer) -> Vec<Vec<u8>> {
        let mut out = vec![];
        while let Some(fr) = f.next_frame() {
            out.push(decode(fr).unwrap().payload);
        }
        out
    }

    #[test]
    fn several_messages_in_one_read() {
        let mut f = StreamFramer::new();
        let mut all = frame("a");
        all.extend(frame("bb"));
        all.extend(frame("ccc"));
        f.push(&all);
        assert_eq!(
            drain(&mut f),
            vec![b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]
        );
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn message_split_across_every_byte_boundary() {
        let one = frame("INVITE sip:x SIP/2.0");
        for cut in 1..one.len() {
            let mut f = StreamFramer::new();
            f.push(&one[..cut]);
            assert!(f.next_frame().is_none(), "cut {cut}");
            f.push(&one[cut..]);
            assert_eq!(drain(&mut f).len(), 1, "cut {cut}");
            assert_eq!(f.stats().garbage_bytes, 0);
        }
    }

    #[test]
    fn byte_at_a_time() {
        let mut all = frame("x1");
        all.extend(frame("x2"));
        let mut f = StreamFramer::new();
        let mut got = vec![];
        for b in &all {
            f.push(std::slice::from_ref(b));
            got.extend(drain(&mut f));
        }
        assert_eq!(got, vec![b"x1".to_vec(), b"x2".to_vec()]);
    }

    #[test]
    fn garbage_between_messages_is_skipped_and_counted() {
        let mut all = b"garbage!".to_vec();
        all.extend(frame("one"));
        all.extend(b"HEP3\x00\x02junk"); // magic with impossible length
        all.extend(frame("two"));
        let mut f = StreamFramer::new();
        f.push(&all);
        assert_eq!(drain(&mut f), vec![b"one".to_vec(), b"two".to_vec()]);
        let s = f.stats();
        assert_eq!(s.frames, 2);
        assert_eq!(s.garbage_bytes, 8 + 10);
        assert!(s.resyncs >= 2);
    }

    #[test]
    fn pure_garbage_never_grows_the_buffer() {
        let mut f = StreamFramer::new();
        for _ in 0..1000 {
            f.push(&[0xAB; 1000]);
            assert!(f.next_frame().is_none());
            assert!(f.buffered() < 4);
        }
        assert_eq!(f.stats().garbage_since_frame, 1_000_000);
    }
}
