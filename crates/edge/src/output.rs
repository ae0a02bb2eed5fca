//! Output for people (tables, relative times) and for scripts (`-o json`).

use crate::cli::Output;
use comfy_table::{Table, presets};
use serde::Serialize;

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    t
}

/// Prints JSON for `-o json`, or the table otherwise.
pub fn emit<T: Serialize>(
    out: Output,
    value: &T,
    table: impl FnOnce() -> Table,
) -> anyhow::Result<()> {
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Table => println!("{}", table()),
    }
    Ok(())
}

pub fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// "3s ago", "5m ago"; "-" for zero.
pub fn ago(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_string();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let secs = ((now - ms).max(0) / 1000) as u64;
    let d = std::time::Duration::from_secs(secs);
    let text = humantime::format_duration(d).to_string();
    let first = text.split(' ').next().unwrap_or("0s");
    format!("{first} ago")
}

pub fn time(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_string();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
