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
    #[command(flatten)]
    lake: args::LakeArgs,
    /// json, ndjson, csv (formula-safe for spreadsheets) or csv-raw.
    #[arg(long, default_value = "json")]
    format: String,
    sql: String,
}

#[derive(clap::Args)]
struct CompactArgs {
    #[command(flatten)]
    lake: args::LakeArgs,
    #[command(flatten)]
    compaction: lake::settings::CompactionSettings,
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
                let store = lake::store::open(&q.lake.data)?;
                let format = web::Format::parse(Some(&q.format))?;
                let engine = lake::engine::QueryEngine::new(store, Default::default())?;
                let result = engine.query(&q.sql).await?;
                let mut out = std::io::stdout().lock();
                out.write_all(&web::render(&result, format)?)?;
                out.write_all(b"\n")?;
                Ok(())
            }
            Command::Compact(c) => {
                let cfg = c.compaction.config()?;
                let store = lake::store::open(&c.lake.data)?;
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
                    r.errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                Ok(())
            }
            Command::Import(args) => import::import(args).await,
            Command::Send(_) => unreachable!("handled above"),
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use lake::settings::{documented_table, markdown_table, setting_rows};

    /// Every setting of `hepop serve`, with its flag, variable, default and
    /// meaning, is the table README.md shows (regenerate it from the message).
    #[test]
    fn the_readme_lists_every_serve_setting_as_clap_reads_it() {
        let cli = super::Cli::command();
        let serve = cli.find_subcommand("serve").unwrap();
        let rows = setting_rows(serve);
        for env in [
            "HEPOP_COMPACT_TARGET_BYTES",
            "HEPOP_API_TOKENS",
            "HEP_AUTH_KEYS",
            "PARQUET_DIR",
        ] {
            assert!(rows.iter().any(|r| r.env == env), "{env} missing");
        }
        let readme = include_str!("../../../README.md");
        let expected = markdown_table(&rows);
        let documented = documented_table(readme, "hepop serve").unwrap_or_default();
        assert!(
            documented == expected,
            "README.md's table of `hepop serve` settings differs; it should read:\n{expected}"
        );
    }
}
