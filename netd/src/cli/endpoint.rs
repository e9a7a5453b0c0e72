//! `netd endpoint add|rm|ls`: attach any network namespace to a network, without Docker.

use std::net::Ipv4Addr;

use clap::Subcommand;
use netd::api::{AddEndpoint, IfName};

use super::Ctx;

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Connect a network namespace to a network (veth, address, gateway route, MTU, program).
    Add {
        #[arg(long)]
        network: String,
        /// Namespace name (ip netns) or path (/proc/PID/ns/net).
        #[arg(long)]
        netns: String,
        /// Address to use (default: the next free one).
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        /// MAC address (default: derived from the address).
        #[arg(long)]
        mac: Option<String>,
        /// Interface name inside the namespace.
        #[arg(long, default_value = "eth0")]
        ifname: IfName,
        name: String,
    },
    /// Disconnect an endpoint of this host and free its address.
    #[command(alias = "remove")]
    Rm {
        name: String,
        #[arg(long)]
        network: Option<String>,
    },
    /// List endpoints of all hosts.
    #[command(alias = "list")]
    Ls {
        #[arg(long)]
        network: Option<String>,
    },
}

pub async fn run(cmd: EndpointCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        EndpointCommand::Add {
            network,
            netns,
            ip,
            mac,
            ifname,
            name,
        } => {
            let request = AddEndpoint {
                name,
                network,
                netns,
                ip,
                mac,
                ifname,
            };
            let e = ctx.client.add_endpoint(&request).await?;
            ctx.print_line(&e, &format!("{} {} {}", e.name, e.ip, e.mac))?;
        }
        EndpointCommand::Rm { name, network } => {
            let removed = ctx
                .client
                .remove_endpoint(&name, network.as_deref())
                .await?;
            ctx.print_line(&removed, &removed.removed)?;
        }
        EndpointCommand::Ls { network } => {
            let endpoints = ctx.client.endpoints(network.as_deref()).await?;
            ctx.print(
                &endpoints,
                &["name", "network", "ip", "mac", "host", "vtep"],
                || {
                    endpoints
                        .iter()
                        .map(|e| {
                            vec![
                                e.name.clone(),
                                e.network.clone(),
                                e.ip.to_string(),
                                e.mac.to_string(),
                                e.host.clone(),
                                e.vtep.to_string(),
                            ]
                        })
                        .collect()
                },
            )?;
        }
    }
    Ok(())
}
