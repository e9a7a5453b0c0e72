//! A network namespace that is deleted when dropped.

use std::path::PathBuf;

use crate::{ip, sh, unique_name};

pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `ip netns add <tag><pid>x<n>` with loopback up. Fails the test unless it runs as
    /// root ([`crate::require_root`]).
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        crate::require_root();
        let name = unique_name(tag);
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn path(&self) -> PathBuf {
        netd::netns::named(&self.name)
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs a command inside the namespace (`ip netns exec`), failing when it fails.
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// Like [`Self::exec`], but returns whether the command succeeded.
    pub fn succeeds(&self, program: &str, args: &[&str]) -> bool {
        self.exec(program, args).is_ok()
    }

    /// A command to spawn inside the namespace.
    pub fn command(&self, program: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", self.name.as_str(), program]);
        cmd
    }

    /// ifindex of an interface in this namespace.
    pub fn ifindex(&self, ifname: &str) -> anyhow::Result<u32> {
        let out = self.ip(&["-o", "link", "show", "dev", ifname])?;
        out.split(':')
            .next()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no ifindex in {out:?}"))
    }

    /// MAC address of an interface in this namespace.
    pub fn mac(&self, ifname: &str) -> anyhow::Result<[u8; 6]> {
        let out = self.ip(&["-o", "link", "show", "dev", ifname])?;
        let text = out
            .split("link/ether ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .ok_or_else(|| anyhow::anyhow!("no MAC in {out:?}"))?;
        parse_mac(text)
    }
}

pub fn parse_mac(text: &str) -> anyhow::Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    anyhow::ensure!(parts.len() == 6, "bad MAC {text:?}");
    for (byte, part) in mac.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16)?;
    }
    Ok(mac)
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes every interface in it (veth peers too).
        if let Err(e) = sh("ip", &["netns", "del", &self.name]) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// Kills a background process when dropped, pass or fail.
pub struct Background(pub std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `iperf3 -c server_ip client_args...` in `client` against a one-shot server started in
/// `server`, and returns the client's output. The server never outlives the call.
pub fn iperf3(
    server: &Netns,
    client: &Netns,
    server_ip: &str,
    client_args: &[&str],
) -> anyhow::Result<String> {
    let _server = Background(
        server
            .command("iperf3")
            .args(["-s", "-1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start iperf3 -s: {e}"))?,
    );
    crate::wait_until(
        std::time::Duration::from_secs(5),
        || {
            server
                .exec("ss", &["-Hltn", "sport = :5201"])
                .is_ok_and(|listening| !listening.trim().is_empty())
        },
        "iperf3 -s to listen on port 5201",
    )?;
    let mut args = vec!["-c", server_ip, "--connect-timeout", "3000"];
    args.extend_from_slice(client_args);
    client.exec("iperf3", &args)
}

/// A `ping -i 0.01` running in the background; [`PingRun::finish`] reads its summary.
pub struct PingRun(std::process::Child);

/// What a ping run saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingSummary {
    pub sent: u32,
    pub received: u32,
    /// ping's own summary line, for messages.
    pub line: String,
}

impl PingSummary {
    pub fn lost(&self) -> u32 {
        self.sent.saturating_sub(self.received)
    }
}

impl Netns {
    /// Starts `count` pings every 10 ms to `to` from this namespace.
    pub fn background_ping(&self, to: &str, count: u32) -> anyhow::Result<PingRun> {
        self.background_ping_every(to, count, "0.01")
    }

    /// Starts `count` pings every `interval` seconds (ping's `-i`) to `to`.
    pub fn background_ping_every(
        &self,
        to: &str,
        count: u32,
        interval: &str,
    ) -> anyhow::Result<PingRun> {
        let child = self
            .command("ping")
            .args([
                "-q",
                "-i",
                interval,
                "-W",
                "1",
                "-c",
                &count.to_string(),
                to,
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        Ok(PingRun(child))
    }
}

impl PingRun {
    /// Stops the pings early (ping still prints its summary).
    pub fn interrupt(&self) {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
    }

    /// Waits for the run to end and parses its summary.
    pub fn finish(self) -> anyhow::Result<PingSummary> {
        let out = self.0.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .ok_or_else(|| anyhow::anyhow!("no ping summary in {text:?}"))?
            .to_string();
        let numbers: Vec<u32> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        match numbers.as_slice() {
            [sent, received, ..] => Ok(PingSummary {
                sent: *sent,
                received: *received,
                line,
            }),
            _ => anyhow::bail!("cannot read {line:?}"),
        }
    }
}
