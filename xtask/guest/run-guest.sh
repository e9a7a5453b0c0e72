#!/bin/bash
# run-guest.sh KERNEL_DIR COMMAND...
# Boots the Debian kernel unpacked in KERNEL_DIR under qemu (TCG) with the host's / shared read-only
# over virtio-9p (seen through a tmpfs overlay: writes stay in the guest), runs COMMAND (via
# bash, in the current directory if it exists in the guest), streams its stdout/stderr, and exits
# with its exit status (125: guest/boot failure, 124: timeout).
# Env: RUN_GUEST_TIMEOUT (s, default 900)  RUN_GUEST_MEM (MiB, 2048)  RUN_GUEST_SMP (2)
#      RUN_GUEST_RW="dir1 dir2"  host dirs mounted writable at the same path in the guest
#      RUN_GUEST_CONSOLE=1  show the guest console (kernel log) on stderr
#      RUN_GUEST_KERNEL=path  kernel image (default KERNEL_DIR/vmlinux if present, else boot/vmlinuz-*)
#      RUN_GUEST_APPEND="..." extra kernel args (e.g. netd.cache=none netd.msize=... netd.overlay=0)
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: $0 KERNEL_DIR COMMAND..." >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
# The physical path: the guest's init looks for it before the shared root is its root, where a
# symlink on the way (a tools dir linked from another checkout) would not resolve.
KDIR=$(cd "$1" && pwd -P) || exit 2; shift
VMLINUZ=$(ls "$KDIR"/boot/vmlinuz-* 2>/dev/null | head -1); [ -n "$VMLINUZ" ] || { echo "no vmlinuz in $KDIR/boot" >&2; exit 2; }
# Prefer an extracted vmlinux (PVH ELF entry: skips in-guest xz/zstd decompression, slow under TCG).
KERNEL=${RUN_GUEST_KERNEL:-}; [ -n "$KERNEL" ] || { [ -f "$KDIR/vmlinux" ] && KERNEL=$KDIR/vmlinux || KERNEL=$VMLINUZ; }
INITRD=$KDIR/initrd.gz
if [ ! -f "$INITRD" ] || [ "$HERE/init" -nt "$INITRD" ] || [ "$HERE/build-initramfs.sh" -nt "$INITRD" ]; then
  "$HERE/build-initramfs.sh" "$KDIR" >&2 || exit 125
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/run-guest.XXXXXX"); QPID=
cleanup() { [ -n "$QPID" ] && kill "$QPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT; trap 'exit 130' INT TERM
# Per-run cpio with the command script, appended to the base initrd (the kernel unpacks concatenated archives).
mkdir "$W/c"
{ echo '#!/bin/bash'; printf 'cd %q 2>/dev/null || { echo "run-guest: cwd not in guest (it is outside the shared root), using /" >&2; cd /; }\n' "$PWD"; printf '%q ' "$@"; echo; } > "$W/c/netd-cmd.sh"
(cd "$W/c" && echo netd-cmd.sh | cpio --quiet -o -H newc -R 0:0) > "$W/cmd.cpio"
# An uncompressed cpio appended after a gzip member must start 4-byte aligned (kernel skips zero padding).
{ cat "$INITRD"; head -c $(( (512 - $(stat -c %s "$INITRD") % 512) % 512 )) /dev/zero; cat "$W/cmd.cpio"; } > "$W/initrd"
RWARGS=(); RWSPEC=; i=0
for d in ${RUN_GUEST_RW:-}; do d=$(cd "$d" && pwd) || exit 2
  RWARGS+=(-fsdev "local,id=rw$i,path=$d,security_model=none,multidevs=remap"
           -device "virtio-9p-pci,fsdev=rw$i,mount_tag=rw$i"); RWSPEC+="${RWSPEC:+,}rw$i:$d"; i=$((i+1)); done
APPEND="console=ttyS0 quiet panic=-1 8250.nr_uarts=4 netd.kdir=$KDIR ${RWSPEC:+netd.rw=$RWSPEC} ${RUN_GUEST_APPEND:-}"
touch "$W/console"
# Guest stdout/stderr arrive on ttyS1/ttyS2 -> FIFOs (qemu opens NAME.in/NAME.out O_RDWR) -> our stdout/stderr.
# (Don't hand qemu /dev/fd/1: it reopens the file with its own offset and clobbers a non-O_APPEND stdout.)
for f in out err; do mkfifo "$W/$f.in" "$W/$f.out"; done
cat "$W/out.out" & C1=$!; cat "$W/err.out" >&2 & C2=$!
timeout "${RUN_GUEST_TIMEOUT:-900}" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -machine pc -smp "${RUN_GUEST_SMP:-2}" -m "${RUN_GUEST_MEM:-2048}" \
  -display none -monitor none -no-reboot -nic none -nodefaults -vga none \
  -kernel "$KERNEL" -initrd "$W/initrd" -append "$APPEND" \
  -fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=root,mount_tag=hostroot "${RWARGS[@]}" \
  -chardev file,id=con,path="$W/console" -serial chardev:con \
  -chardev pipe,id=out,path="$W/out" -serial chardev:out \
  -chardev pipe,id=err,path="$W/err" -serial chardev:err \
  </dev/null 2>"$W/qemu.err" &
QPID=$!
[ "${RUN_GUEST_CONSOLE:-0}" = 1 ] && { tail -n +1 -f --pid=$QPID "$W/console" >&2 & }
wait "$QPID"; QRC=$?; QPID=
# If qemu never opened the FIFOs, cat still blocks in open(): a brief O_RDWR open releases it (EOF after drain).
for f in out err; do exec 4<>"$W/$f.out"; exec 4>&-; done; wait $C1 $C2
RC=$(grep -ao 'NETD-GUEST-EXIT=[0-9]\+' "$W/console" | tail -1 | cut -d= -f2)
[ -s "$W/qemu.err" ] && sed 's/^/run-guest: qemu: /' "$W/qemu.err" >&2
if [ -n "$RC" ]; then exit "$RC"; fi
[ "$QRC" = 124 ] && { echo "run-guest: timeout after ${RUN_GUEST_TIMEOUT:-900}s" >&2; RC=124; } || RC=125
echo "run-guest: no exit marker (qemu rc=$QRC); console tail:" >&2; tail -n 40 "$W/console" >&2
exit $RC
