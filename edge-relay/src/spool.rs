//! Bounded on-disk spool for batches Kinesis would not take: written when
//! the stream is throttled or unreachable for longer than memory covers,
//! drained oldest first when it recovers, kept across restarts.
//!
//! One file per batch, `<seq>.spool`, written to a temporary name, fsynced,
//! renamed and the directory fsynced (a crash or power loss leaves whole files
//! only): repeated (u32 key length, key, u32 data length, data), big-endian.
//! Temporary files left by a crash are removed at open; a file that does not
//! decode is renamed `<seq>.corrupt`, counted, and never blocks the rest.
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::batcher::Record;

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    used: u64,
    next: u64,
    corrupt: u64,
}

/// Writes `bytes` to `path` so that after a crash it is either whole or absent.
fn write_durably(dir: &Path, tmp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = std::fs::File::create(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(tmp, path)?;
    // The rename is durable once the directory is.
    std::fs::File::open(dir)?.sync_all()
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
            corrupt: 0,
        };
        // A crash while writing leaves a temporary file: its batch was never counted spooled.
        for e in std::fs::read_dir(&s.dir)?.filter_map(|e| e.ok()) {
            if e.path().extension().is_some_and(|x| x == "tmp") {
                std::fs::remove_file(e.path())?;
            }
        }
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

    /// Files set aside because they did not decode.
    pub fn corrupt_files(&self) -> u64 {
        self.corrupt
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
        write_durably(&self.dir, &tmp, &path, &bytes)?;
        self.next += 1;
        self.used += bytes.len() as u64;
        Ok(true)
    }

    /// The oldest batch that decodes, without removing it; files that do not
    /// decode on the way are set aside as `.corrupt` and counted.
    pub fn oldest(&mut self) -> io::Result<Option<(PathBuf, Vec<Record>)>> {
        for (_, path) in self.files()? {
            let bytes = std::fs::read(&path)?;
            match decode(&bytes) {
                Ok(records) => return Ok(Some((path, records))),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "spool file does not decode; set aside");
                    std::fs::rename(&path, path.with_extension("corrupt"))?;
                    self.used = self.used.saturating_sub(bytes.len() as u64);
                    self.corrupt += 1;
                }
            }
        }
        Ok(None)
    }

    /// Replaces a spooled batch by what is left of it, in place: it keeps its
    /// turn, and needs no room beyond what the batch already holds.
    pub fn replace(&mut self, path: &Path, records: &[Record]) -> io::Result<()> {
        let old = std::fs::metadata(path)?.len();
        let bytes = encode(records);
        write_durably(&self.dir, &path.with_extension("tmp"), path, &bytes)?;
        self.used = self.used.saturating_sub(old) + bytes.len() as u64;
        Ok(())
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

    #[test]
    fn crash_leftovers_and_corrupt_files_block_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 10_000).unwrap();
        assert!(s.push(&[rec(1, 100)]).unwrap());
        assert!(s.push(&[rec(2, 100)]).unwrap());
        assert!(s.push(&[rec(3, 100)]).unwrap());
        // A power loss right after a rename of a half-written file, and a crash mid-write.
        let files = s.files().unwrap();
        std::fs::write(&files[1].1, b"\x00\x00\x00\xffcut").unwrap();
        std::fs::write(dir.path().join("00000000000000000009.tmp"), b"half").unwrap();
        let mut s = Spool::open(dir.path(), 10_000).unwrap();
        assert!(
            !dir.path().join("00000000000000000009.tmp").exists(),
            "tmp removed at open"
        );
        let (p, r) = s.oldest().unwrap().unwrap();
        assert_eq!(r, vec![rec(1, 100)]);
        s.remove(&p).unwrap();
        // The corrupt second file is set aside and counted; the third comes next.
        let (p, r) = s.oldest().unwrap().unwrap();
        assert_eq!(r, vec![rec(3, 100)]);
        assert_eq!(s.corrupt_files(), 1);
        assert!(files[1].1.with_extension("corrupt").exists());
        s.remove(&p).unwrap();
        assert!(s.is_empty());
        assert!(s.oldest().unwrap().is_none());
    }

    #[test]
    fn what_is_left_of_a_batch_keeps_its_turn_even_in_a_full_spool() {
        let dir = tempfile::tempdir().unwrap();
        let batch = [rec(1, 400), rec(2, 400)];
        let mut s = Spool::open(dir.path(), 1000).unwrap();
        assert!(s.push(&batch).unwrap());
        assert!(!s.push(&batch).unwrap(), "full");
        let (p, _) = s.oldest().unwrap().unwrap();
        // Half delivered: the rest replaces the file in place, no new room needed.
        s.replace(&p, &batch[1..]).unwrap();
        assert_eq!(s.used_bytes(), 8 + 2 + 400);
        let (p2, r) = s.oldest().unwrap().unwrap();
        assert_eq!((p2, r), (p, vec![rec(2, 400)]));
    }
}
