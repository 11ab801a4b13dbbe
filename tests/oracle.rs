//! Every test disk read by strata and by The Sleuth Kit, whose NTFS, ext, FAT and exFAT code
//! shares nothing with strata's: the same partitions, the same entries (type, size,
//! modification time) and the same bytes in every file, named stream and link target.
//!
//! Disks: the committed sample disk, every image in `fixtures/third-party`, and disks built
//! by `fixtures/make-disk.sh` with every filesystem it makes. Where the two readers disagree
//! and TSK is the one that is wrong, the difference is listed in [`KNOWN`] with the reason,
//! by disk, path and what differs: any other difference fails, and so does an entry of
//! [`KNOWN`] that no longer matches one (docs/RELIABILITY.md keeps the same list).
// TSK and the fixture scripts run on Unix.
#![cfg(unix)]

mod common;

use common::tsk::{self, Node};
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A difference TSK is known to get wrong: (disk, path from the filesystem's root with the
/// partition first (`p2/a/b`, or `/a/b` on a bare filesystem; `dir/*` for every entry
/// directly in `dir`), what differs, why).
const KNOWN: &[(&str, &str, &str, &str)] = &[
    (
        "ext4-view/test_disk1.bin.zst",
        "/encrypted_dir/*",
        "listed",
        "an fscrypt-encrypted directory, locked: strata refuses to list it without the key \
         and says so; TSK lists the ciphertext names",
    ),
    (
        "ext4-view/test_disk_4k_block_journal.bin.zst",
        "/*",
        "listed",
        "the filesystem needs journal recovery and its 773 directories exist only in the \
         journal: strata applies the journal as the kernel does (browse_ext.rs compares \
         with the kernel's replay); TSK reads the stale home blocks and lists lost+found only",
    ),
    (
        "ntfs-samples-msuhanov/ntfs-2m.raw.zst",
        "p1",
        "filesystem",
        "2 MiB clusters (sectors per cluster stored as a power of two, 244 = 2^12 sectors): \
         TSK 4.11 refuses clusters over 64 KiB (`invalid cluster size 244`); \
         browse.rs compares this volume with ntfs-3g's listing instead",
    ),
];

/// Files whose bytes TSK is not asked for, as it takes minutes to read them: (disk, path,
/// why). They are still listed and sized by TSK, and their content is checked elsewhere.
const SLOW: &[(&str, &str, &str)] = &[(
    "ext4-view/test_disk_ext2.bin.zst",
    "/big_file",
    "71,577,600 bytes mapped by ext2 indirect, double and triple indirect blocks: \
     TSK 4.11 walks such a block map in 80 s or more (icat, istat, tsk_recover alike); \
     browse.rs checks its sha256 against debugfs's listing",
)];

/// A disagreement between the two readers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Diff {
    disk: String,
    path: String,
    what: &'static str,
    tsk: String,
    strata: String,
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {}: TSK {} / strata {}",
            self.disk, self.path, self.what, self.tsk, self.strata
        )
    }
}

/// `src` (`.zst` or raw) as a raw file in `dir`; `zstd -d` writes the long zero runs of the
/// 1 GiB disks as holes.
fn unpack(src: &Path, dir: &Path) -> PathBuf {
    let name = src.file_name().unwrap().to_string_lossy();
    let out = dir.join(name.trim_end_matches(".zst"));
    if name.ends_with(".zst") {
        sh(
            "zstd",
            &["-qdf", src.to_str().unwrap(), "-o", out.to_str().unwrap()],
        );
    } else {
        std::fs::copy(src, &out).unwrap();
    }
    out
}

/// Every entry below `root` of `img` as strata reads it: `ls -R --json` for the listing,
/// `cp -r` for the files' bytes, `cat` for streams. Also returns what strata said on stderr.
fn strata_tree(img: &Path, root: &str, scratch: &Path) -> (BTreeMap<String, Node>, String) {
    let o = run(&[&"ls", &img, &root, &"-R", &"--json"]);
    let (code, out, mut errors) = outcome(&o);
    // 1: a file strata does not read; 3: damaged metadata.
    assert!(
        matches!(code, 0 | 1 | 3),
        "ls {root}: exit {code}: {errors}"
    );
    let copy = scratch.join("copy");
    let (_, _, cp_err) = outcome(&run(&[&"cp", &"-r", &"-q", &img, &root, &copy]));
    errors.push_str(&cp_err);
    let base = root.trim_end_matches('/');
    let mut tree = BTreeMap::new();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object a line");
        let path = v["path"].as_str().unwrap();
        let rel = path.strip_prefix(base).unwrap().to_string();
        let size = v["size"].as_u64().unwrap();
        let mtime = v["mtime"].as_i64();
        let (kind, content) = match v["type"].as_str().unwrap() {
            "file" => {
                let c = copy.join(rel.trim_start_matches('/'));
                let sha = match std::fs::symlink_metadata(&c) {
                    Ok(m) if m.is_file() => sha256(&c),
                    _ => "not copied".to_string(),
                };
                ('f', Some(sha))
            }
            "dir" => ('d', None),
            "symlink" => {
                let t = v["target"].as_str().unwrap_or_default();
                ('l', Some(hex_sha(t.as_bytes())))
            }
            other => (other.chars().next().unwrap(), None),
        };
        for st in v["streams"].as_array().into_iter().flatten() {
            let name = st["name"].as_str().unwrap();
            let o = run(&[&"cat", &img, &format!("{path}:{name}")]);
            let content = if o.status.success() {
                hex_sha(&o.stdout)
            } else {
                format!("cat error: {}", String::from_utf8_lossy(&o.stderr).trim())
            };
            tree.insert(
                format!("{rel}:{name}"),
                Node {
                    kind: 's',
                    size: st["size"].as_u64(),
                    mtime: None,
                    content: Some(content),
                },
            );
        }
        tree.insert(
            rel,
            Node {
                kind,
                size: (kind != 'd').then_some(size),
                mtime,
                content,
            },
        );
    }
    // Names that differ only in case from another in their directory are also read with
    // `cat PATH`, whose lookup must find the exact name first.
    let mut folded: BTreeMap<String, usize> = BTreeMap::new();
    for p in tree.keys() {
        *folded.entry(p.to_lowercase()).or_default() += 1;
    }
    for (p, node) in tree.iter_mut() {
        if node.kind != 'f' || folded[&p.to_lowercase()] < 2 {
            continue;
        }
        let o = run(&[&"cat", &img, &format!("{base}{p}")]);
        let by_cat = if o.status.success() {
            hex_sha(&o.stdout)
        } else {
            format!("cat error: {}", String::from_utf8_lossy(&o.stderr).trim())
        };
        if node.content.as_ref() != Some(&by_cat) {
            node.content = Some(format!("cp -r {} but cat {by_cat}", show(&node.content)));
        }
    }
    (tree, errors)
}

fn show<T: std::fmt::Debug>(x: &Option<T>) -> String {
    match x {
        Some(v) => format!("{v:?}"),
        None => "-".into(),
    }
}

/// Entry by entry differences of two trees of the filesystem `part` of `disk`.
fn compare(
    disk: &str,
    part: &str,
    tsk: &BTreeMap<String, Node>,
    strata: &BTreeMap<String, Node>,
) -> Vec<Diff> {
    let mut out = Vec::new();
    let d = |path: &str, what, t: String, s: String| Diff {
        disk: disk.to_string(),
        path: format!("{part}{path}"),
        what,
        tsk: t,
        strata: s,
    };
    let paths: BTreeSet<&String> = tsk.keys().chain(strata.keys()).collect();
    for p in paths {
        match (tsk.get(p), strata.get(p)) {
            (Some(t), None) => out.push(d(p, "listed", format!("{}", t.kind), "absent".into())),
            (None, Some(s)) => out.push(d(p, "listed", "absent".into(), format!("{}", s.kind))),
            (Some(t), Some(s)) => {
                if t.kind != s.kind {
                    out.push(d(p, "type", t.kind.to_string(), s.kind.to_string()));
                    continue;
                }
                if t.size != s.size {
                    out.push(d(p, "size", show(&t.size), show(&s.size)));
                }
                if t.mtime != s.mtime {
                    out.push(d(p, "mtime", show(&t.mtime), show(&s.mtime)));
                }
                if t.content != s.content {
                    out.push(d(p, "content", show(&t.content), show(&s.content)));
                }
            }
            (None, None) => unreachable!(),
        }
    }
    out
}

/// Reads `raw` (a whole disk or a bare filesystem) with both readers; returns every
/// difference, partition table included.
fn oracle(name: &str, raw: &Path, dir: &Path) -> Vec<Diff> {
    let img = dir.join(format!("{}.strata", name.replace('/', "_")));
    ok(run(&[&"create", &"--quiet", &raw, &img]));
    let info: serde_json::Value =
        serde_json::from_str(&ok(run(&[&"info", &"--json", &img]))).unwrap();
    let layout = &info["layout"];
    let mut diffs = Vec::new();
    let d = |path: &str, what, tsk: String, strata: String| Diff {
        disk: name.to_string(),
        path: path.to_string(),
        what,
        tsk,
        strata,
    };
    // (strata root, partition label for messages, byte offset)
    let mut filesystems = Vec::new();
    let tsk_parts = tsk::partitions(raw);
    if layout["table"].is_null() {
        if let Some(p) = &tsk_parts {
            diffs.push(d("", "table", format!("{p:?}"), "none".into()));
        }
        filesystems.push(("/".to_string(), String::new(), 0u64));
    } else {
        let strata_parts: Vec<(u64, u64)> = layout["table"]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["start"].as_u64().unwrap(), p["len"].as_u64().unwrap()))
            .collect();
        let mut mine = strata_parts.clone();
        mine.sort();
        let theirs = tsk_parts.clone().map(|mut p| {
            p.sort();
            p
        });
        if theirs.as_ref() != Some(&mine) {
            diffs.push(d("", "table", format!("{theirs:?}"), format!("{mine:?}")));
        }
        for p in layout["partitions"].as_array().unwrap() {
            let n = p["number"].as_u64().unwrap();
            let start = p["start"].as_u64().unwrap();
            let tsk_fs = tsk::fs_type(raw, start);
            match (p["fs"].as_str(), &tsk_fs) {
                (Some(_), Some(_)) => {
                    filesystems.push((format!("/p{n}"), format!("p{n}"), start));
                }
                (None, None) => {}
                (mine, theirs) => {
                    diffs.push(d(&format!("p{n}"), "filesystem", show(theirs), show(&mine)))
                }
            }
        }
    }
    for (root, part, offset) in filesystems {
        let scratch = dir.join(format!("tsk{offset}"));
        std::fs::create_dir(&scratch).unwrap();
        let unread: Vec<&str> = SLOW
            .iter()
            .filter(|(disk, path, _)| *disk == name && path.starts_with(&part))
            .map(|(_, path, _)| &path[part.len()..])
            .collect();
        let theirs = tsk::tree(raw, offset, &scratch, &unread);
        let scratch = dir.join(format!("strata{offset}"));
        std::fs::create_dir(&scratch).unwrap();
        let (mine, errors) = strata_tree(&img, &root, &scratch);
        let found = compare(name, &part, &theirs, &mine);
        if !found.is_empty() && !errors.is_empty() {
            eprintln!("{name} {root}: strata said:\n{errors}");
        }
        diffs.extend(found);
    }
    diffs
}

/// Fails on any difference not in [`KNOWN`] for the disks in `disks`, and on any entry of
/// [`KNOWN`] for those disks that matched nothing.
fn check(disks: &[&str], diffs: Vec<Diff>) {
    let matches = |x: &Diff, disk: &str, path: &str, what: &str| {
        let path_ok = match path.strip_suffix("/*") {
            Some(dir) => x
                .path
                .strip_prefix(dir)
                .and_then(|r| r.strip_prefix('/'))
                .is_some_and(|r| !r.is_empty() && !r.contains('/')),
            None => x.path == path,
        };
        x.disk == disk && path_ok && x.what == what
    };
    let known = |x: &Diff| {
        KNOWN
            .iter()
            .any(|(disk, path, what, _)| matches(x, disk, path, what))
            || SLOW
                .iter()
                .any(|(disk, path, _)| matches(x, disk, path, "content"))
    };
    let unexplained: Vec<String> = diffs
        .iter()
        .filter(|x| !known(x))
        .map(|x| x.to_string())
        .collect();
    let stale: Vec<String> = KNOWN
        .iter()
        .map(|(disk, path, what, _)| (*disk, *path, *what))
        .chain(SLOW.iter().map(|(disk, path, _)| (*disk, *path, "content")))
        .filter(|(disk, ..)| disks.contains(disk))
        .filter(|(disk, path, what)| !diffs.iter().any(|x| matches(x, disk, path, what)))
        .map(|(disk, path, what)| format!("{disk}: {path}: {what}"))
        .collect();
    assert!(
        unexplained.is_empty() && stale.is_empty(),
        "strata and The Sleuth Kit disagree ({} differences):\n{}\n\nknown differences that no longer occur:\n{}",
        unexplained.len(),
        unexplained.join("\n"),
        stale.join("\n")
    );
}

#[test]
fn sample_disk_reads_as_the_sleuth_kit_reads_it() {
    let dir = tempdir();
    let raw = sample_disk(dir.path());
    let diffs = oracle("sample", &raw, dir.path());
    check(&["sample"], diffs);
}

/// Every image of `fixtures/third-party` (all of them: a new one is read here too).
#[test]
fn third_party_images_read_as_the_sleuth_kit_reads_them() {
    let root = Path::new(TESTDATA);
    let mut images = Vec::new();
    for src in std::fs::read_dir(root).unwrap() {
        let src = src.unwrap().path();
        if !src.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&src).unwrap() {
            let f = f.unwrap().path();
            let n = f.file_name().unwrap().to_string_lossy().into_owned();
            if n.ends_with(".zst") || n.ends_with(".img") {
                images.push(f);
            }
        }
    }
    images.sort();
    assert!(images.len() >= 13, "{images:?}");
    let mut names = Vec::new();
    let mut diffs = Vec::new();
    for src in &images {
        let dir = tempdir();
        let raw = unpack(src, dir.path());
        let name = src
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        diffs.extend(oracle(&name, &raw, dir.path()));
        names.push(name);
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    check(&names, diffs);
}

/// Disks made by `fixtures/make-disk.sh` with each filesystem it makes: FAT12, FAT16, exFAT,
/// NTFS (streams, links), ext2 and ext3 in an MBR with logical partitions, and FAT32 and
/// ext4 on GPT.
#[test]
fn built_disks_read_as_the_sleuth_kit_reads_them() {
    if !require_root("built_disks_read_as_the_sleuth_kit_reads_them") {
        return;
    }
    let dir = tempdir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/make-disk.sh");
    let mbr = dir.path().join("mbr.img");
    sh(
        script.to_str().unwrap(),
        &[
            "--table",
            "mbr",
            "--no-verify",
            "--part",
            "fs=fat12,size=4M,label=F12,seed=11,files=30,big=0",
            "--part",
            "fs=fat16,size=20M,label=F16,seed=12,files=40",
            "--part",
            "fs=exfat,size=16M,label=EXF,seed=13,files=40",
            "--part",
            "fs=ntfs,size=24M,label=NTF,seed=14,files=60,symlinks=1,xattrs=1",
            "--part",
            "fs=ext2,size=16M,label=E2,seed=15,files=40,symlinks=1,xattrs=1",
            "--part",
            "fs=ext3,size=16M,label=E3,seed=16,files=40,symlinks=1,xattrs=1",
            mbr.to_str().unwrap(),
        ],
    );
    let mut diffs = oracle("make-disk mbr", &mbr, dir.path());
    std::fs::remove_file(&mbr).unwrap();
    let dir = tempdir();
    let gpt = dir.path().join("gpt.img");
    sh(
        script.to_str().unwrap(),
        &[
            "--no-verify",
            "--part",
            "fs=fat32,size=40M,label=F32,seed=21,files=60",
            "--part",
            "fs=ext4,size=24M,label=E4,seed=22,files=60,symlinks=1,xattrs=1",
            gpt.to_str().unwrap(),
        ],
    );
    diffs.extend(oracle("make-disk gpt", &gpt, dir.path()));
    check(&["make-disk mbr", "make-disk gpt"], diffs);
}

/// NTFS structures the browse tests build through ntfs-3g and make-disk.sh does not: LZNT1
/// compression (also of data spread over several file records, with an `$ATTRIBUTE_LIST`),
/// sparse and resident files, hard links, streams on files and directories, names that
/// differ only in case (ntfs-3g writes them in the POSIX namespace, as Windows does in
/// case-sensitive directories), Unicode and 250-character names and a 3000-file directory.
const NTFS_TREE: &str = r#"
import os
os.mkdir('comp')
# FILE_ATTRIBUTE_COMPRESSED on the directory: ntfs-3g compresses new files (LZNT1).
os.setxattr('comp', 'system.ntfs_attrib_be', (0x800).to_bytes(4, 'big'))
open('comp/text.txt', 'w').write(''.join('line %d of a compressible file\n' % i for i in range(20000)))
open('comp/random.bin', 'wb').write(bytes((i * 2654435761 >> 13) & 255 for i in range(200000)))
with open('comp/mixed.bin', 'wb') as f:
    f.write(b'A' * 70000); f.write(bytes(140000)); f.write(os.urandom(5000)); f.write(b'end')
with open('comp/fragmented.bin', 'wb') as f:
    for i in range(200):
        f.write((b'unit %d compressible ' % i) * 3000); f.write(os.urandom(8000))
open('plain.txt', 'w').write('plain data\n')
os.link('plain.txt', 'hard link.txt')
os.symlink('plain.txt', 'relative link')
os.setxattr('plain.txt', 'user.stream one', b'first stream')
os.setxattr('plain.txt', 'user.big', os.urandom(60000))
os.mkdir('dir with stream')
os.setxattr('dir with stream', 'user.s', b'on a directory')
with open('sparse.bin', 'wb') as f:
    f.truncate(20 << 20); f.seek(7 << 20); f.write(b'island'); f.seek(19 << 20); f.write(b'end')
os.makedirs('Ünïcödé/日本語')
open('Ünïcödé/日本語/σημειώσεις.txt', 'w').write('γειά\n')
for a, b in [('_exit.2.gz', '_Exit.2.gz'), ('nan.3.gz', 'NAN.3.gz'), ('index.html', 'Index.html')]:
    open(a, 'w').write('lower ' + a); open(b, 'w').write('upper ' + b * 50)
os.mkdir('pod'); os.mkdir('Pod')
open('pod/inner.txt', 'w').write('in pod\n'); open('Pod/inner.txt', 'w').write('in Pod\n')
open('L' * 250 + '.txt', 'w').write('long name\n')
os.mkdir('many')
for i in range(3000):
    with open('many/f%05d' % i, 'w') as f:
        f.write(str(i) * (i % 700))
open('empty', 'w').close()
"#;

/// ext trees as the browse tests build them with `mkfs -d`: holes (also where a
/// block-mapped file has no indirect block at all), fast and slow symlinks, hard links,
/// Unicode and 255-byte names, 40 levels, a 3000-file directory, extended attributes.
const EXT_TREE: &str = r#"
import os, sys
os.chdir(sys.argv[1])
open('small.txt', 'w').write('small\n')
with open('holes.bin', 'wb') as f:
    f.write(b'start'); f.seek(40000); f.write(b'in the direct blocks'); f.truncate(48000)
with open('far holes.bin', 'wb') as f:
    f.write(b'start'); f.seek(3 << 20); f.write(b'middle'); f.truncate(9 << 20)
open('big.bin', 'wb').write(bytes((i * 2654435761 >> 11) & 255 for i in range(3 << 20)))
os.symlink('small.txt', 'fast link')
os.symlink('/' + 'x' * 200 + '/target', 'slow link')
os.symlink('../nowhere', 'dangling')
os.link('small.txt', 'hard.txt')
os.makedirs('Ünïcödé/日本語')
open('Ünïcödé/日本語/файл.txt', 'w').write('γειά\n')
open('N' * 255, 'w').write('longest name\n')
d = 'deep'
for i in range(40):
    d = os.path.join(d, 'l%02d' % i)
os.makedirs(d)
open(os.path.join(d, 'bottom'), 'w').write('bottom\n')
os.mkdir('many')
for i in range(3000):
    with open('many/%05d' % i, 'w') as f:
        f.write(str(i))
os.utime('small.txt', (1500000000, 1400000000))
os.setxattr('big.bin', 'user.note', b'in the inode')
"#;

/// Bare NTFS and ext2/3/4 volumes filled as the browse tests fill them (ntfs-3g; `mkfs -d`).
#[test]
fn volumes_like_the_browse_tests_read_as_the_sleuth_kit_reads_them() {
    if !require_root("volumes_like_the_browse_tests_read_as_the_sleuth_kit_reads_them") {
        return;
    }
    let mut diffs = Vec::new();
    let dir = tempdir();
    let vol = dir.path().join("ntfs.img");
    std::fs::File::create(&vol)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    sh(
        "mkntfs",
        &["-q", "-F", "-f", "-L", "TREE", vol.to_str().unwrap()],
    );
    ntfs3g_fill(&vol, NTFS_TREE);
    let info = sh(
        "ntfsinfo",
        &["-F", "/comp/fragmented.bin", vol.to_str().unwrap()],
    );
    assert!(info.contains("$ATTRIBUTE_LIST"), "{info}");
    diffs.extend(oracle("ntfs-3g volume", &vol, dir.path()));
    let mut names = vec!["ntfs-3g volume".to_string()];
    // A file and a directory whose $DATA and $INDEX_ALLOCATION are split over several file
    // records (ntfs_split_attributes in browse_ntfs.rs checks that they are).
    let split_dir = tempdir();
    let split = split_dir.path().join("split.ntfs");
    sh(
        fixtures()
            .join("make-ntfs-split-attributes.sh")
            .to_str()
            .unwrap(),
        &[split.to_str().unwrap()],
    );
    diffs.extend(oracle("ntfs split attributes", &split, split_dir.path()));
    names.push("ntfs split attributes".to_string());
    for fs in ["ext2", "ext3", "ext4"] {
        let dir = tempdir();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        python(EXT_TREE, dir.path(), &[&tree]);
        let vol = dir.path().join(format!("{fs}.img"));
        sh(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-t",
                fs,
                "-d",
                tree.to_str().unwrap(),
                vol.to_str().unwrap(),
                "64M",
            ],
        );
        let name = format!("{fs} volume");
        diffs.extend(oracle(&name, &vol, dir.path()));
        names.push(name);
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    check(&names, diffs);
}
