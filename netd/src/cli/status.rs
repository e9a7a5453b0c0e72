//! `netd status`.

use netd::api::Request;

use super::{Ctx, output::Format};

pub async fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let v = ctx.call(&Request::Status).await?;
    if ctx.format == Format::Json {
        return super::output::print_json(&v);
    }
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // The first line answers "is this host all right?", for people and for `head -1`.
    if v["healthy"].as_bool() == Some(true) {
        println!("healthy");
    } else {
        let problems: Vec<String> = v["problems"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        println!("unhealthy: {}", problems.join("; "));
    }
    println!(
        "host:        {} (VTEP {}, uplink {} mtu {})",
        s(&v["host"]),
        s(&v["vtep"]),
        s(&v["uplink"]),
        s(&v["uplink_mtu"])
    );
    let store = &v["store"];
    let member = store["member"]
        .as_str()
        .map(|m| format!(" (member in use: {m})"))
        .unwrap_or_default();
    println!(
        "store:       {} {} at revision {}{member}",
        s(&v["store_url"]),
        s(&store["state"]),
        s(&store["revision"])
    );
    for link in ["watch", "lease"] {
        let l = &store[link];
        let error = l["error"]
            .as_str()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        let extra = if link == "lease" {
            format!(
                " (lease {}, {} renewals, {} missed)",
                s(&l["lease"]),
                s(&l["renewals"]),
                s(&l["missed_renewals"])
            )
        } else {
            String::new()
        };
        println!(
            "  {link:<10} {} for {}s{extra}{error}",
            s(&l["state"]),
            s(&l["for_seconds"])
        );
    }
    let hosts = v["hosts"].as_object().map(|h| {
        h.iter()
            .map(|(name, info)| format!("{name} ({})", s(&info["vtep"])))
            .collect::<Vec<_>>()
            .join(", ")
    });
    println!("hosts:       {}", hosts.unwrap_or_default());
    println!("networks:    {}", s(&v["networks"]));
    println!(
        "endpoints:   {} here; programmed {} here and {} peers in {} networks ({} known)",
        s(&v["endpoints_local"]),
        s(&v["endpoints_programmed"]["local"]),
        s(&v["endpoints_programmed"]["remote"]),
        s(&v["networks_active"]),
        s(&v["endpoints_known"])
    );
    println!(
        "invalid:     {} store values skipped",
        s(&v["invalid_values"])
    );
    println!("docker:      {}", s(&v["docker"]));
    if let Some(maps) = v["maps"].as_array() {
        let fill: Vec<String> = maps
            .iter()
            .map(|m| {
                let failed = match m["failed_writes"].as_u64() {
                    Some(0) | None => String::new(),
                    Some(n) => format!(" ({n} failed writes)"),
                };
                format!(
                    "{} {}/{}{failed}",
                    s(&m["name"]),
                    s(&m["entries"]),
                    s(&m["max_entries"])
                )
            })
            .collect();
        println!("maps:        {}", fill.join(", "));
    }
    let kernel = &v["kernel"];
    let took = |flag: &str| match kernel[flag].as_bool() {
        Some(true) => "taken",
        Some(false) => "refused",
        None => "?",
    };
    println!(
        "kernel:      tc attach {}, adjust_room ENCAP_L2_ETH {}, DECAP_L3_IPV4 {}, GRO {}",
        s(&kernel["tc_attach"]),
        took("adjust_room_encap_l2_eth"),
        took("adjust_room_decap_l3_ipv4"),
        kernel["gro_device"]
            .as_str()
            .map_or_else(|| "off".to_string(), |device| format!("by {device}"))
    );
    if let Some(programs) = v["programs"].as_array() {
        for p in programs {
            println!(
                "program:     {} {} insns, {} B JIT, verifier processed {}",
                s(&p["name"]),
                s(&p["instructions"]),
                s(&p["jited_bytes"]),
                s(&p["verified_instructions"])
            );
        }
    }
    Ok(())
}
