//! Packages from other Debian suites (trixie's Docker, bullseye's Consul, and later kernels),
//! unpacked into a tools folder of the workspace. The system's apt sources and package database
//! are never touched: apt runs with a private sources list, lists and cache under the tools
//! folder, built from the mirror the system's own sources name, and `dpkg-deb -x` unpacks.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::cmd::{status, workspace_root};

/// Where the tools go: `NETD_TOOLS_DIR`, else `target/tools` of the workspace (the tests look
/// in the same place).
pub fn tools_dir() -> PathBuf {
    std::env::var_os("NETD_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("tools"))
}

/// The Debian mirror of the system's apt sources (`URIs:` of deb822 files, or a `deb` line).
fn system_mirror() -> String {
    let mut texts = Vec::new();
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        for entry in entries.flatten() {
            if entry
                .path()
                .extension()
                .is_some_and(|e| e == "sources" || e == "list")
            {
                texts.push(fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
    }
    texts.push(fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    for text in &texts {
        for line in text.lines().map(str::trim) {
            let uri = line
                .strip_prefix("URIs:")
                .map(str::trim)
                .or_else(|| {
                    let rest = line.strip_prefix("deb ")?;
                    rest.split_whitespace().find(|w| w.starts_with("http"))
                })
                .and_then(|u| u.split_whitespace().next());
            if let Some(uri) = uri
                && uri.ends_with("/debian")
            {
                return uri.to_string();
            }
        }
    }
    "http://deb.debian.org/debian".into()
}

/// The apt options that keep apt off the system's own sources, lists and cache.
fn private_apt(state: &Path) -> Vec<String> {
    let path = |p: &str| state.join(p).display().to_string();
    vec![
        format!("-o=Dir::Etc::sourcelist={}", path("sources.list")),
        "-o=Dir::Etc::sourceparts=/nonexistent".into(),
        format!("-o=Dir::State::Lists={}", path("lists")),
        format!("-o=Dir::Cache={}", path("cache")),
        "-o=Debug::NoLocking=1".into(),
        "-o=APT::Sandbox::User=root".into(),
        "-qq".into(),
    ]
}

/// Unpacks `packages` of Debian `suite` into `dest` unless a previous run did (the versions
/// unpacked are recorded in `dest/.unpacked`). Returns what it did.
pub fn unpack(suite: &str, packages: &[&str], dest: &Path) -> anyhow::Result<String> {
    unpack_resolved(suite, dest, |_| {
        Ok(packages.iter().map(|p| (*p).to_string()).collect())
    })
}

/// Unpacks the package `metapackage` of `suite` depends on whose name starts with `prefix`
/// (`linux-image-amd64` -> `linux-image-6.1.0-50-amd64`): the metapackage itself is empty.
pub fn unpack_dependency(
    suite: &str,
    metapackage: &str,
    prefix: &str,
    dest: &Path,
) -> anyhow::Result<String> {
    unpack_resolved(suite, dest, |apt| {
        let shown = crate::cmd::output(
            Command::new("apt-cache")
                .args(apt)
                .args(["depends", metapackage]),
        )
        .with_context(|| format!("apt-cache depends {metapackage} ({suite}) failed"))?;
        let name = shown
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .find(|p| p.starts_with(prefix))
            .with_context(|| format!("{metapackage} ({suite}) depends on no {prefix}*"))?;
        Ok(vec![name.to_string()])
    })
}

/// What a previous [`unpack`] left in `dest` (`None`: nothing, or an unfinished unpack).
pub fn unpacked(dest: &Path) -> Option<String> {
    let done = fs::read_to_string(dest.join(".unpacked")).ok()?;
    Some(done.trim().replace('\n', ", "))
}

/// [`unpack`] with the package list found once apt knows `suite` (`packages` gets apt's options).
fn unpack_resolved(
    suite: &str,
    dest: &Path,
    packages: impl FnOnce(&[String]) -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<String> {
    if let Some(done) = unpacked(dest) {
        return Ok(format!("present ({done})"));
    }
    let marker = dest.join(".unpacked");
    let state = tools_dir().join(format!("apt-{suite}"));
    for sub in ["lists/partial", "cache/archives/partial", "debs"] {
        fs::create_dir_all(state.join(sub))
            .with_context(|| format!("cannot create {}", state.display()))?;
    }
    let mirror = system_mirror();
    fs::write(
        state.join("sources.list"),
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {suite} main\n"
        ),
    )?;
    let apt = private_apt(&state);
    status(Command::new("apt-get").args(&apt).arg("update"))?;
    let packages = packages(&apt)?;
    eprintln!(
        "      fetching {} from Debian {suite} ({mirror})",
        packages.join(" ")
    );
    let debs = state.join("debs");
    for old in fs::read_dir(&debs)?.flatten() {
        let _ = fs::remove_file(old.path());
    }
    status(
        Command::new("apt-get")
            .args(&apt)
            .arg("download")
            .args(&packages)
            .current_dir(&debs),
    )?;
    let _ = fs::remove_dir_all(dest);
    fs::create_dir_all(dest)?;
    let mut unpacked = Vec::new();
    for deb in fs::read_dir(&debs)?.flatten() {
        let path = deb.path();
        status(Command::new("dpkg-deb").arg("-x").arg(&path).arg(dest))?;
        unpacked.push(deb.file_name().to_string_lossy().into_owned());
    }
    if unpacked.len() < packages.len() {
        bail!(
            "only {} of {} packages arrived",
            unpacked.len(),
            packages.len()
        );
    }
    unpacked.sort();
    fs::write(&marker, unpacked.join("\n") + "\n")?;
    Ok(format!("unpacked {}", unpacked.join(", ")))
}
