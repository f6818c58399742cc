//! `hepop send`: realistic HEP traffic (or a file of HEP packets) at a chosen rate.
use std::io::{BufWriter, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
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
    /// Messages to send (default 10000, or unbounded with --duration).
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    #[arg(long, value_enum, default_value = "all")]
    pub traffic: Traffic,
    /// Replay the HEP packets in this file (concatenated HEPv3, as --save writes) instead of generating.
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

fn packets(args: &SendArgs) -> anyhow::Result<Box<dyn Iterator<Item = Vec<u8>>>> {
    if let Some(path) = &args.file {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut framer = StreamFramer::new();
        framer.push(&bytes);
        let mut frames = Vec::new();
        while let Some(f) = framer.next_frame() {
            frames.push(f.to_vec());
        }
        if frames.is_empty() {
            bail!("{} holds no HEPv3 packets", path.display());
        }
        return Ok(Box::new(frames.into_iter()));
    }
    let run = chrono::Utc::now().timestamp_micros() as u64;
    let generator = Generator {
        run,
        call: 0,
        traffic: args.traffic,
        queue: Vec::new().into_iter(),
    };
    Ok(Box::new(generator.map(|m| {
        hep::encode_v3(&m).expect("generated messages fit in 64 KiB")
    })))
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
    let limit = args.count.unwrap_or(if args.duration.is_some() {
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
    for packet in packets(&args)?.take(limit as usize) {
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
