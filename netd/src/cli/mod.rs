//! clap commands, one file per verb group; doc comments are the help text.

mod daemon;
mod endpoint;
mod host;
mod maps;
mod monitor;
mod network;
mod output;
mod status;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use netd::{
    api::{ApiError, Client, ClientError, ErrorKind},
    datapath::DatapathError,
};

/// Multi-host container networking with an eBPF VXLAN datapath.
#[derive(Debug, Parser)]
#[command(name = "netd", version, propagate_version = true)]
struct Cli {
    /// bpffs directory holding netd's pinned maps and links.
    #[arg(long, global = true, env = "NETD_PIN_DIR", default_value = netd::DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,

    /// The daemon's API socket.
    #[arg(long, global = true, env = "NETD_SOCKET", default_value = netd::api::DEFAULT_SOCKET)]
    socket: PathBuf,

    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = output::Format::Table)]
    format: output::Format,

    /// Shorthand for `--format json`.
    #[arg(long, global = true)]
    json: bool,

    /// Log level of the daemon (overrides RUST_LOG): error, warn, info, debug, trace.
    #[arg(long, global = true)]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the per-host daemon (as root).
    Daemon(daemon::DaemonArgs),
    /// Create, list, inspect and remove networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Attach network namespaces to networks.
    #[command(subcommand)]
    Endpoint(endpoint::EndpointCommand),
    /// The daemon's view: store connection, hosts, endpoints, map fill levels.
    Status,
    /// Clean up after hosts that are gone.
    #[command(subcommand)]
    Host(host::HostCommand),
    /// Inspect the datapath's pinned maps (works while the daemon is down).
    #[command(subcommand)]
    Maps(maps::MapsCommand),
    /// Watch the datapath's drops (or, with --type trace, every forwarded packet) live.
    Monitor(monitor::MonitorArgs),
}

/// What every client command needs.
pub struct Ctx {
    pub client: Client,
    pub format: output::Format,
}

impl Ctx {
    /// Prints `value` (the daemon's answer) as JSON, or `rows` of it as a table.
    pub fn print(
        &self,
        value: &impl serde::Serialize,
        columns: &[&str],
        rows: impl FnOnce() -> Vec<Vec<String>>,
    ) -> anyhow::Result<()> {
        match self.format {
            output::Format::Json => output::print_json(value),
            output::Format::Table => Ok(output::print_rows(columns, &rows())?),
        }
    }

    /// Prints `value` as JSON, or `line` for people.
    pub fn print_line(&self, value: &impl serde::Serialize, line: &str) -> anyhow::Result<()> {
        match self.format {
            output::Format::Json => output::print_json(value),
            output::Format::Table => {
                println!("{line}");
                Ok(())
            }
        }
    }
}

fn init_logging(level: Option<&str>) {
    let filter = match level {
        Some(l) => tracing_subscriber::EnvFilter::new(format!("{l},netlink_packet_route=error")),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            // netlink-packet-route warns about every attribute newer than itself, on every
            // link it reads: noise for an operator.
            .unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,netlink_packet_route=error")
            }),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let format = if cli.json {
        output::Format::Json
    } else {
        cli.format
    };
    let ctx = Ctx {
        client: Client::new(cli.socket),
        format,
    };
    let result = match cli.command {
        Command::Daemon(args) => {
            init_logging(cli.log_level.as_deref());
            daemon::run(args, cli.pin_dir)
        }
        Command::Maps(cmd) => maps::run(cmd, &cli.pin_dir, format),
        Command::Monitor(args) => monitor::run(args, &cli.pin_dir, format),
        Command::Network(cmd) => client(network::run(cmd, &ctx)),
        Command::Endpoint(cmd) => client(endpoint::run(cmd, &ctx)),
        Command::Status => client(status::run(&ctx)),
        Command::Host(cmd) => client(host::run(cmd, &ctx)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, as docker and ip do: the whole cause chain joined.
            eprintln!("netd: {error:#}");
            ExitCode::from(error_kind(&error).exit_code())
        }
    }
}

/// The kind of a failed command: the daemon's answer, the client's own finding, what the
/// pins said (`netd maps`, `netd monitor`), or (for anything untyped) internal. The exit
/// codes are in `netd::api::error`.
fn error_kind(error: &anyhow::Error) -> ErrorKind {
    error
        .chain()
        .find_map(|e| {
            e.downcast_ref::<ClientError>()
                .map(ClientError::kind)
                .or_else(|| e.downcast_ref::<ApiError>().map(|e| e.kind))
                .or_else(|| e.downcast_ref::<DatapathError>().map(DatapathError::kind))
                .or_else(|| e.downcast_ref::<monitor::MonitorError>().map(|e| e.kind()))
        })
        .unwrap_or(ErrorKind::Internal)
}

/// Help and version print as clap writes them; a usage error is one line, as every other
/// error of netd (`netd: ...`), with a pointer to the help.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            return ExitCode::from(netd::api::ErrorKind::Invalid.exit_code());
        }
        _ => {}
    }
    let text = error.to_string();
    let first = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .trim();
    eprintln!("netd: {first} (see --help)");
    ExitCode::from(netd::api::ErrorKind::Invalid.exit_code())
}

fn client(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}
