//! Bounded on-disk spool for batches Kinesis would not take: written when
//! the stream is throttled or unreachable for longer than memory covers,
//! drained oldest first when it recovers, kept across restarts.
//!
//! One file per batch, `<seq>.spool`, written to a temporary name and renamed
//! (a crash leaves whole files only): repeated (u32 key length, key, u32 data
//! length, data), big-endian.
use std::io;
use std::path::{Path, PathBuf};

use crate::batcher::Record;

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    used: u64,
    next: u64,
}

fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.size() + 8).sum());
    for r in records {
        out.extend_from_slice(&(r.partition_key.len() as u32).to_be_bytes());
        out.extend_from_slice(r.partition_key.as_bytes());
        out.extend_from_slice(&(r.data.len() as u32).to_be_bytes());
        out.extend_from_slice(&r.data);
    }
    out
}

fn decode(mut b: &[u8]) -> io::Result<Vec<Record>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "corrupt spool file");
    let take = |b: &mut &[u8]| -> io::Result<Vec<u8>> {
        let n =
            u32::from_be_bytes(b.get(..4).ok_or_else(bad)?.try_into().expect("4 bytes")) as usize;
        let v = b.get(4..4 + n).ok_or_else(bad)?.to_vec();
        *b = &b[4 + n..];
        Ok(v)
    };
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = String::from_utf8(take(&mut b)?).map_err(|_| bad())?;
        let data = take(&mut b)?;
        out.push(Record {
            partition_key: key,
            data,
        });
    }
    Ok(out)
}

impl Spool {
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let mut s = Self {
            dir,
            max_bytes,
            used: 0,
            next: 0,
        };
        for (seq, path) in s.files()? {
            s.used += std::fs::metadata(&path)?.len();
            s.next = s.next.max(seq + 1);
        }
        Ok(s)
    }

    pub fn used_bytes(&self) -> u64 {
        self.used
    }

    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    fn files(&self) -> io::Result<Vec<(u64, PathBuf)>> {
        let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                let seq = p
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".spool")?
                    .parse()
                    .ok()?;
                Some((seq, p))
            })
            .collect();
        v.sort();
        Ok(v)
    }

    /// Stores a batch; Ok(false) when the spool is full (the batch is lost, the caller counts it).
    pub fn push(&mut self, records: &[Record]) -> io::Result<bool> {
        let bytes = encode(records);
        if self.used + bytes.len() as u64 > self.max_bytes {
            return Ok(false);
        }
        let path = self.dir.join(format!("{:020}.spool", self.next));
        let tmp = self.dir.join(format!("{:020}.tmp", self.next));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path)?;
        self.next += 1;
        self.used += bytes.len() as u64;
        Ok(true)
    }

    /// The oldest batch, without removing it.
    pub fn oldest(&self) -> io::Result<Option<(PathBuf, Vec<Record>)>> {
        let Some((_, path)) = self.files()?.into_iter().next() else {
            return Ok(None);
        };
        let records = decode(&std::fs::read(&path)?)?;
        Ok(Some((path, records)))
    }

    pub fn remove(&mut self, path: &Path) -> io::Result<()> {
        let len = std::fs::metadata(path)?.len();
        std::fs::remove_file(path)?;
        self.used = self.used.saturating_sub(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u8, n: usize) -> Record {
        Record {
            partition_key: format!("k{i}"),
            data: vec![i; n],
        }
    }

    #[test]
    fn fifo_bounded_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1000).unwrap();
        assert!(s.push(&[rec(1, 100), rec(2, 100)]).unwrap());
        assert!(s.push(&[rec(3, 300)]).unwrap());
        assert!(!s.push(&[rec(4, 600)]).unwrap(), "over the bound");
        let s = Spool::open(dir.path(), 1000).unwrap();
        assert_eq!(s.used_bytes(), 2 * (8 + 2 + 100) + (8 + 2 + 300));
        let mut s = s;
        let (p, r) = s.oldest().unwrap().unwrap();
        assert_eq!(r, vec![rec(1, 100), rec(2, 100)]);
        s.remove(&p).unwrap();
        let (p, r) = s.oldest().unwrap().unwrap();
        assert_eq!(r, vec![rec(3, 300)]);
        s.remove(&p).unwrap();
        assert!(s.oldest().unwrap().is_none());
        assert!(s.is_empty());
    }
}
