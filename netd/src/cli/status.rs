//! `netd status`.

use netd::api::{LinkStatus, Status};

use super::{Ctx, output::Format};

pub async fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let status = ctx.client.status().await?;
    if ctx.format == Format::Json {
        return super::output::print_json(&status);
    }
    print(&status);
    Ok(())
}

fn print(v: &Status) {
    // The first line answers "is this host all right?", for people and for `head -1`.
    if v.healthy {
        println!("healthy");
    } else {
        println!("unhealthy: {}", v.problems.join("; "));
    }
    let source = v
        .uplink_source
        .map(|s| format!(", {s}"))
        .unwrap_or_default();
    println!(
        "host:        {} (VTEP {}, uplink {} mtu {}{source})",
        v.host, v.vtep, v.uplink, v.uplink_mtu
    );
    let store = &v.store;
    let member = store
        .member
        .as_deref()
        .map(|m| format!(" (member in use: {m})"))
        .unwrap_or_default();
    println!(
        "store:       {} {} at revision {}{member}",
        v.store_url, store.state, store.revision
    );
    if !store.keys.is_empty() {
        let older = if store.shared_layout_hosts.is_empty() {
            String::new()
        } else {
            format!(
                " (while {} run(s) a netd that reads only that layout)",
                store.shared_layout_hosts.join(", ")
            )
        };
        println!("keys:        {}{older}", store.keys);
    }
    let lease = &store.lease;
    let lease_extra = format!(
        " ({}, {} renewals, {} missed)",
        lease
            .lease
            .as_deref()
            .map_or_else(|| "no lease".to_string(), |id| format!("lease {id}")),
        lease.renewals,
        lease.missed_renewals
    );
    for (name, link, extra) in [
        ("watch", &store.watch, String::new()),
        ("lease", &lease.link, lease_extra),
    ] {
        let LinkStatus {
            state,
            for_seconds,
            error,
        } = link;
        let error = error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        println!("  {name:<10} {state} for {for_seconds}s{extra}{error}");
    }
    let hosts: Vec<String> = v
        .hosts
        .iter()
        .map(|(name, host)| format!("{name} ({})", host.vtep))
        .collect();
    println!("hosts:       {}", hosts.join(", "));
    println!("networks:    {}", v.networks);
    println!(
        "endpoints:   {} here; programmed {} here and {} peers in {} networks ({} known)",
        v.endpoints_local,
        v.endpoints_programmed.local,
        v.endpoints_programmed.remote,
        v.networks_active,
        v.endpoints_known
    );
    println!("invalid:     {} store values skipped", v.invalid_values);
    println!("docker:      {}", v.docker);
    let fill: Vec<String> = v
        .maps
        .iter()
        .map(|m| {
            let failed = match m.failed_writes {
                0 => String::new(),
                n => format!(" ({n} failed writes)"),
            };
            format!("{} {}/{}{failed}", m.name, m.entries, m.max_entries)
        })
        .collect();
    println!("maps:        {}", fill.join(", "));
    let kernel = &v.kernel;
    let took = |taken: bool| if taken { "taken" } else { "refused" };
    println!(
        "kernel:      tc attach {}, adjust_room ENCAP_L2_ETH {}, DECAP_L3_IPV4 {}, GRO {}",
        kernel.tc_attach,
        took(kernel.adjust_room_encap_l2_eth),
        took(kernel.adjust_room_decap_l3_ipv4),
        kernel
            .gro_device
            .as_deref()
            .map_or_else(|| "off".to_string(), |device| format!("by {device}"))
    );
    let or_unknown = |n: Option<u32>| n.map_or_else(|| "null".to_string(), |n| n.to_string());
    for p in &v.programs {
        println!(
            "program:     {} {} insns, {} B JIT, verifier processed {}",
            p.name,
            or_unknown(p.instructions),
            p.jited_bytes,
            or_unknown(p.verified_instructions)
        );
    }
}
