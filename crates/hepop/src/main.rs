//! `hepop`: the stand-alone HEP capture server and its tools.
use std::io::Write;

use clap::{Parser, Subcommand};

// Returns freed memory promptly: the compaction memory budget bounds RSS
// (glibc's per-thread arenas kept up to twice the live heap).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;
mod http_server;
mod https;
mod import;
mod metrics;
mod send;
mod serve;

#[derive(Parser)]
#[command(
    name = "hepop",
    version,
    about = "HEP capture server: HEP over UDP/TCP into Parquet, SQL over HTTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Receive HEP, store Parquet, answer SQL (the default).
    Serve(Box<serve::ServeArgs>),
    /// Send realistic HEP traffic, or a file of HEP packets.
    Send(send::SendArgs),
    /// Run one SQL query against a lake directly (no server needed).
    Query(QueryArgs),
    /// One compaction run over every hour (and retention), then a report.
    Compact(CompactArgs),
    /// Store the SIP and RTCP of a pcap or pcapng capture, with its times.
    Import(import::ImportArgs),
}

#[derive(clap::Args)]
struct QueryArgs {
    #[arg(long = "data", env = "PARQUET_DIR", default_value = "./data")]
    data: String,
    /// json, ndjson, csv (formula-safe for spreadsheets) or csv-raw.
    #[arg(long, default_value = "json")]
    format: String,
    sql: String,
}

#[derive(clap::Args)]
struct CompactArgs {
    #[arg(long = "data", env = "PARQUET_DIR", default_value = "./data")]
    data: String,
    #[command(flatten)]
    compaction: args::CompactionArgs,
}

/// Only `serve` needs the default args when no subcommand is given.
#[derive(Parser)]
struct ServeOnly {
    #[command(flatten)]
    args: serve::ServeArgs,
}

fn main() -> anyhow::Result<()> {
    listen::init_logs_filtered(lake::LOG_FILTER);
    let cli = Cli::parse();
    let command = cli
        .command
        .unwrap_or_else(|| Command::Serve(Box::new(ServeOnly::parse_from(["hepop"]).args)));
    if let Command::Send(args) = command {
        return send::send(args);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match command {
            Command::Serve(args) => serve::serve(*args).await,
            Command::Query(q) => {
                let store = lake::store::open(&q.data)?;
                let format = web::Format::parse(Some(&q.format)).map_err(anyhow::Error::msg)?;
                let engine = lake::engine::QueryEngine::new(store, Default::default())?;
                let result = engine.query(&q.sql).await?;
                let mut out = std::io::stdout().lock();
                out.write_all(&web::render(&result, format)?)?;
                out.write_all(b"\n")?;
                Ok(())
            }
            Command::Compact(c) => {
                let cfg = c.compaction.config()?;
                let store = lake::store::open(&c.data)?;
                let r = lake::compact::run(
                    &store,
                    &cfg,
                    chrono::Utc::now().timestamp_micros(),
                    lake::compact::Sweep::Full,
                    None,
                )
                .await;
                println!("{}", serde_json::to_string(&r)?);
                anyhow::ensure!(
                    r.errors.is_empty(),
                    "{} partition(s) failed: {}",
                    r.errors.len(),
                    r.errors.join("; ")
                );
                Ok(())
            }
            Command::Import(args) => import::import(args).await,
            Command::Send(_) => unreachable!("handled above"),
        }
    })
}
