//! The `netd` command: the per-host daemon and the CLI that talks to it.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
