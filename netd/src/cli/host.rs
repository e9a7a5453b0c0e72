//! `netd host rm`: what a host that is gone for good left in the store.

use clap::Subcommand;

use super::Ctx;

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Remove a dead host's endpoints and address claims from the store (refused while the
    /// host's lease lives: stop its netd and wait for --lease-ttl first).
    #[command(alias = "remove")]
    Rm { name: String },
}

pub async fn run(cmd: HostCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        HostCommand::Rm { name } => {
            let removed = ctx.client.remove_host(&name).await?;
            let line = format!(
                "{}: {} endpoint(s) and {} address claim(s) removed",
                removed.removed, removed.endpoints, removed.claims
            );
            ctx.print_line(&removed, &line)?;
        }
    }
    Ok(())
}
