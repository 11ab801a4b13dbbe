#!/usr/bin/env bash
# Builds the seed inputs of the fuzz targets (fuzz/corpus/TARGET/seed-*) with the real tools:
# the smallest volumes mkfs makes, each holding a few files, a directory and a link, the
# partition tables sgdisk and sfdisk write, and strata images of them. Seeds are kept small
# (the fuzzer mutates every byte of an input), so they are committed; rerun to rebuild.
#
# Needs: dosfstools + mtools, e2fsprogs, ntfs-3g (mkntfs, ntfscp), exfatprogs, gdisk,
# fdisk, zstd, attr, and a built strata (STRATA=path, default target/debug/strata). The
# richer volumes written through ntfs-3g and exfat-fuse need root (FUSE mounts); without
# it they are left out with a note. Every seed stays under 4 MiB (fuzz/run.sh's -max_len).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
STRATA=${STRATA:-../target/debug/strata}
export TZ=UTC SOURCE_DATE_EPOCH=1767225600
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
c=corpus
mkdir -p $c/{container,chain,partition,used_ntfs,used_ext,used_fat,used_exfat,vfs_walk,vfs_cat}
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
ex=../fixtures/third-party/obhq-exfat/exfat.img.zst
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
# Richer volumes, written by each filesystem's own driver or tool, with the structures real
# disks have and the tiny ones above lack: big directories (index allocation, htree,
# multi-cluster FAT directories), long names, non-resident, sparse and compressed data,
# named streams, extended attributes, inline data, fast and slow symlinks, hard links,
# names that differ only in case.
rich=$tmp/rich
mkdir -p $rich/many $rich/deep/er/still
for i in $(seq 1 60); do printf 'entry %s\n' $i > "$rich/many/a file with a long name number $i.txt"; done
head -c 70000 /dev/urandom > $rich/random.bin
printf 'x' > $rich/one-byte
: > $rich/empty
printf 'deep\n' > $rich/deep/er/still/file.txt
seed() { # seed NAME FILE TARGET...: copies FILE as seed-NAME into each TARGET's corpus
  local name=$1 file=$2
  shift 2
  local size
  size=$(stat -c %s "$file")
  if [ "$size" -gt $((4 << 20)) ]; then
    echo "seed $name is $size bytes, over 4 MiB" >&2
    exit 1
  fi
  for t in "$@"; do cp "$file" $c/$t/seed-$name; done
}

# ext4 (1 KiB blocks) by mke2fs -d: extents, inline data, xattrs, fast and slow symlinks,
# a hard link, a sparse file, a directory turned into an htree by e2fsck -D.
ext=$tmp/exttree
cp -a $rich $ext
setfattr -n user.comment -v 'an extended attribute' $ext/random.bin
setfattr -n user.big -v "$(head -c 300 /dev/zero | tr '\0' 'v')" $ext/one-byte
ln -s random.bin $ext/fast-link
ln -s "$(printf 'deep/er/still/%.0s' 1 2 3 4 5 6)file.txt" $ext/slow-link
ln $ext/random.bin $ext/hard-link
truncate -s 300K $ext/sparse && printf 'end' | dd of=$ext/sparse bs=1 seek=200000 conv=notrunc status=none
# Inline data is not browsable yet, so that one is not a walk seed (the walk's must be).
for v in "ext4-1k ^has_journal,metadata_csum 1024 used_ext,vfs_walk,vfs_cat" \
  "ext4-inline inline_data,^has_journal 1024 used_ext,vfs_cat" \
  "ext4-4k ^has_journal,64bit 4096 used_ext,vfs_walk,vfs_cat"; do
  set -- $v
  rm -f $tmp/rich-ext.img
  mke2fs -q -F -t ext4 -O "$2" -b "$3" -N 128 -E root_owner=0:0 -d $ext $tmp/rich-ext.img 1600k
  e2fsck -fyD $tmp/rich-ext.img >/dev/null 2>&1 || true
  seed "$1" $tmp/rich-ext.img ${4//,/ }
done

# ext3 with TEA-hashed htree directories and 128-byte inodes: the third-party ext4-view
# image, its journal dropped and the volume shrunk to fit (the others of that set stay
# over 4 MiB even shrunk).
e3=../fixtures/third-party/ext4-view/test_disk_ext3.bin.zst
if [ -f $e3 ]; then
  zstd -qdc $e3 > $tmp/e3.img
  tune2fs -O ^has_journal $tmp/e3.img >/dev/null
  e2fsck -fy $tmp/e3.img >/dev/null 2>&1 || true
  resize2fs -M $tmp/e3.img >/dev/null 2>&1
  truncate -s $(($(dumpe2fs -h $tmp/e3.img 2>/dev/null | awk '/^Block count/{print $3}') * 1024)) $tmp/e3.img
  seed ext4-view-ext3-htree $tmp/e3.img used_ext vfs_walk vfs_cat
fi

# FAT16 filled by mtools: long names, a directory of several clusters.
rm -f $tmp/rich-fat.img
mkfs.fat -C -F 16 -s 1 -S 512 -i 12345678 -n RICH $tmp/rich-fat.img 2200 >/dev/null 2>&1
mcopy -s -i $tmp/rich-fat.img $rich/* ::/
seed fat16 $tmp/rich-fat.img used_fat vfs_walk vfs_cat
# FAT32: mtools writes only volumes of 65525 clusters or more (33 MiB here), so the
# volume is filled at that size, one FAT, then cut to 2 MiB with its sector count set to
# match: the files sit in the first clusters, and the FAT keeps its full size (larger
# than the clusters need, which FAT allows).
rm -f $tmp/rich-fat.img
mkfs.fat -C -F 32 -f 1 -s 1 -S 512 -i 12345678 -n RICH $tmp/rich-fat.img 34000 >/dev/null
mcopy -s -i $tmp/rich-fat.img $rich/* ::/
truncate -s 2M $tmp/rich-fat.img
printf '%08x' 4096 | sed 's/\(..\)\(..\)\(..\)\(..\)/\\x\4\\x\3\\x\2\\x\1/' | xargs -0 printf \
  | dd of=$tmp/rich-fat.img bs=1 seek=32 conv=notrunc status=none
# Not a walk seed: that target's seeds must all be browsable, and the browser refuses a
# FAT32 this small (fatfs decides the FAT type by the cluster count).
seed fat32 $tmp/rich-fat.img used_fat vfs_cat

# The third-party volumes of the test set that fit: ntfs-rs (mkntfs, 2 MiB), rust-fatfs
# FAT12 and FAT16, the GPT crate's disk.
td=../fixtures/third-party
unz() { [ -f "$1" ] && zstd -qdc "$1" > "$2"; }
unz $td/ntfs-rs/testfs1.zst $tmp/t.img && seed ntfs-rs-testfs1 $tmp/t.img used_ntfs vfs_walk vfs_cat
unz $td/rust-fatfs/fat12.img.zst $tmp/t.img && seed rust-fatfs-fat12 $tmp/t.img used_fat vfs_walk vfs_cat
unz $td/rust-fatfs/fat16.img.zst $tmp/t.img && seed rust-fatfs-fat16 $tmp/t.img used_fat vfs_walk vfs_cat
[ -f $td/gpt-crate/gpt-disk.img ] && seed gpt-crate $td/gpt-crate/gpt-disk.img partition

# NTFS and exFAT written through their FUSE drivers (root only).
if [ "$(id -u)" = 0 ] && [ -e /dev/fuse ]; then
  mnt=$tmp/mnt
  mkdir -p $mnt
  # NTFS by ntfs-3g: a compressed directory, named streams, a sparse file, a symlink and
  # a hard link, case pairs (POSIX namespace), 60 entries (an index allocation).
  truncate -s 3M $tmp/rich-ntfs.img
  mkntfs -q -F -f -c 512 -s 512 -L RICH $tmp/rich-ntfs.img >/dev/null 2>&1
  ntfs-3g -o compression $tmp/rich-ntfs.img $mnt
  cp -r $rich/. $mnt/
  mkdir $mnt/packed
  setfattr -h -v 0x00000800 -n system.ntfs_attrib_be $mnt/packed
  head -c 40000 /dev/zero | tr '\0' 'c' > $mnt/packed/compressed.txt
  setfattr -n user.stream -v 'named stream data' $mnt/random.bin
  truncate -s 400K $mnt/sparse && printf 'end' | dd of=$mnt/sparse bs=1 seek=300000 conv=notrunc status=none
  ln -s random.bin $mnt/link
  ln $mnt/random.bin $mnt/hard
  printf 'lower\n' > $mnt/case.txt
  printf 'UPPER\n' > $mnt/CASE.txt
  umount $mnt
  seed ntfs3g $tmp/rich-ntfs.img used_ntfs vfs_walk vfs_cat

  # exFAT by exfat-fuse: long names, a directory of several clusters, empty and
  # multi-cluster files.
  truncate -s 2M $tmp/rich-exfat.img
  mkfs.exfat -b 4K -c 4K -L RICH $tmp/rich-exfat.img >/dev/null
  # exfat-fuse mounts block devices only.
  lo=$(losetup -f --show $tmp/rich-exfat.img)
  mount.exfat-fuse $lo $mnt 2>/dev/null
  cp -r $rich/. $mnt/
  umount $mnt
  losetup -d $lo
  seed exfat-fuse $tmp/rich-exfat.img used_exfat vfs_walk vfs_cat
else
  echo "note: not root: the ntfs-3g and exfat-fuse seeds are left out" >&2
fi

# The walk's seeds are the cat target's too.
for f in $c/vfs_walk/seed-*; do cp -n "$f" $c/vfs_cat/; done

# Catalogs: the uncompressed catalog section of an image of each walk seed.
mkdir -p $c/catalog
for f in $c/vfs_walk/seed-*; do
  "$STRATA" create --quiet "$f" $tmp/cat.strata --force
  python3 - $tmp/cat.strata $tmp/cat.payload <<'PY'
import struct, sys
d = open(sys.argv[1], 'rb').read()
index = struct.unpack_from('<Q', d, len(d) - 56)[0]
at = struct.unpack_from('<Q', d, index + 104)[0]
assert d[at:at + 8] == b'STRATCAT', 'no catalog'
method, stored = d[at + 12], struct.unpack_from('<Q', d, at + 16)[0]
payload = d[at + 64:at + 64 + stored]
open(sys.argv[2], 'wb').write(payload if method == 0 else b'')
open(sys.argv[2] + '.zst', 'wb').write(payload if method == 1 else b'')
PY
  if [ -s $tmp/cat.payload ]; then cp $tmp/cat.payload "$c/catalog/${f##*/}"
  else zstd -dqf $tmp/cat.payload.zst -o "$c/catalog/${f##*/}"; fi
done
du -sh $c
