//! Tables for people, JSON for scripts.

use std::io::{self, Write as _};

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

fn cell(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// Prints JSON objects as a table of the given fields ([`print_rows`]).
pub fn print_table(columns: &[&str], rows: &[serde_json::Map<String, Value>]) -> io::Result<()> {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(r.get(*c))).collect())
        .collect();
    print_rows(columns, &cells)
}

/// Prints rows as an aligned table with upper-case headers (the `docker network ls` look).
pub fn print_rows(columns: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .filter_map(|r| r.get(i).map(String::len))
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = io::stdout().lock();
    let mut line = |values: &[String]| -> io::Result<()> {
        let last = values.len().saturating_sub(1);
        for (i, v) in values.iter().enumerate() {
            if i == last {
                writeln!(out, "{v}")?;
            } else {
                write!(out, "{v:<w$}   ", w = widths[i])?;
            }
        }
        Ok(())
    };
    line(&columns.iter().map(|c| c.to_uppercase()).collect::<Vec<_>>())?;
    for r in rows {
        line(r)?;
    }
    Ok(())
}

pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}
