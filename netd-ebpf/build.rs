//! Rebuild the programs when bpf-linker changes (it does the final link and BTF emission).
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
