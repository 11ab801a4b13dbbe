#!/usr/bin/env bash
# Builds the seed inputs of the fuzz targets (fuzz/corpus/TARGET/seed-*) with the real tools:
# the smallest volumes mkfs makes, each holding a few files, a directory and a link, the
# partition tables sgdisk and sfdisk write, and strata images of them. Seeds are kept small
# (the fuzzer mutates every byte of an input), so they are committed; rerun to rebuild.
#
# Needs: dosfstools + mtools, e2fsprogs, ntfs-3g (mkntfs, ntfscp), exfatprogs, gdisk,
# fdisk, zstd, and a built strata (STRATA=path, default target/debug/strata).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
STRATA=${STRATA:-../target/debug/strata}
export TZ=UTC SOURCE_DATE_EPOCH=1767225600
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
c=corpus
mkdir -p $c/{container,chain,partition,used_ntfs,used_ext,used_fat,used_exfat,vfs_walk}
rm -f $c/*/seed-*

# A small tree: files of a few sizes, a directory, a link.
tree=$tmp/tree
mkdir -p $tree/dir/sub
printf 'hello, strata\n' > $tree/hello.txt
head -c 5000 /dev/zero | tr '\0' 'a' > $tree/dir/five-k.txt
printf 'deep\n' > $tree/dir/sub/deep.txt
ln -s dir/sub/deep.txt $tree/link

# FAT12, 128 KiB, filled with mtools.
mkfs.fat -C -i 12345678 -n SEED $tmp/fat.img 128 >/dev/null
mcopy -s -i $tmp/fat.img $tree/hello.txt $tree/dir ::/
cp $tmp/fat.img $c/used_fat/seed-fat12
cp $tmp/fat.img $c/vfs_walk/seed-fat12

# ext4 without a journal, 256 KiB of 1 KiB blocks, filled by mke2fs -d.
mke2fs -q -t ext4 -O ^has_journal -b 1024 -N 32 -U 11111111-2222-3333-4444-555555555555 \
  -E root_owner=0:0 -d $tree $tmp/ext.img 256k
cp $tmp/ext.img $c/used_ext/seed-ext4
cp $tmp/ext.img $c/vfs_walk/seed-ext4
mke2fs -q -t ext2 -b 1024 -N 32 -E root_owner=0:0 -d $tree $tmp/ext2.img 128k
cp $tmp/ext2.img $c/used_ext/seed-ext2

# NTFS, 1.1 MiB (mkntfs makes nothing under 1 MiB), files written with ntfscp.
truncate -s 1100K $tmp/ntfs.img
mkntfs -q -F -f -T -c 512 -s 512 -L SEED $tmp/ntfs.img >/dev/null 2>&1
ntfscp -q $tmp/ntfs.img $tree/hello.txt hello.txt 2>/dev/null || ntfscp $tmp/ntfs.img $tree/hello.txt hello.txt
cp $tmp/ntfs.img $c/used_ntfs/seed-ntfs
cp $tmp/ntfs.img $c/vfs_walk/seed-ntfs

# exFAT: the 1 MiB third-party image of the test set when present, else an empty volume.
ex=../../shared/testdata/obhq-exfat/exfat.img.zst
if [ -f $ex ]; then
  zstd -qdc $ex > $tmp/exfat.img
else
  truncate -s 1M $tmp/exfat.img
  mkfs.exfat -q -L SEED $tmp/exfat.img >/dev/null
fi
cp $tmp/exfat.img $c/used_exfat/seed-exfat
cp $tmp/exfat.img $c/vfs_walk/seed-exfat

# Partition tables: GPT with two partitions, MBR with an extended partition and logicals.
truncate -s 128K $tmp/gpt.img
sgdisk -q -a 1 -n 1:34:+16K -t 1:0700 -n 2:0:+16K -t 2:8300 -c 2:root $tmp/gpt.img
cp $tmp/gpt.img $c/partition/seed-gpt
truncate -s 128K $tmp/mbr.img
printf 'label: dos\nlabel-id: 0x12345678\nstart=1, size=32, type=c\nstart=40, size=180, type=5\nstart=42, size=30, type=83\nstart=80, size=30, type=7\n' \
  | sfdisk -q $tmp/mbr.img
cp $tmp/mbr.img $c/partition/seed-mbr

# A whole disk for the walk: MBR with the FAT12 volume as its partition.
truncate -s 160K $tmp/disk.img
printf 'label: dos\nstart=32, size=256, type=1\n' | sfdisk -q $tmp/disk.img
dd if=$tmp/fat.img of=$tmp/disk.img bs=512 seek=32 conv=notrunc status=none
cp $tmp/disk.img $c/vfs_walk/seed-mbr-fat12
cp $tmp/disk.img $c/partition/seed-mbr-fat12

# Images: the tiny one of docs/FORMAT.md, the FAT disk, and a parent/child pair.
head -c 16384 /dev/zero > $tmp/tiny.img
printf 'hello, strata!\n\n' | dd of=$tmp/tiny.img bs=4096 seek=1 conv=notrunc status=none
s() { "$STRATA" "$@" --quiet >/dev/null; }
s create $tmp/tiny.img $tmp/tiny.strata --uuid 00112233-4455-6677-8899-aabbccddeeff
s create $tmp/disk.img $tmp/disk.strata --uuid 00112233-4455-6677-8899-aabbccddee01
cp $tmp/tiny.strata $c/container/seed-tiny
cp $tmp/disk.strata $c/container/seed-fat-disk
printf 'changed\n' | dd of=$tmp/tiny.img bs=4096 seek=2 conv=notrunc status=none
s create $tmp/tiny.img $tmp/child.strata --incremental $tmp/tiny.strata \
  --uuid 00112233-4455-6677-8899-aabbccddee02
cp $tmp/child.strata $c/container/seed-child
# chain input: u32 LE length of the parent, the parent, the child.
python3 - "$tmp/tiny.strata" "$tmp/child.strata" $c/chain/seed-pair <<'PY'
import struct, sys
p = open(sys.argv[1], 'rb').read(); c = open(sys.argv[2], 'rb').read()
open(sys.argv[3], 'wb').write(struct.pack('<I', len(p)) + p + c)
PY
du -sh $c
