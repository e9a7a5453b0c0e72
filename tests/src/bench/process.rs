//! Programs run inside a container's network namespace: servers in the background (killed when
//! their guard drops), clients waited for against a deadline and the Ctrl-C flag.
//!
//! Everything starts through `nsenter --net=FILE`, which takes any namespace file (a
//! `/run/netns/NAME` or a Docker container's `/proc/PID/ns/net`), keeps this process's mounts,
//! and execs the program, so the child's pid is the program's own and killing it is exact.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::interrupt;

/// `nsenter --net=NETNS -- PROGRAM ARGS...`
pub fn command_in(netns: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", netns.display()))
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// A background program that is killed and reaped when this drops.
pub struct Background {
    child: Child,
}

impl Background {
    pub fn spawn(netns: &Path, program: &str, args: &[&str]) -> anyhow::Result<Self> {
        let child = command_in(netns, program, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {program}"))?;
        Ok(Self { child })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Already gone (iperf3 -s -1 exits after one test) is fine; a zombie is not: reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a program to completion and returns its stdout. It is killed when `deadline` passes or
/// Ctrl-C arrives; a non-zero exit fails with the end of its output.
pub fn run(
    netns: &Path,
    program: &str,
    args: &[&str],
    deadline: Duration,
) -> anyhow::Result<String> {
    let mut child = command_in(netns, program, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    // Drained on threads: iperf3's JSON can outgrow a pipe buffer while we poll for the exit.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if interrupt::interrupted() || started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            interrupt::check()?;
            anyhow::bail!("{program} did not finish within {} s", deadline.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if !status.success() {
        interrupt::check()?;
        anyhow::bail!(
            "{program} {} failed ({status}): {}",
            args.join(" "),
            tail(&err, &out)
        );
    }
    Ok(out)
}

fn drain<R: std::io::Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// The last few hundred characters of whichever stream says something (iperf3 -J reports its
/// errors on stdout).
fn tail(err: &str, out: &str) -> String {
    let text = if err.trim().is_empty() { out } else { err }.trim();
    let start = text.char_indices().rev().nth(300).map_or(0, |(i, _)| i);
    text[start..].replace('\n', " ")
}

/// Waits until something in `netns` listens on `port` (TCP, or a bound UDP socket).
pub fn wait_listening(netns: &Path, port: u16, udp: bool) -> anyhow::Result<()> {
    let flags = if udp { "-Hlun" } else { "-Hltn" };
    let filter = format!("sport = :{port}");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        interrupt::check()?;
        let out = command_in(netns, "ss", &[flags, &filter])
            .output()
            .context("cannot run ss")?;
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    anyhow::bail!("nothing listens on port {port} after 5 s")
}
