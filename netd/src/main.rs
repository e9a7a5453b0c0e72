//! The `netd` command: CLI (and, from issue #3 on, the daemon).

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
