//! `netd network create|ls|inspect|rm`, with `docker network`'s flags.

use clap::{Args, Subcommand};
use netd::api::{ApiError, CreateNetwork, SubnetSpec};
use netd_store::options;

use super::{Ctx, output};

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network (once, from any host; it exists on every host).
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls,
    /// Show a network and its endpoints.
    Inspect { name: String },
    /// Remove a network (refused while endpoints use it).
    #[command(alias = "remove")]
    Rm { name: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Driver: overlay (VXLAN between hosts) or macvlan (endpoints on the LAN).
    #[arg(short = 'd', long, default_value = "overlay")]
    driver: String,
    /// Subnet in CIDR form; repeat for several.
    #[arg(long)]
    subnet: Vec<String>,
    /// Gateway of the subnet at the same position.
    #[arg(long)]
    gateway: Vec<String>,
    /// Allocate addresses from this sub-range of the subnet at the same position.
    #[arg(long)]
    ip_range: Vec<String>,
    /// Address the IPAM must never hand out: name=IP; repeat.
    #[arg(long = "aux-address")]
    aux_address: Vec<String>,
    /// Driver option KEY=VALUE, repeat: mtu=N, vni=N; macvlan: parent=IF[.VLAN],
    /// macvlan_mode=bridge|private|vepa|passthru, host_access=true.
    #[arg(short = 'o', long = "opt")]
    opt: Vec<String>,
    /// VXLAN network identifier (default: the lowest free from 256).
    #[arg(long)]
    vni: Option<u32>,
    /// macvlan: parent interface (eth0, or eth0.10 for VLAN 10); same as -o parent=.
    #[arg(long)]
    parent: Option<String>,
    name: String,
}

/// The request `netd network create` sends. Bad input found here is `invalid`, the kind (and
/// exit code) the daemon would answer it with.
fn build_create(args: CreateArgs) -> Result<CreateNetwork, ApiError> {
    if args.gateway.len() > args.subnet.len() || args.ip_range.len() > args.subnet.len() {
        return Err(ApiError::invalid(
            "each --gateway and --ip-range needs a --subnet before it",
        ));
    }
    let mut subnets: Vec<SubnetSpec> = args
        .subnet
        .iter()
        .enumerate()
        .map(|(i, s)| SubnetSpec {
            subnet: s.clone(),
            gateway: args.gateway.get(i).cloned(),
            ip_range: args.ip_range.get(i).cloned(),
            aux: Vec::new(),
        })
        .collect();
    for aux in &args.aux_address {
        let (name, ip) = aux.split_once('=').ok_or_else(|| {
            ApiError::invalid(format!("invalid --aux-address {aux:?}: expected name=IP"))
        })?;
        let ip_addr: std::net::Ipv4Addr = ip.parse().map_err(|_| {
            ApiError::invalid(format!(
                "invalid --aux-address {aux:?}: {ip:?} is not an IPv4 address"
            ))
        })?;
        // Like Docker: an aux address belongs to the subnet that contains it.
        let subnet = subnets
            .iter_mut()
            .find(|s| {
                s.subnet
                    .parse::<ipnet::Ipv4Net>()
                    .is_ok_and(|n| n.contains(&ip_addr))
            })
            .ok_or_else(|| {
                ApiError::invalid(format!("aux address {aux:?} is in none of the subnets"))
            })?;
        subnet.aux.push((name.to_string(), ip.to_string()));
    }
    let mut options = Vec::new();
    if let Some(parent) = &args.parent {
        options.push((options::PARENT.to_string(), parent.clone()));
    }
    for o in &args.opt {
        let (k, v) = o.split_once('=').ok_or_else(|| {
            ApiError::invalid(format!("invalid option {o:?}: expected KEY=VALUE"))
        })?;
        options.push((k.to_string(), v.to_string()));
    }
    // Read here for an answer without the daemon, and sent as given: the daemon reads them
    // again (with the same function), as it does an API client's.
    options::NetworkOptions::parse(
        options.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        options::Frontend::Netd,
    )
    .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(CreateNetwork {
        name: args.name,
        driver: args.driver,
        subnets,
        mtu: None,
        vni: args.vni,
        options,
    })
}

pub async fn run(cmd: NetworkCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        NetworkCommand::Create(args) => {
            let network = ctx.client.create_network(&build_create(args)?).await?;
            ctx.print_line(&network, &network.name)?;
        }
        NetworkCommand::Ls => {
            let networks = ctx.client.networks().await?;
            ctx.print(
                &networks,
                &["name", "driver", "vni", "subnets", "endpoints"],
                || {
                    networks
                        .iter()
                        .map(|n| {
                            let subnets: Vec<String> =
                                n.subnets.iter().map(|s| s.subnet.to_string()).collect();
                            vec![
                                n.name.clone(),
                                n.driver.clone(),
                                n.vni.to_string(),
                                subnets.join(","),
                                n.endpoints.to_string(),
                            ]
                        })
                        .collect()
                },
            )?;
        }
        NetworkCommand::Inspect { name } => {
            // Like `docker network inspect`: JSON either way.
            output::print_json(&ctx.client.network(&name).await?)?;
        }
        NetworkCommand::Rm { name } => {
            let removed = ctx.client.remove_network(&name).await?;
            ctx.print_line(&removed, &removed.removed)?;
        }
    }
    Ok(())
}
