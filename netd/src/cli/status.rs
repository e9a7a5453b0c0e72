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
    println!(
        "host:        {} (VTEP {}, uplink {} mtu {})",
        s(&v["host"]),
        s(&v["vtep"]),
        s(&v["uplink"]),
        s(&v["uplink_mtu"])
    );
    let store = &v["store"];
    match store["state"].as_str() {
        Some("unreachable") => println!(
            "store:       {} UNREACHABLE for {}s: {} (retrying; the datapath keeps forwarding)",
            s(&v["store_url"]),
            s(&store["for_seconds"]),
            s(&store["error"])
        ),
        state => println!(
            "store:       {} {}",
            s(&v["store_url"]),
            state.unwrap_or("?")
        ),
    }
    println!("last sync:   revision {}", s(&v["last_sync_revision"]));
    let hosts = v["hosts"].as_object().map(|h| {
        h.iter()
            .map(|(name, info)| format!("{name} ({})", s(&info["vtep"])))
            .collect::<Vec<_>>()
            .join(", ")
    });
    println!("hosts:       {}", hosts.unwrap_or_default());
    println!("networks:    {}", s(&v["networks"]));
    println!(
        "endpoints:   {} here, {} on other hosts",
        s(&v["endpoints_local"]),
        s(&v["endpoints_remote"])
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
                format!(
                    "{} {}/{}",
                    s(&m["name"]),
                    s(&m["entries"]),
                    s(&m["max_entries"])
                )
            })
            .collect();
        println!("maps:        {}", fill.join(", "));
    }
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
