#!/bin/bash
# build-initramfs.sh KERNEL_DIR [OUT]
# Builds a gzip'd newc initramfs (busybox + modules for a virtio-9p root + overlay)
# for the kernel unpacked in KERNEL_DIR (dpkg-deb -x of linux-image-*), default OUT=KERNEL_DIR/initrd.gz
set -euo pipefail
KDIR=$(cd "$1" && pwd); OUT=${2:-$KDIR/initrd.gz}
HERE=$(cd "$(dirname "$0")" && pwd)
MODROOT=$KDIR; [ -d "$KDIR/lib/modules" ] || MODROOT=$KDIR/usr   # trixie: /usr/lib/modules
KV=$(ls "$MODROOT/lib/modules" | head -1)
[ -f "$MODROOT/lib/modules/$KV/modules.dep" ] || /usr/sbin/depmod -b "$MODROOT" "$KV"
BB=/bin/busybox
# The list is read once: `grep -q` leaving a pipe early would fail the pipeline (pipefail).
applets=$("$BB" --list)
for a in sh insmod mount switch_root stty; do grep -qx "$a" <<< "$applets" || { echo "busybox lacks $a" >&2; exit 1; }; done

T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
mkdir -p "$T"/{bin,dev,proc,sys,lower,ovl,newroot,mods}
cp "$BB" "$T/bin/busybox"
# Modules in load order (modprobe resolves deps; prints "builtin X" for built-ins, which we skip).
# virtio_pci: transport, 9pnet_virtio/9p: the root share, overlay: writable tmpfs layer over it.
/usr/sbin/modprobe -d "$MODROOT" -S "$KV" -a --show-depends virtio_pci 9pnet_virtio 9p overlay \
  | awk '$1=="insmod"{print $2}' | awk '!seen[$0]++' > "$T/list"
: > "$T/mods/order"
while read -r ko; do
  b=$(basename "$ko")
  case "$b" in                     # busybox insmod reads raw ELF only: decompress here
    *.ko.xz)  xz -dc "$ko" > "$T/mods/${b%.xz}";   b=${b%.xz} ;;
    *.ko.zst) zstd -qdc "$ko" > "$T/mods/${b%.zst}"; b=${b%.zst} ;;
    *.ko.gz)  gzip -dc "$ko" > "$T/mods/${b%.gz}";  b=${b%.gz} ;;
    *)        cp "$ko" "$T/mods/$b" ;;
  esac
  echo "$b" >> "$T/mods/order"
done < "$T/list"
echo "$KV" > "$T/kver"
cp "$HERE/init" "$T/init"; chmod 755 "$T/init"
(cd "$T" && rm list && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -6) > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
# Uncompressed vmlinux for qemu's PVH ELF boot (saves ~5 s xz / ~1.5 s zstd decompression under
# TCG): the first xz or zstd stream in the bzImage that decompresses to an ELF file.
extract_vmlinux() {
  local img=$1 out=$2 magic tool off
  for pair in '\xfd7zXZ\x00:xz' '\x28\xb5\x2f\xfd:zstd'; do
    magic=${pair%:*}; tool=${pair##*:}
    for off in $(LC_ALL=C grep -obUaP "$magic" "$img" | cut -d: -f1); do
      tail -c +$((off + 1)) "$img" | "$tool" -dcq 2>/dev/null > "$out.tmp"
      if [ "$(head -c 4 "$out.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then mv "$out.tmp" "$out"; return 0; fi
    done
  done
  rm -f "$out.tmp"; return 1
}
[ -f "$KDIR/vmlinux" ] || extract_vmlinux "$KDIR"/boot/vmlinuz-"$KV" "$KDIR/vmlinux" || true
echo "$OUT: kernel $KV, modules: $(tr '\n' ' ' < "$T/mods/order")($(du -h "$OUT" | cut -f1))"
