#![no_std]
// The programs live in the `netd-ebpf` binary target (src/main.rs).
