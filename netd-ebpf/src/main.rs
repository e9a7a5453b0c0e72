//! netd's TC programs. One file per hook, and one per walk that more than one hook enters
//! (`macvlan.rs`); packet access, counters and maps each in their own module; the header logic
//! itself is in `netd_common::packet`, where host tests cover it.
#![no_std]
#![no_main]

mod deliver;
mod events;
mod from_endpoint;
mod from_parent;
mod from_tunnel;
mod from_uplink;
mod gateway;
mod inner;
mod macvlan;
mod maps;
mod null;
mod probe;
mod redirect;
mod room;
mod sender;
mod skb;
mod to_parent;
mod to_uplink;
mod traffic;
mod verdict;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects code that could get here.
    loop {}
}

// GPL-compatible: bpf_fib_lookup and bpf_redirect_neigh are GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
