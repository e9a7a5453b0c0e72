//! `cargo xtask demo`: two simulated hosts, a container on each, traffic across netd's eBPF
//! VXLAN datapath, the maps and counters, then everything removed.

use std::{
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::Context as _;
use netd_tests::lab::TwoHostLab;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn step(title: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!INTERRUPTED.load(Ordering::SeqCst), "interrupted");
    println!("\n== {title}");
    Ok(())
}

fn show(out: anyhow::Result<String>) -> anyhow::Result<()> {
    print!("{}", out?);
    Ok(())
}

fn demo() -> anyhow::Result<()> {
    let netd = netd_tests::netd_bin()?;
    let netd = netd.to_str().context("netd path is not UTF-8")?;

    step("building two hosts (network namespaces joined by a veth underlay), a container on each")?;
    let lab = TwoHostLab::new("dm")?;
    let [h1, h2] = &lab.hosts;
    for (i, h) in lab.hosts.iter().enumerate() {
        println!(
            "host {}: netns {}, VTEP {} | container: netns {}, {} ({})",
            i + 1,
            h.ns.name,
            h.vtep,
            h.container.name,
            h.container_ip,
            netd_tests::pkt::fmt_mac(&h.container_mac)
        );
    }
    println!("programs loaded, pinned under {} and {}, attached with TCX links", h1.pin_dir.display(), h2.pin_dir.display());
    for p in h1.datapath.program_sizes()? {
        println!(
            "  {:<20} {:>5} instructions, {:>5} bytes JIT-compiled, verifier processed {} instructions",
            p.name,
            p.instructions.map_or("?".into(), |n| n.to_string()),
            p.jited_bytes,
            p.verified_instructions.map_or("?".into(), |n| n.to_string())
        );
    }

    step("ping from the container on host 1 to the container on host 2")?;
    show(h1.container.exec("ping", &["-c", "4", "-i", "0.2", &h2.container_ip.to_string()]))?;
    step("ping back from host 2 to host 1")?;
    show(h2.container.exec("ping", &["-c", "4", "-i", "0.2", &h1.container_ip.to_string()]))?;

    step("iperf3: 3 s of TCP from host 1's container to host 2's")?;
    let mut server = h2
        .container
        .command("iperf3")
        .args(["-s", "-1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("cannot start iperf3 -s")?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let client = h1
        .container
        .exec("iperf3", &["-c", &h2.container_ip.to_string(), "-t", "3", "-f", "g"]);
    let _ = server.kill();
    let _ = server.wait();
    for line in client?.lines().filter(|l| l.contains("sender") || l.contains("receiver")) {
        println!("{line}");
    }

    let pins = h1.pin_dir.display().to_string();
    for map in ["config", "endpoints", "fdb", "neigh", "vteps"] {
        step(&format!("netd maps dump {map}   (host 1)"))?;
        show(netd_tests::sh(netd, &["maps", "dump", map, "--pin-dir", &pins]))?;
    }
    for (i, h) in lab.hosts.iter().enumerate() {
        step(&format!("counters of host {} (non-zero; `netd maps dump stats` shows all)", i + 1))?;
        for (name, value) in netd::datapath::inspect::counters(&h.pin_dir)? {
            if value != 0 {
                println!("  {name:<28} {value}");
            }
        }
    }
    step("removing namespaces, interfaces and pins")?;
    drop(lab);
    println!("done: nothing left behind");
    Ok(())
}

fn main() -> ExitCode {
    // Ctrl-C stops the child commands; the demo then unwinds and removes what it made.
    // SAFETY: the handler only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netd-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
