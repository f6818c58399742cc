//! `hepop send`: realistic HEP traffic (or a file of HEP packets) at a chosen rate.
use std::io::{BufWriter, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hep::sample::Call;
use hep::{HepMessage, StreamFramer};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// SIP call flows only (hep_1).
    Sip,
    /// SIP flows, RTCP reports (hep_5) and log lines (hep_100).
    All,
}

#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// Where to send: host:port of a HEP server.
    #[arg(long, default_value = "127.0.0.1:9060")]
    pub to: String,
    #[arg(long, value_enum, default_value = "udp")]
    pub transport: Transport,
    /// Messages per second (0: as fast as possible).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Messages to send (default: the whole --file; 10000 generated, or unbounded with --duration).
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    #[arg(long, value_enum, default_value = "all")]
    pub traffic: Traffic,
    /// Replay the HEP packets in this file (concatenated HEPv3, as --save writes) instead of generating; pcap/pcapng are refused with the `hepop import` command that stores them.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Write the generated packets to this file instead of sending them.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// No progress line.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Generated traffic: calls in sequence, each call's messages stamped just now.
struct Generator {
    run: u64,
    call: u64,
    traffic: Traffic,
    queue: std::vec::IntoIter<HepMessage>,
}

impl Iterator for Generator {
    type Item = HepMessage;
    fn next(&mut self) -> Option<HepMessage> {
        loop {
            if let Some(m) = self.queue.next() {
                return Some(m);
            }
            let c = Call::new(self.run, self.call);
            self.call += 1;
            // The flow spans ~9 s: start it in the past so nothing is in the future.
            let start = chrono::Utc::now().timestamp_micros() - 9_100_000;
            let msgs = match self.traffic {
                Traffic::Sip => c.sip_flow(start),
                Traffic::All => c.all(start),
            };
            self.queue = msgs.into_iter();
        }
    }
}

enum Sink {
    Udp(UdpSocket),
    Tcp(BufWriter<TcpStream>),
    File(BufWriter<std::fs::File>),
}

impl Sink {
    fn send(&mut self, packet: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Udp(s) => s.send(packet).map(|_| ()),
            Sink::Tcp(w) => w.write_all(packet),
            Sink::File(w) => w.write_all(packet),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Udp(_) => Ok(()),
            Sink::Tcp(w) => w.flush(),
            Sink::File(w) => w.flush(),
        }
    }
}

/// The HEPv3 frames of a file, read in 64 KiB pieces: memory stays constant
/// whatever the file's size (the whole file was read at once before: 5.6 GB of
/// RSS replaying 2.1 GB).
struct FileFrames {
    path: PathBuf,
    reader: std::io::BufReader<std::fs::File>,
    framer: StreamFramer,
    buf: Vec<u8>,
    eof: bool,
}

/// What a capture file is, from its first bytes, when it is not HEP: the
/// error then says what `--file` takes and how to send that capture.
pub fn capture_format(head: &[u8]) -> Option<&'static str> {
    match head.get(..4)? {
        [0xd4, 0xc3, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0xc3, 0xd4]
        | [0x4d, 0x3c, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0x3c, 0x4d] => Some("pcap"),
        [0x0a, 0x0d, 0x0d, 0x0a] => Some("pcapng"),
        _ => None,
    }
}

impl FileFrames {
    fn open(path: &Path) -> anyhow::Result<Self> {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let mut head = [0u8; 4];
        let n = std::io::Read::read(&mut file, &mut head)
            .with_context(|| format!("reading {}", path.display()))?;
        if let Some(format) = capture_format(&head[..n]) {
            bail!(
                "{} is a {format} capture; --file replays HEP packets (HEPv3 one after another, \
                 as `hepop send --save` writes). To store a {format} capture's SIP and RTCP: \
                 hepop import {} [--to <host>:<port>]",
                path.display(),
                path.display()
            );
        }
        std::io::Seek::rewind(&mut file).with_context(|| format!("reading {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            reader: std::io::BufReader::new(file),
            framer: StreamFramer::new(),
            buf: vec![0; 64 * 1024],
            eof: false,
        })
    }

    /// Bytes that were not HEPv3 frames (skipped), so far.
    fn skipped(&self) -> u64 {
        self.framer.stats().garbage_bytes
    }
}

impl Iterator for FileFrames {
    type Item = anyhow::Result<Vec<u8>>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(f) = self.framer.next_frame() {
                return Some(Ok(f.to_vec()));
            }
            if self.eof {
                return None;
            }
            match self.reader.read(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.framer.push(&self.buf[..n]),
                Err(e) => {
                    self.eof = true;
                    return Some(Err(
                        anyhow::Error::new(e).context(format!("reading {}", self.path.display()))
                    ));
                }
            }
        }
    }
}

fn generated(args: &SendArgs) -> impl Iterator<Item = anyhow::Result<Vec<u8>>> {
    let run = chrono::Utc::now().timestamp_micros() as u64;
    let generator = Generator {
        run,
        call: 0,
        traffic: args.traffic,
        queue: Vec::new().into_iter(),
    };
    generator.map(|m| Ok(hep::encode_v3(&m).expect("generated messages fit in 64 KiB")))
}

pub fn send(args: SendArgs) -> anyhow::Result<()> {
    let mut sink = if let Some(path) = &args.save {
        Sink::File(BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ))
    } else {
        match args.transport {
            Transport::Udp => {
                let s = UdpSocket::bind("0.0.0.0:0")?;
                s.connect(&args.to)
                    .with_context(|| format!("resolving {}", args.to))?;
                Sink::Udp(s)
            }
            Transport::Tcp => Sink::Tcp(BufWriter::new(
                TcpStream::connect(&args.to)
                    .with_context(|| format!("connecting to {}", args.to))?,
            )),
        }
    };
    // A file is sent whole unless told otherwise; generated traffic needs a bound.
    let limit = args
        .count
        .unwrap_or(if args.duration.is_some() || args.file.is_some() {
            u64::MAX
        } else {
            10_000
        });
    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let target = if args.save.is_some() {
        "file"
    } else {
        &args.to
    };
    let start = Instant::now();
    let mut last_report = start;
    let mut sent: u64 = 0;
    let mut bytes: u64 = 0;
    let mut file = match &args.file {
        Some(path) => Some(FileFrames::open(path)?),
        None => None,
    };
    let mut generated = generated(&args);
    let source: &mut dyn Iterator<Item = anyhow::Result<Vec<u8>>> = match &mut file {
        Some(f) => f,
        None => &mut generated,
    };
    for packet in source.take(limit.try_into().unwrap_or(usize::MAX)) {
        let packet = packet?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if args.rate > 0.0 && args.save.is_none() {
            // Pace against the schedule, not the previous packet: no drift.
            let due = start + Duration::from_secs_f64(sent as f64 / args.rate);
            let now = Instant::now();
            if due > now + Duration::from_millis(1) {
                sink.flush()?;
                std::thread::sleep(due - now);
            }
        }
        sink.send(&packet)
            .with_context(|| format!("sending to {target}"))?;
        sent += 1;
        bytes += packet.len() as u64;
        if !args.quiet && last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            eprint!(
                "\rsent {sent} messages, {:.0}/s, {:.1} MB → {target}   ",
                sent as f64 / secs,
                bytes as f64 / 1e6
            );
        }
    }
    sink.flush()?;
    if let Some(f) = &file {
        if sent == 0 {
            bail!("{} holds no HEPv3 packets", f.path.display());
        }
        if f.skipped() > 0 {
            eprintln!(
                "{}: skipped {} bytes that were not HEPv3 packets",
                f.path.display(),
                f.skipped()
            );
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    if !args.quiet {
        eprintln!(
            "\rsent {sent} messages in {secs:.1} s ({:.0}/s, {:.1} MB) → {target}   ",
            sent as f64 / secs,
            bytes as f64 / 1e6
        );
    }
    Ok(())
}
