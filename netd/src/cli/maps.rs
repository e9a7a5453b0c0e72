//! `netd maps ls` and `netd maps dump MAP`.

use std::path::Path;

use anyhow::Context as _;
use clap::Subcommand;
use netd::datapath::inspect;
use serde_json::{Value, json};

use super::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum MapsCommand {
    /// List the pinned maps with their layout and fill level.
    #[command(alias = "list")]
    Ls,
    /// Decode every entry of one map (full name such as NETD_FDB, or short: fdb).
    #[command(alias = "show")]
    Dump {
        /// Map name: config, endpoints, fdb, neigh, vteps, parents, nexthops, stats or traffic.
        map: String,
    },
}

pub fn run(cmd: MapsCommand, pin_dir: &Path, format: Format) -> anyhow::Result<()> {
    match cmd {
        MapsCommand::Ls => {
            let maps = inspect::list(pin_dir)
                .with_context(|| format!("cannot list maps in {}", pin_dir.display()))?;
            match format {
                Format::Json => output::print_json(&maps)?,
                Format::Table => {
                    let rows: Vec<serde_json::Map<String, Value>> = maps
                        .iter()
                        .filter_map(|m| match json!(m) {
                            Value::Object(o) => Some(o),
                            _ => None,
                        })
                        .collect();
                    output::print_table(
                        &[
                            "name",
                            "kind",
                            "key_size",
                            "value_size",
                            "max_entries",
                            "entries",
                        ],
                        &rows,
                    )?;
                }
            }
        }
        MapsCommand::Dump { map } => {
            let table = inspect::dump(pin_dir, &map)
                .with_context(|| format!("cannot dump {map} from {}", pin_dir.display()))?;
            match format {
                Format::Json => output::print_json(&table.rows)?,
                Format::Table => output::print_table(&table.columns, &table.rows)?,
            }
        }
    }
    Ok(())
}
