//! The functions' settings: read from the environment by the parser `hepop
//! serve` uses, documented in README.md, and the template sets no other.
use std::collections::BTreeSet;

use clap::CommandFactory;
use functions::settings::{CompactorSettings, IngestSettings, QuerySettings, from_env};
use lake::settings::{documented_table, markdown_table, setting_rows};

fn commands() -> Vec<clap::Command> {
    vec![
        IngestSettings::command(),
        CompactorSettings::command(),
        QuerySettings::command(),
    ]
}

/// Each function's table in README.md is its settings as clap reads them
/// (regenerate it from the message).
#[test]
fn the_readme_lists_every_function_setting() {
    let readme = include_str!("../../../README.md");
    for cmd in commands() {
        let name = format!("{} function", cmd.get_name());
        let expected = markdown_table(&setting_rows(&cmd));
        let documented = documented_table(readme, &name).unwrap_or_default();
        assert!(
            documented == expected,
            "README.md's table of the {name}'s settings differs; it should read:\n{expected}"
        );
    }
}

/// A `HEPOP_*` variable the template sets that no function reads would be
/// a setting silently ignored.
#[test]
fn the_template_sets_only_variables_the_functions_read() {
    let read: BTreeSet<String> = commands()
        .iter()
        .flat_map(|c| setting_rows(c).into_iter().map(|r| r.env))
        .collect();
    let template = include_str!("../../../infra/template.yaml");
    let set: BTreeSet<&str> = template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("HEPOP_"))
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name)
        .collect();
    assert!(
        set.contains("LAKE") && set.contains("RETENTION_DAYS"),
        "{set:?}"
    );
    for name in set {
        assert!(
            read.contains(&format!("HEPOP_{name}")),
            "HEPOP_{name} is read by no function"
        );
    }
}

/// The variables parse as the server's flags do; a bad one stops the start
/// with a message naming it. (Only this test sets them: each test binary's
/// tests share one environment.)
#[test]
fn settings_come_from_the_environment_and_bad_ones_are_named() {
    let vars = [
        ("HEPOP_LAKE", "s3://bucket/lake"),
        ("HEPOP_ACCEPT_ANY_TIME", "true"),
        ("HEPOP_MAX_CAPTURE_AGE_SECS", "60"),
        ("HEPOP_ALEG_HEADERS", "X-CID,X-Leg"),
        ("HEPOP_COMPACT_MEMORY_MB", "256"),
        ("HEPOP_KINESIS_RETENTION_HOURS", "24"),
    ];
    // SAFETY: no other test of this binary reads or writes these variables.
    unsafe {
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
    }
    let ingest: IngestSettings = from_env().unwrap();
    assert_eq!(ingest.lake.lake, "s3://bucket/lake");
    let cfg = ingest.config().unwrap();
    assert!(cfg.window.accept_any);
    assert_eq!(cfg.window.max_age_micros, 60_000_000);
    assert_eq!(
        &*cfg.aleg_headers,
        ["X-CID".to_string(), "X-Leg".to_string()]
    );
    let compactor: CompactorSettings = from_env().unwrap();
    let cfg = compactor.config().unwrap();
    assert_eq!(cfg.memory_bytes, 256 << 20);
    assert_eq!(cfg.kinesis_retry_horizon.as_secs(), 48 * 3600);

    unsafe { std::env::set_var("HEPOP_MAX_CAPTURE_AGE_SECS", "a week") };
    let e = from_env::<IngestSettings>().unwrap_err().to_string();
    assert!(
        e.contains("'HEPOP_MAX_CAPTURE_AGE_SECS'") && e.contains("a week"),
        "{e}"
    );
    assert!(!e.contains("--"), "a function has no flags: {e}");
    unsafe { std::env::set_var("HEPOP_MAX_CAPTURE_AGE_SECS", "60") };
    unsafe { std::env::set_var("HEPOP_COMPACT_MEMORY_MB", "1") };
    let e = from_env::<CompactorSettings>()
        .unwrap()
        .config()
        .unwrap_err();
    assert!(e.to_string().contains("(HEPOP_COMPACT_MEMORY_MB)"), "{e}");
    unsafe { std::env::remove_var("HEPOP_LAKE") };
    let e = from_env::<QuerySettings>().unwrap_err().to_string();
    assert!(e.ends_with("HEPOP_LAKE"), "{e}");
    unsafe {
        for (k, _) in vars {
            std::env::remove_var(k);
        }
    }
}
