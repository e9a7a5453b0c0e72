//! `netd endpoint add|rm|ls`: attach any network namespace to a network, without Docker.

use std::net::Ipv4Addr;

use clap::Subcommand;
use netd::api::Request;
use serde_json::Value;

use super::{Ctx, output::Format};

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
        ifname: String,
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
            let value = ctx
                .call(&Request::EndpointAdd {
                    network,
                    netns,
                    ip,
                    mac,
                    ifname,
                    name,
                })
                .await?;
            match ctx.format {
                Format::Json => super::output::print_json(&value)?,
                Format::Table => println!(
                    "{} {} {}",
                    value["name"].as_str().unwrap_or_default(),
                    value["ip"].as_str().unwrap_or_default(),
                    value["mac"].as_str().unwrap_or_default()
                ),
            }
        }
        EndpointCommand::Rm { name, network } => {
            ctx.call(&Request::EndpointRm {
                name: name.clone(),
                network,
            })
            .await?;
            println!("{name}");
        }
        EndpointCommand::Ls { network } => {
            let value = ctx.call(&Request::EndpointLs { network }).await?;
            let rows: Vec<serde_json::Map<String, Value>> = value
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.as_object().cloned())
                .collect();
            ctx.print(
                &value,
                &["name", "network", "ip", "mac", "host", "vtep"],
                &rows,
            )?;
        }
    }
    Ok(())
}
