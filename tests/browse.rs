//! `strata ls`, `cat` and `cp` against what the real tools show.
//!
//! The sample disk's expected listing (`fixtures/sample/sample-disk.manifest.txt`) was made
//! with the kernel's ext4 driver, ntfs-3g and mtools (`fixtures/manifest.sh`): every name,
//! type, size, mtime, link target and sha256 read from an image must match it. The
//! third-party images in `../shared/testdata` come with listings made by debugfs and
//! ntfs-3g's tools. Most of these tests need no root.
// The reference listings come from Linux tools (mtools, the kernel, ntfs-3g), run here.
#![cfg(unix)]

mod common;

use common::*;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/testdata");

fn hex_sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An entry as strata shows it.
#[derive(Debug, Clone)]
struct Seen {
    kind: String,
    size: u64,
    mtime: i64,
    target: Option<String>,
    json: serde_json::Value,
}

/// `strata ls IMAGE ROOT -R --json`, keyed by path below ROOT.
fn ls_tree(img: &Path, root: &str) -> (BTreeMap<String, Seen>, bool) {
    let o = run(&[&"ls", &img, &root, &"-R", &"--json"]);
    let (code, out, err) = outcome(&o);
    assert!(code == 0 || code == 1, "ls failed: {err}");
    let mut map = BTreeMap::new();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object a line");
        let path = v["path"].as_str().unwrap();
        let rel = path
            .strip_prefix(root.trim_end_matches('/'))
            .unwrap()
            .to_string();
        map.insert(
            rel,
            Seen {
                kind: v["type"].as_str().unwrap().to_string(),
                size: v["size"].as_u64().unwrap(),
                mtime: v["mtime"].as_i64().unwrap_or(0),
                target: v["target"].as_str().map(str::to_string),
                json: v.clone(),
            },
        );
    }
    (map, code == 0)
}

/// The `user.*` extended attributes of `p` (not following a link).
fn user_xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 1 << 16];
    // SAFETY: `c` is NUL-terminated and `names` is writable for its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(
        n >= 0,
        "{}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    let mut out = BTreeMap::new();
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        if !name.starts_with(b"user.") {
            continue;
        }
        let cname = std::ffi::CString::new(name).unwrap();
        let mut v = vec![0u8; 1 << 16];
        // SAFETY: as above; `v` is writable for its length.
        let len =
            unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(
            len >= 0,
            "{}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
        v.truncate(len as usize);
        out.insert(String::from_utf8(name.to_vec()).unwrap(), v);
    }
    out
}

/// Image file of a raw disk, made with `strata create`.
fn image_of(raw: &Path, dir: &Path) -> PathBuf {
    let img = dir.join(format!(
        "{}.strata",
        raw.file_name().unwrap().to_string_lossy()
    ));
    ok(run(&[&"create", &"--quiet", &raw, &img]));
    img
}

/// A third-party image decompressed into `dir`.
fn testdata(rel: &str, dir: &Path) -> PathBuf {
    let src = Path::new(TESTDATA).join(rel);
    let raw = zstd::stream::decode_all(
        std::fs::File::open(&src)
            .unwrap_or_else(|e| panic!("{}: {e} (the shared test data is needed)", src.display())),
    )
    .unwrap();
    let name = Path::new(rel).file_name().unwrap().to_string_lossy();
    let p = dir.join(name.trim_end_matches(".zst"));
    std::fs::write(&p, raw).unwrap();
    p
}

fn manifest_lines(part: &str) -> BTreeSet<String> {
    let m = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sample/sample-disk.manifest.txt"),
    )
    .unwrap();
    m.lines()
        .filter(|l| l.starts_with(&format!("{part}\t")))
        .map(str::to_string)
        .collect()
}

/// `strata ls -R --json` and `strata cp -r` of each partition in `parts` give exactly the
/// lines of `manifest` (`fixtures/manifest.sh` format): names, types, sizes, mtimes,
/// sha256 of contents, link targets and streams (`x` lines, as ntfs-3g shows them).
fn compare_with_manifest(img: &Path, manifest: &str, parts: &[&str]) {
    let out = img.with_extension("out");
    std::fs::create_dir(&out).unwrap();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"cp", &"-r", &"--quiet", &img];
    let roots: Vec<String> = parts.iter().map(|p| format!("/{p}")).collect();
    for r in &roots {
        args.push(r);
    }
    args.push(&out);
    let (code, _, cp_err) = outcome(&run(&args));
    assert_eq!(code, 0, "{cp_err}");

    for part in parts {
        let (seen, clean) = ls_tree(img, &format!("/{part}"));
        assert!(clean, "{part}: ls reported errors");
        let mut got = BTreeSet::new();
        for (path, s) in &seen {
            let copied = out.join(part).join(path.trim_start_matches('/'));
            let (t, size, sha) = match s.kind.as_str() {
                "file" => {
                    let len = std::fs::metadata(&copied).unwrap().len();
                    assert_eq!(len, s.size, "{part}{path}: copied size");
                    ("f", s.size, sha256(&copied))
                }
                "dir" => ("d", 0, "-".to_string()),
                "symlink" => {
                    let target = s.target.clone().expect("symlinks have a target");
                    let on_disk = std::fs::read_link(&copied).unwrap();
                    assert_eq!(
                        on_disk.to_str().unwrap(),
                        target,
                        "{part}{path}: copied link"
                    );
                    ("l", target.len() as u64, hex_sha(target.as_bytes()))
                }
                k => panic!("{part}{path}: unexpected type {k}"),
            };
            assert_eq!(size, s.size, "{part}{path}: size");
            got.insert(format!("{part}\t{path}\t{t}\t{size}\t{}\t{sha}", s.mtime));
            // Streams and user.* attributes are on the copy as user.* attributes, or cp
            // said why not.
            let on_copy = if s.kind == "symlink" {
                BTreeMap::new()
            } else {
                user_xattrs(&copied)
            };
            let mut x: BTreeMap<String, Vec<u8>> = on_copy.clone();
            for st in s.json["streams"].as_array().into_iter().flatten() {
                let name = st["name"].as_str().unwrap();
                let o = run(&[&"cat", &img, &format!("/{part}{path}:{name}")]);
                assert!(o.status.success(), "{part}{path}:{name}");
                assert_eq!(o.stdout.len() as u64, st["size"].as_u64().unwrap());
                let key = format!("user.{name}");
                match on_copy.get(&key) {
                    Some(v) => assert!(*v == o.stdout, "{part}{path}: copied stream {name}"),
                    None => assert!(
                        cp_err.contains(&format!("/{part}{path}: stream {name} not kept: ")),
                        "{part}{path}: stream {name} neither copied nor reported: {cp_err}"
                    ),
                }
                x.insert(key, o.stdout);
            }
            for (name, value) in &x {
                got.insert(format!(
                    "{part}\t{path}:{name}\tx\t{}\t{}\t{}",
                    value.len(),
                    s.mtime,
                    hex_sha(value)
                ));
            }
            // Copies keep the modification time, links included.
            {
                let m = std::fs::symlink_metadata(&copied)
                    .unwrap()
                    .modified()
                    .unwrap();
                let secs = m.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
                assert_eq!(secs, s.mtime, "{part}{path}: copied mtime");
            }
        }
        let want: BTreeSet<String> = manifest
            .lines()
            .filter(|l| l.starts_with(&format!("{part}\t")))
            .map(str::to_string)
            .collect();
        let missing: Vec<_> = want.difference(&got).take(20).collect();
        let extra: Vec<_> = got.difference(&want).take(20).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{part}: differs from the manifest\nmissing: {missing:#?}\nextra: {extra:#?}"
        );
    }
}

/// The sample disk: ls and cp of every partition give exactly the manifest.
#[test]
fn sample_disk_matches_the_manifest() {
    let dir = tempdir();
    let disk = sample_disk(dir.path());
    let img = image_of(&disk, dir.path());

    // The top lists the three partitions with their filesystems.
    let (top, _) = ls_tree(&img, "/");
    let parts: Vec<_> = top
        .iter()
        .filter(|(p, _)| p.matches('/').count() == 1)
        .map(|(p, s)| {
            (
                p.clone(),
                s.json["filesystem"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        parts,
        [
            ("/p1".to_string(), "FAT32".to_string()),
            ("/p2".to_string(), "NTFS".to_string()),
            ("/p3".to_string(), "ext4".to_string())
        ]
    );
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sample/sample-disk.manifest.txt"),
    )
    .unwrap();
    compare_with_manifest(&img, &manifest, &["p1", "p2", "p3"]);
}

/// `vol` in a one-partition disk `DIR/disk-POINT.img`, and what the kernel, ntfs-3g and
/// mtools show of that disk (`fixtures/manifest.sh`, kept as `DIR/manifest-POINT.txt`).
fn disk_and_manifest(vol: &Path, dir: &Path, point: &str) -> (PathBuf, String) {
    let disk = dir.join(format!("disk-{point}.img"));
    disk_with(vol, &disk);
    let manifest = dir.join(format!("manifest-{point}.txt"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/manifest.sh");
    sh(
        script.to_str().unwrap(),
        &[disk.to_str().unwrap(), manifest.to_str().unwrap()],
    );
    (disk, std::fs::read_to_string(&manifest).unwrap())
}

/// A GPT disk holding `vol` as partition 1 at 1 MiB.
fn disk_with(vol: &Path, disk: &Path) {
    let len = std::fs::metadata(vol).unwrap().len();
    let f = std::fs::File::create(disk).unwrap();
    f.set_len(len + (2 << 20)).unwrap();
    drop(f);
    let last = 2048 + len / 512 - 1;
    sh(
        "sgdisk",
        &[
            "-n",
            &format!("1:2048:{last}"),
            "-t",
            "1:0700",
            disk.to_str().unwrap(),
        ],
    );
    let data = std::fs::read(vol).unwrap();
    write_at(disk, 1 << 20, &data);
}

const NTFS_POINT_A: &str = r#"
import os
os.mkdir('comp')
# FILE_ATTRIBUTE_COMPRESSED on the directory: ntfs-3g compresses new files (LZNT1).
os.setxattr('comp', 'system.ntfs_attrib_be', (0x800).to_bytes(4, 'big'))
open('comp/text.txt', 'w').write(''.join('line %d of a compressible file\n' % i for i in range(20000)))
open('comp/random.bin', 'wb').write(bytes((i * 2654435761 >> 13) & 255 for i in range(200000)))
with open('comp/mixed.bin', 'wb') as f:
    f.write(b'A' * 70000); f.write(bytes(140000)); f.write(os.urandom(5000)); f.write(b'end')
# Compressible units between ones that are not: so many data runs that the attribute
# continues in other file records, listed in an $ATTRIBUTE_LIST.
with open('comp/fragmented.bin', 'wb') as f:
    for i in range(200):
        f.write((b'unit %d compressible ' % i) * 3000); f.write(os.urandom(8000))
open('plain.txt', 'w').write('plain data\n')
os.link('plain.txt', 'hard link.txt')
os.symlink('plain.txt', 'relative link')
os.symlink('/comp/text.txt', 'absolute link')
os.symlink('does/not/exist', 'dangling')
os.setxattr('plain.txt', 'user.stream one', b'first stream')
os.setxattr('plain.txt', 'user.big', os.urandom(60000))
os.mkdir('dir with stream')
os.setxattr('dir with stream', 'user.s', b'on a directory')
with open('sparse.bin', 'wb') as f:
    f.truncate(20 << 20); f.seek(7 << 20); f.write(b'island'); f.seek(19 << 20); f.write(b'end')
os.makedirs('Ünïcödé/日本語/файлы')
open('Ünïcödé/日本語/файлы/σημειώσεις.txt', 'w').write('γειά\n')
long = 'L' * 250 + '.txt'
open(long, 'w').write('long name\n')
d = 'deep'
for i in range(40):
    d = os.path.join(d, 'level%02d' % i)
os.makedirs(d)
open(os.path.join(d, 'bottom.txt'), 'w').write('bottom\n')
os.mkdir('many')
for i in range(10050):
    with open('many/f%05d' % i, 'w') as f:
        f.write(str(i))
open('empty', 'w').close()
"#;

const NTFS_POINT_B: &str = r#"
import os, shutil
os.remove('plain.txt')
open('comp/text.txt', 'a').write('appended later\n' * 1000)
shutil.rmtree('deep/level00/level01')
for i in range(0, 10050, 7):
    os.remove('many/f%05d' % i)
open('new file.txt', 'w').write('made at the second point\n')
os.setxattr('hard link.txt', 'user.added', b'later stream')
"#;

/// An NTFS volume made by mkntfs and filled through ntfs-3g (LZNT1 compression, also of
/// data spread over several file records; hard links, symbolic links, streams, sparse
/// files, Unicode and 254-character names, 10 050 files in one directory, 40 levels of
/// directories), imaged at two points in time: each image reads exactly as ntfs-3g reads
/// the disk at that point.
#[test]
fn ntfs3g_volume_at_two_points_matches_ntfs3g() {
    if !require_root("ntfs3g_volume_at_two_points_matches_ntfs3g") {
        return;
    }
    let dir = tempdir();
    let vol = dir.path().join("vol.ntfs");
    std::fs::File::create(&vol)
        .unwrap()
        .set_len(96 << 20)
        .unwrap();
    let o = std::process::Command::new("mkntfs")
        .args([
            "-q", "-F", "-f", "-L", "POINTS", "-p", "2048", "-H", "16", "-S", "63",
        ])
        .arg(&vol)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (point, script) in [("a", NTFS_POINT_A), ("b", NTFS_POINT_B)] {
        ntfs3g_fill(&vol, script);
        let info = sh(
            "ntfsinfo",
            &["-F", "/comp/fragmented.bin", vol.to_str().unwrap()],
        );
        assert!(info.contains("$ATTRIBUTE_LIST"), "{info}");
        let (disk, manifest) = disk_and_manifest(&vol, dir.path(), point);
        let img = image_of(&disk, dir.path());
        compare_with_manifest(&img, &manifest, &["p1"]);
    }
}

#[test]
fn cat_reads_files_and_lookups_follow_each_filesystem() {
    let dir = tempdir();
    let img = image_of(&sample_disk(dir.path()), dir.path());
    let want: BTreeMap<String, String> = manifest_lines("p2")
        .into_iter()
        .chain(manifest_lines("p1"))
        .chain(manifest_lines("p3"))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (format!("/{}{}", f[0], f[1]), f[5].to_string())
        })
        .collect();
    for (path, sha) in [
        ("/p2/README.txt", &want["/p2/README.txt"]),
        // NTFS and FAT names are case-insensitive; ext names are not.
        ("/p2/readme.TXT", &want["/p2/README.txt"]),
        ("p3/README.txt", &want["/p3/README.txt"]),
        (
            "/p1/Dokumente/draft v2.txt",
            &want["/p1/Dokumente/draft v2.txt"],
        ),
        (
            "/p1/dokumente/DRAFT V2.TXT",
            &want["/p1/Dokumente/draft v2.txt"],
        ),
        ("/p3/src/../README.txt", &want["/p3/README.txt"]),
    ] {
        let o = run(&[&"cat", &img, &path]);
        let (code, _, err) = outcome(&o);
        assert_eq!(code, 0, "{path}: {err}");
        assert_eq!(&hex_sha(&o.stdout), sha, "{path}");
    }
    for bad in [
        "/p3/readme.txt",
        "/p9/x",
        "/p2/nothing here",
        "/p3/README.txt/x",
    ] {
        let (code, _, err) = outcome(&run(&[&"cat", &img, &bad]));
        assert_eq!(code, 1, "{bad}");
        assert!(
            err.contains(bad.trim_start_matches('/').split('/').next().unwrap()),
            "{bad}: {err}"
        );
    }
    // Listed paths are normalised.
    let out = ok(run(&[&"ls", &"--json", &img, &"p3/src/../Music/"]));
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            v["path"].as_str().unwrap().starts_with("/p3/Music/"),
            "{line}"
        );
    }
    let (code, _, err) = outcome(&run(&[&"cat", &img, &"/p3/src"]));
    assert_eq!(code, 1);
    assert!(err.contains("not a regular file"), "{err}");
    let (code, _, err) = outcome(&run(&[&"cat", &img, &"/p3/dangling link"]));
    assert_eq!(code, 1);
    assert!(err.contains("symbolic link to does/not/exist"), "{err}");
}

#[test]
fn cp_never_overwrites_without_force() {
    let dir = tempdir();
    let img = image_of(&sample_disk(dir.path()), dir.path());
    let dest = dir.path().join("notes.txt");
    std::fs::write(&dest, b"mine").unwrap();
    let (code, _, err) = outcome(&run(&[&"cp", &img, &"/p3/notes", &dest]));
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"mine");

    ok(run(&[
        &"cp",
        &"--force",
        &"--quiet",
        &img,
        &"/p3/notes",
        &dest,
    ]));
    let want = manifest_lines("p3")
        .into_iter()
        .find(|l| l.starts_with("p3\t/notes\t"))
        .unwrap();
    assert!(want.ends_with(&sha256(&dest)));

    // A directory needs -r.
    let (code, _, err) = outcome(&run(&[&"cp", &img, &"/p3/src", &dir.path().join("src")]));
    assert_eq!(code, 1);
    assert!(err.contains("-r"), "{err}");

    // A link at the destination is replaced, never written through (links: Unix only).
    #[cfg(unix)]
    {
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        ok(run(&[&"cp", &"-f", &"-q", &img, &"/p3/notes", &link]));
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(!std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}

/// An expected entry from a shared/testdata listing.
#[derive(Debug)]
struct Expected {
    kind: String,
    size: Option<u64>,
    sha: Option<String>,
    target: Option<String>,
}

/// Parses `path<TAB>type<TAB>…size=N…sha256=H…-> target` listings. Lines for `dir/*`
/// (many generated files) give the directory and how many entries it has.
fn parse_listing(text: &str) -> (BTreeMap<String, Expected>, BTreeMap<String, usize>) {
    let mut entries = BTreeMap::new();
    let mut wild = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with('/')) {
        let f: Vec<&str> = line.split('\t').collect();
        if let Some(dir) = f[0].strip_suffix("/*") {
            let n: usize = f[1].split_whitespace().next().unwrap().parse().unwrap();
            wild.insert(dir.to_string(), n);
            continue;
        }
        let mut e = Expected {
            kind: f[1].to_string(),
            size: None,
            sha: None,
            target: None,
        };
        for x in &f[2..] {
            if let Some(s) = x.strip_prefix("size=") {
                e.size = s.parse().ok();
            } else if let Some(s) = x.strip_prefix("sha256=") {
                e.sha = Some(s.to_string());
            } else if let Some(t) = x.strip_prefix("-> ") {
                e.target = Some(t.to_string());
            }
        }
        entries.insert(f[0].to_string(), e);
    }
    (entries, wild)
}

/// Lists and copies `root` of the image of `raw`; checks it against `listing`. Paths in
/// `skip` (and below them) are not compared.
fn check_against_listing(raw: &Path, root: &str, listing: &str, skip: &[&str]) {
    let dir = raw.parent().unwrap();
    let img = image_of(raw, dir);
    let (seen, _) = ls_tree(&img, root);
    let out = dir.join("copy");
    let _ = run(&[&"cp", &"-r", &"-q", &img, &root, &out]);
    let text = std::fs::read_to_string(Path::new(TESTDATA).join(listing)).unwrap();
    let (want, wild) = parse_listing(&text);
    let skipped = |p: &str| {
        skip.iter()
            .any(|s| p == *s || p.starts_with(&format!("{s}/")))
    };
    for (path, e) in &want {
        if skipped(path) {
            continue;
        }
        let s = seen
            .get(path)
            .unwrap_or_else(|| panic!("{listing}: {path} not listed"));
        assert_eq!(s.kind, e.kind, "{listing}: {path}: type");
        if let Some(size) = e.size {
            assert_eq!(s.size, size, "{listing}: {path}: size");
        }
        if let (Some(sha), "file") = (&e.sha, e.kind.as_str()) {
            let copied = out.join(path.trim_start_matches('/'));
            assert_eq!(&sha256(&copied), sha, "{listing}: {path}: contents");
        }
        if let Some(t) = &e.target {
            if !t.ends_with("bytes)") {
                assert_eq!(s.target.as_ref(), Some(t), "{listing}: {path}: target");
            }
        }
    }
    for (d, n) in wild.iter().filter(|(d, _)| !skipped(d)) {
        let count = seen
            .keys()
            .filter(|p| {
                p.strip_prefix(&format!("{d}/"))
                    .is_some_and(|r| !r.contains('/'))
            })
            .count();
        assert_eq!(count, *n, "{listing}: entries in {d}");
    }
    for path in seen.keys() {
        let under_wild = wild.keys().any(|d| path.starts_with(&format!("{d}/")));
        assert!(
            want.contains_key(path) || under_wild || skipped(path),
            "{listing}: {path} listed but not expected"
        );
    }
}

#[test]
fn ext4_view_test_disks() {
    for (img, skip) in [
        ("test_disk1.bin", &["/encrypted_dir"][..]),
        ("test_disk_ext2.bin", &[][..]),
        ("test_disk_ext3.bin", &[][..]),
    ] {
        let dir = tempdir();
        let raw = testdata(&format!("ext4-view/{img}.zst"), dir.path());
        let listing = format!("ext4-view/expected/{}", img.replace(".bin", ".listing.txt"));
        check_against_listing(&raw, "/", &listing, skip);
    }
}

#[test]
fn ext4_medium_dir_files_hold_their_names() {
    let dir = tempdir();
    let raw = testdata("ext4-view/test_disk1.bin.zst", dir.path());
    let img = image_of(&raw, dir.path());
    for n in ["0", "7", "999"] {
        let o = run(&[&"cat", &img, &format!("/medium_dir/{n}")]);
        assert_eq!(String::from_utf8_lossy(&o.stdout), n);
    }
    // Encrypted names and contents are refused with the reason.
    let (code, _, err) = outcome(&run(&[&"ls", &img, &"/encrypted_dir"]));
    assert_eq!(code, 1);
    assert!(err.contains("encrypted"), "{err}");
}

#[test]
fn ntfs_samples() {
    let dir = tempdir();
    let raw = testdata("ntfs-samples-msuhanov/ntfs-2m.raw.zst", dir.path());
    check_against_listing(
        &raw,
        "/p1",
        "ntfs-samples-msuhanov/expected/ntfs-2m.p1.listing.txt",
        &[],
    );
    // Written by Windows 10, with an LZNT1-compressed file (1.txt).
    let dir = tempdir();
    let raw = testdata("ntfs-samples-msuhanov/ntfs-ramslack.raw.zst", dir.path());
    check_against_listing(
        &raw,
        "/p1",
        "ntfs-samples-msuhanov/expected/ntfs-ramslack.p1.listing.txt",
        &[],
    );
    let dir = tempdir();
    let raw = testdata("ntfs-rs/testfs1.zst", dir.path());
    // 512-byte clusters: some file records of many_subdirs straddle two $MFT data runs
    // (the ntfs crate alone misreads those).
    check_against_listing(&raw, "/", "ntfs-rs/expected/testfs1.listing.txt", &[]);
}

#[test]
fn ntfs_alternate_data_streams() {
    let dir = tempdir();
    let raw = testdata("go-ntfs-charlie/charlie.dd.zst", dir.path());
    let img = image_of(&raw, dir.path());
    let (seen, clean) = ls_tree(&img, "/");
    assert!(clean);
    let streams = &seen["/Nine.txt"].json["streams"];
    assert_eq!(
        streams,
        &serde_json::json!([
            {"name": "111", "size": 5005},
            {"name": "222", "size": 56},
            {"name": "333", "size": 6005}
        ])
    );
    let listing = std::fs::read_to_string(
        Path::new(TESTDATA).join("go-ntfs-charlie/expected/charlie.listing.txt"),
    )
    .unwrap();
    // The listing gives whole hashes for the main stream, 16-digit prefixes for the others.
    // The third stream (333) shares its attribute instance number with 111 in another
    // extension record; the ntfs crate does not find it (see README, Status).
    for (path, size) in [
        ("/Nine.txt", 5000),
        ("/Nine.txt:111", 5005),
        ("/Nine.txt:222", 56),
    ] {
        let o = run(&[&"cat", &img, &path]);
        assert_eq!(o.stdout.len(), size, "{path}");
        let sha = hex_sha(&o.stdout);
        assert!(
            listing.contains(&sha[..16]),
            "{path}: sha256 {sha} not in the listing"
        );
    }
}

#[test]
fn fat_images_match_mtools() {
    for (rel, root) in [
        ("rust-fatfs/fat12.img.zst", "/"),
        ("rust-fatfs/fat16.img.zst", "/"),
    ] {
        let dir = tempdir();
        let raw = testdata(rel, dir.path());
        let img = image_of(&raw, dir.path());
        // mtools is the reference: copy everything out with it, then compare.
        let reference = dir.path().join("mtools");
        std::fs::create_dir(&reference).unwrap();
        let o = std::process::Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .env("TZ", "UTC")
            .args([
                "-i",
                raw.to_str().unwrap(),
                "-s",
                "-m",
                "-n",
                "-p",
                "-Q",
                "::/",
            ])
            .arg(&reference)
            .output()
            .expect("mtools is needed for this test");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = dir.path().join("strata");
        ok(run(&[&"cp", &"-r", &"-q", &img, &root, &out]));
        assert_eq!(walk(&reference), walk(&out), "{rel}");
    }
}

/// (path, type, size, mtime, sha256) of every entry below `root`.
fn walk(root: &Path) -> BTreeSet<(String, char, u64, i64, String)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let mtime = m
                .modified()
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            if m.is_dir() {
                out.insert((rel, 'd', 0, mtime, String::new()));
                stack.push(p);
            } else {
                out.insert((rel, 'f', m.len(), mtime, sha256(&p)));
            }
        }
    }
    out
}

const EXT_TREE: &str = r#"
import os, sys
root = sys.argv[1]
os.chdir(root)
open('small.txt', 'w').write('small\n')
with open('holes.bin', 'wb') as f:
    f.write(b'start'); f.seek(40000); f.write(b'in the direct blocks'); f.truncate(48000)
# Holes where a block-mapped (ext2/3) file has no indirect block at all.
with open('far holes.bin', 'wb') as f:
    f.write(b'start'); f.seek(3 << 20); f.write(b'middle'); f.truncate(9 << 20)
if sys.argv[2] == 'ext4':
    # Past 4 GiB: 64-bit sizes and offsets.
    with open('huge sparse.bin', 'wb') as f:
        f.seek((4 << 30) + 12345); f.write(b'after four gibibytes')
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
for i in range(10050):
    with open('many/%05d' % i, 'w') as f:
        f.write(str(i))
os.chmod('small.txt', 0o600)
os.utime('small.txt', (1500000000, 1400000000))
# Extended attributes in the inode and, too big for it, in the attribute block.
os.setxattr('big.bin', 'user.note', b'in the inode')
os.setxattr('big.bin', 'user.large', bytes(range(250)) * 3)
os.setxattr('Ünïcödé', 'user.dir', b'on a directory')
"#;

/// ext2, ext3 and ext4 made by `mkfs -d` (fast and slow symlinks, holes, a file past
/// 4 GiB, hard links, Unicode and 255-byte names, 10 050 files in one directory, 40
/// levels), read exactly as the kernel reads them; the ext4 one also at a second point,
/// after changes through a kernel mount.
#[test]
fn ext_volumes_match_the_kernel() {
    if !require_root("ext_volumes_match_the_kernel") {
        return;
    }
    for fs in ["ext2", "ext3", "ext4"] {
        let dir = tempdir();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        python(EXT_TREE, dir.path(), &[&tree, Path::new(fs)]);
        let vol = dir.path().join("vol.ext");
        sh(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-t",
                fs,
                "-L",
                "POINTS",
                "-d",
                tree.to_str().unwrap(),
                vol.to_str().unwrap(),
                "128M",
            ],
        );
        let points: &[&str] = if fs == "ext4" { &["a", "b"] } else { &["a"] };
        for point in points {
            if *point == "b" {
                let mnt = dir.path().join("mnt");
                std::fs::create_dir(&mnt).unwrap();
                sh(
                    "mount",
                    &["-o", "loop", vol.to_str().unwrap(), mnt.to_str().unwrap()],
                );
                let o = std::process::Command::new("python3")
                    .arg("-c")
                    .arg(
                        "import os, shutil\nos.remove('small.txt')\nshutil.rmtree('deep/l00/l01')\n\
                         open('big.bin', 'r+b').write(b'changed')\n\
                         [os.remove('many/%05d' % i) for i in range(0, 10050, 3)]\n\
                         open('new', 'w').write('second point\\n')",
                    )
                    .current_dir(&mnt)
                    .output()
                    .unwrap();
                sh("umount", &[mnt.to_str().unwrap()]);
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            }
            let (disk, manifest) = disk_and_manifest(&vol, dir.path(), point);
            let img = image_of(&disk, dir.path());
            compare_with_manifest(&img, &manifest, &["p1"]);
        }
    }
}

/// Extended attributes of every namespace (in the inode, in the attribute block, a POSIX
/// ACL), inode numbers and link counts, as the kernel shows them on the same ext4 volume.
#[test]
fn ext_xattrs_and_inode_numbers_match_the_kernel() {
    if !require_root("ext_xattrs_and_inode_numbers_match_the_kernel") {
        return;
    }
    let dir = tempdir();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    python(
        r#"
import os, struct
open('a.txt', 'w').write('a\n')
os.setxattr('a.txt', 'user.small', b'hi')
os.setxattr('a.txt', 'user.block', os.urandom(1500))
os.setxattr('a.txt', 'trusted.t', b'trusted value')
os.setxattr('a.txt', 'security.s', b'security value')
os.link('a.txt', 'a hard link')
os.mkdir('d')
os.setxattr('d', 'user.on dir', b'\x00\x01 binary')
acl = struct.pack('<I', 2) + b''.join(struct.pack('<HHI', t, p, i) for t, p, i in
      [(1, 6, 0xFFFFFFFF), (2, 4, 1000), (4, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF),
       (0x20, 0, 0xFFFFFFFF)])
open('d/acl.txt', 'w').close()
os.setxattr('d/acl.txt', 'system.posix_acl_access', acl)
os.symlink('a.txt', 'link')
"#,
        &tree,
        &[],
    );
    let vol = dir.path().join("vol.ext4");
    sh(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            "4096",
            "-d",
            tree.to_str().unwrap(),
            vol.to_str().unwrap(),
            "16M",
        ],
    );
    // What the kernel shows: path -> (inode, links, attributes in getfattr's hex form).
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    sh(
        "mount",
        &[
            "-o",
            "loop,ro",
            vol.to_str().unwrap(),
            mnt.to_str().unwrap(),
        ],
    );
    let walk = std::panic::catch_unwind(|| {
        python(
            r#"
import os, json
for top, dirs, files in os.walk('.'):
    for n in dirs + files:
        p = os.path.join(top, n)
        if p.startswith('./lost+found'):
            continue
        st = os.lstat(p)
        x = {} if os.path.islink(p) else {a: '0x' + os.getxattr(p, a).hex()
                                          for a in os.listxattr(p)}
        print(json.dumps([p[1:], st.st_ino, st.st_nlink, x]))
"#,
            &mnt,
            &[],
        )
    });
    sh("umount", &[mnt.to_str().unwrap()]);
    let walk = walk.unwrap();
    let kernel: BTreeMap<String, serde_json::Value> = String::from_utf8(walk)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v[0].as_str().unwrap().to_string(), v)
        })
        .collect();
    assert!(
        kernel["/a.txt"][3]["trusted.t"].is_string(),
        "{:?}",
        kernel["/a.txt"]
    );
    assert!(kernel["/d/acl.txt"][3]["system.posix_acl_access"].is_string());
    let img = image_of(&vol, dir.path());
    let (seen, clean) = ls_tree(&img, "/");
    assert!(clean);
    for (path, k) in &kernel {
        let s = &seen[path].json;
        assert_eq!(s["ino"], k[1], "{path}: inode number");
        assert_eq!(s["nlink"], k[2], "{path}: links");
        let empty = serde_json::json!({});
        assert_eq!(
            s.get("xattrs").unwrap_or(&empty),
            &k[3],
            "{path}: attributes"
        );
    }
    assert_eq!(
        seen.len(),
        kernel.len() + 1,
        "lost+found besides the kernel's walk"
    );
}

/// Device nodes, FIFOs and sockets are listed with their type, not read, not copied.
#[test]
fn ext_special_files_are_listed_not_read() {
    if !require_root("ext_special_files_are_listed_not_read") {
        return;
    }
    let dir = tempdir();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    sh(
        "mknod",
        &[tree.join("null").to_str().unwrap(), "c", "1", "3"],
    );
    sh(
        "mknod",
        &[tree.join("loop").to_str().unwrap(), "b", "7", "0"],
    );
    sh("mkfifo", &[tree.join("fifo").to_str().unwrap()]);
    std::fs::write(tree.join("file"), b"x").unwrap();
    let vol = dir.path().join("vol.ext4");
    sh(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-d",
            tree.to_str().unwrap(),
            vol.to_str().unwrap(),
            "16M",
        ],
    );
    let img = image_of(&vol, dir.path());
    let (seen, _) = ls_tree(&img, "/");
    assert_eq!(seen["/null"].kind, "char");
    assert_eq!(seen["/loop"].kind, "block");
    assert_eq!(seen["/fifo"].kind, "fifo");
    let (code, _, err) = outcome(&run(&[&"cat", &img, &"/null"]));
    assert_eq!(code, 1);
    assert!(err.contains("not a regular file"), "{err}");
    let out = dir.path().join("out");
    let o = run(&[&"cp", &"-r", &"-q", &img, &"/", &out]);
    let (code, _, err) = outcome(&o);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("/null: skipped"), "{err}");
    assert!(out.join("volume/file").exists() || out.join("file").exists());
    assert!(!out.join("null").exists() && !out.join("volume/null").exists());
}

/// FAT12, FAT16 and FAT32 made by mkfs.fat and filled with mtools (long and Unicode
/// names, deep trees, a 1000-file directory), at two points (files deleted, changed and
/// added with mtools in between): each image reads exactly as mtools reads the disk.
#[test]
fn fat_volumes_at_two_points_match_mtools() {
    if !require_root("fat_volumes_at_two_points_match_mtools") {
        return;
    }
    for (fat, size) in [("12", 4u64 << 20), ("16", 32 << 20), ("32", 64 << 20)] {
        let dir = tempdir();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        let o = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                r#"
import os, sys
os.chdir(sys.argv[1])
os.makedirs('Dokumente/Übersicht 2024/very long directory name number one')
open('Dokumente/Übersicht 2024/very long directory name number one/a file with a long name.txt', 'w').write('x' * 5000)
open('README.TXT', 'w').write('readme\n')
open('données.bin', 'wb').write(bytes(i & 255 for i in range(70000)))
open('empty', 'w').close()
os.mkdir('many')
for i in range(1000):
    open('many/file number %04d.txt' % i, 'w').write(str(i))
t = 1500000000
for root, dirs, files in os.walk('.', topdown=False):
    for n in files + dirs:
        os.utime(os.path.join(root, n), (t, t)); t += 2
"#,
            )
            .arg(&tree)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let vol = dir.path().join("vol.fat");
        std::fs::File::create(&vol).unwrap().set_len(size).unwrap();
        sh(
            "mkfs.fat",
            &["-F", fat, "-n", "POINTS", vol.to_str().unwrap()],
        );
        let mtools = |args: &[&str]| {
            let o = std::process::Command::new(args[0])
                .env("MTOOLS_SKIP_CHECK", "1")
                .env("TZ", "UTC")
                .args(&args[1..])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        let v = vol.to_str().unwrap();
        let mut copy_in: Vec<String> = vec![
            "mcopy".into(),
            "-i".into(),
            v.into(),
            "-s".into(),
            "-m".into(),
        ];
        for e in std::fs::read_dir(&tree).unwrap() {
            copy_in.push(e.unwrap().path().to_str().unwrap().to_string());
        }
        copy_in.push("::/".into());
        mtools(&copy_in.iter().map(String::as_str).collect::<Vec<_>>());
        for point in ["a", "b"] {
            if point == "b" {
                mtools(&["mdel", "-i", v, "::/README.TXT"]);
                mtools(&["mdeltree", "-i", v, "::/Dokumente"]);
                for i in (0..1000).step_by(5) {
                    mtools(&["mdel", "-i", v, &format!("::/many/file number {i:04}.txt")]);
                }
                let new = dir.path().join("added later.txt");
                std::fs::write(&new, b"second point\n").unwrap();
                mtools(&["mcopy", "-i", v, "-m", new.to_str().unwrap(), "::/"]);
            }
            let (disk, manifest) = disk_and_manifest(&vol, dir.path(), point);
            assert!(
                manifest.lines().count() > 10,
                "FAT{fat}: manifest too short"
            );
            let img = image_of(&disk, dir.path());
            compare_with_manifest(&img, &manifest, &["p1"]);
        }
    }
}

/// exFAT (obhq/exfat's image): names, types, sizes, contents and times as its listing.
#[test]
fn exfat_volume() {
    let dir = tempdir();
    let raw = testdata("obhq-exfat/exfat.img.zst", dir.path());
    let img = image_of(&raw, dir.path());
    let (seen, clean) = ls_tree(&img, "/");
    assert!(clean);
    let got: Vec<_> = seen
        .iter()
        .map(|(p, s)| (p.as_str(), s.kind.as_str(), s.size, s.mtime))
        .collect();
    // 2023-03-06 13:03:18, 13:03:18 and 13:03:06 UTC.
    assert_eq!(
        got,
        [
            ("/dir1", "dir", 0, 1678107798),
            ("/dir1/file2", "file", 13, 1678107798),
            ("/file1", "file", 13, 1678107786)
        ]
    );
    for (path, want) in [
        ("/file1", "Test file 1.\n"),
        ("/DIR1/File2", "Test file 2.\n"),
    ] {
        let o = run(&[&"cat", &img, &path]);
        assert_eq!(String::from_utf8_lossy(&o.stdout), want, "{path}");
    }
    let out = dir.path().join("out");
    ok(run(&[&"cp", &"-r", &"-q", &img, &"/", &out]));
    assert_eq!(
        std::fs::read_to_string(out.join("dir1/file2")).unwrap(),
        "Test file 2.\n"
    );
}

/// Names are looked up as exFAT compares them, through the volume's up-case table: the
/// same names are found (and not found) as through exfat-fuse on a volume mkfs.exfat made.
#[test]
fn exfat_lookups_follow_the_upcase_table() {
    if !require_root("exfat_lookups_follow_the_upcase_table") {
        return;
    }
    let dir = tempdir();
    let vol = dir.path().join("vol.exfat");
    std::fs::File::create(&vol)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    sh("mkfs.exfat", &[vol.to_str().unwrap()]);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let dev = Loop::attach(&vol, 512, false);
    sh("mount.exfat-fuse", &[&dev.0, mnt.to_str().unwrap()]);
    let names = ["É.TXT", "\u{212A}.txt", "K.TXT", "ÜNÏ/Σ", "ünï/σ", "ß"];
    let made = std::panic::catch_unwind(|| {
        python(
            "import os\nopen('é.txt', 'w').write('e\\n')\nopen('k.txt', 'w').write('k\\n')\n\
             os.mkdir('Ünï')\nopen('Ünï/σ', 'w').write('s\\n')\nopen('SS', 'w').write('ss\\n')",
            &mnt,
            &[],
        );
        names.map(|n| mnt.join(n).exists())
    });
    sh("umount", &[mnt.to_str().unwrap()]);
    drop(dev);
    let found = made.unwrap();
    assert_eq!(found, [true, false, true, true, true, false], "exfat-fuse");
    let img = image_of(&vol, dir.path());
    for (name, want) in names.iter().zip(found) {
        let o = run(&[&"cat", &img, &format!("/{name}")]);
        assert_eq!(o.status.success(), want, "{name}");
    }
}

/// Symbolic links and junctions stored as reparse points (as Windows makes them; written
/// here through ntfs-3g's `system.ntfs_reparse_data`): shown as symbolic links, relative
/// ones as stored, absolute ones (`\??\C:\...`) relative to the volume root.
#[test]
fn ntfs_reparse_links_are_relative_to_the_volume() {
    if !require_root("ntfs_reparse_links_are_relative_to_the_volume") {
        return;
    }
    let dir = tempdir();
    let vol = small_ntfs(dir.path());
    // ntfs-3g stores the reparse data, then reports EINVAL: the data is checked below.
    ntfs3g_fill(
        &vol,
        r#"
import os, struct
def mount_point(sub, pr):
    sub = sub.encode('utf-16-le'); pr = pr.encode('utf-16-le')
    body = struct.pack('<HHHH', 0, len(sub), len(sub) + 2, len(pr)) + sub + b'\0\0' + pr + b'\0\0'
    return struct.pack('<IHH', 0xA0000003, len(body), 0) + body
def symlink(sub, pr, rel):
    sub = sub.encode('utf-16-le'); pr = pr.encode('utf-16-le')
    body = struct.pack('<HHHHI', 0, len(sub), len(sub), len(pr), 1 if rel else 0) + sub + pr
    return struct.pack('<IHH', 0xA000000C, len(body), 0) + body
os.makedirs('target/inner')
open('target/file.txt', 'w').write('target\n')
os.makedirs('a/b')
for path, data, is_dir in [
    ('a/b/junction', mount_point('\\??\\C:\\target', 'C:\\target'), True),
    ('a/absolute', symlink('\\??\\C:\\target\\file.txt', 'C:\\target\\file.txt', False), False),
    ('a/relative', symlink('..\\target\\file.txt', '..\\target\\file.txt', True), False),
    ('root junction', mount_point('\\??\\D:\\', 'D:\\'), True),
]:
    if is_dir:
        os.mkdir(path)
    else:
        open(path, 'w').close()
    try:
        os.setxattr(path, 'system.ntfs_reparse_data', data)
    except OSError:
        pass
"#,
    );
    let img = image_of(&vol, dir.path());
    let (seen, _) = ls_tree(&img, "/");
    for (path, target) in [
        ("/a/b/junction", "../../target"),
        ("/a/absolute", "../target/file.txt"),
        ("/a/relative", "../target/file.txt"),
        ("/root junction", "."),
    ] {
        let s = &seen[path];
        assert_eq!(s.kind, "symlink", "{path}");
        assert_eq!(s.target.as_deref(), Some(target), "{path}");
        assert_eq!(s.size, target.len() as u64, "{path}");
    }
    // Copied links resolve inside the copy.
    let out = dir.path().join("out");
    ok(run(&[&"cp", &"-r", &"-q", &img, &"/", &out]));
    assert_eq!(
        std::fs::read_to_string(out.join("a/absolute")).unwrap(),
        "target\n"
    );
    assert!(out.join("a/b/junction/inner").is_dir());
}

/// Writes WOF-compressed files through ntfs-3g as Windows lays them out: chunks made by
/// wimlib's XPRESS and LZX compressors (the codecs of WIM archives, which WOF shares; a
/// chunk that does not shrink is stored as is), the chunk table and chunks in the
/// `WofCompressedData` stream, the size in the unnamed data, and the reparse point last.
const WOF_FILL: &str = r#"
import ctypes, os, struct
wim = ctypes.CDLL('libwim.so.15')
wim.wimlib_compress.restype = ctypes.c_size_t
def wof(path, data, alg):
    size = {0: 4096, 1: 32768, 2: 8192, 3: 16384}[alg]
    comp = ctypes.c_void_p()
    assert wim.wimlib_create_compressor(2 if alg == 1 else 1, ctypes.c_size_t(size), 0,
                                        ctypes.byref(comp)) == 0
    chunks = []
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        out = ctypes.create_string_buffer(len(piece))
        n = wim.wimlib_compress(piece, ctypes.c_size_t(len(piece)), out,
                                ctypes.c_size_t(len(piece) - 1), comp)
        chunks.append(out.raw[:n] if n else piece)
    wim.wimlib_free_compressor(comp)
    table, at = b'', 0
    for c in chunks[:-1]:
        at += len(c)
        table += struct.pack('<I', at)
    with open(path + ':WofCompressedData', 'wb') as f:
        f.write(table + b''.join(chunks))
    os.truncate(path, len(data))
    try:
        os.setxattr(path, 'system.ntfs_reparse_data',
                    struct.pack('<IHHIIII', 0x80000017, 16, 0, 1, 2, 1, alg))
    except OSError:
        pass
    return sum(len(c) == len(data[i * size:(i + 1) * size]) for i, c in enumerate(chunks))
text = b''.join(b'line %d: the quick brown fox jumps over the lazy dog\n' % i for i in range(6000))
# x86-like bytes: CALL (0xE8) with small relative targets, which LZX translates.
code = b''.join(b'\x55\x89\xe5\xe8' + struct.pack('<i', (i * 37) % 5000 - 2500) + b'\x5d\xc3'
                for i in range(8000))
noise = os.urandom(70000)
for alg, name in [(0, 'xpress4k'), (1, 'lzx'), (2, 'xpress8k'), (3, 'xpress16k')]:
    data = text[:100000] + noise + code[:70000] + text[:777]
    open(name + '.orig', 'wb').write(data)
    open(name, 'wb').close()
    assert wof(name, data, alg) > 0, name + ': no chunk stored as is'
open('small', 'wb').close()
open('small.orig', 'wb').write(b'tiny\n')
wof('small', b'tiny\n', 1)
open('no stream', 'wb').close()
os.truncate('no stream', 5000)
os.setxattr('no stream', 'system.ntfs_reparse_data',
            struct.pack('<IHHIIII', 0x80000017, 16, 0, 1, 2, 1, 0))
"#;

/// Files compressed by WOF (CompactOS) read as their original bytes for all four
/// algorithms, with chunks stored as is and a short last chunk; they are listed as plain
/// files of their real size; a damaged one is reported by name.
#[test]
fn ntfs_wof_compressed_files_read_as_written() {
    if !require_root("ntfs_wof_compressed_files_read_as_written") {
        return;
    }
    let dir = tempdir();
    let vol = small_ntfs(dir.path());
    ntfs3g_fill_with(&vol, "streams_interface=windows", WOF_FILL);
    // The originals, read back by ntfs-3g.
    let mnt = dir.path().join("ro");
    std::fs::create_dir(&mnt).unwrap();
    sh(
        "ntfs-3g",
        &["-o", "ro", vol.to_str().unwrap(), mnt.to_str().unwrap()],
    );
    let names = ["xpress4k", "lzx", "xpress8k", "xpress16k", "small"];
    let orig: Vec<Vec<u8>> = names
        .iter()
        .map(|n| std::fs::read(mnt.join(format!("{n}.orig"))).unwrap())
        .collect();
    sh("umount", &[mnt.to_str().unwrap()]);
    let img = image_of(&vol, dir.path());
    let (seen, _) = ls_tree(&img, "/");
    for (name, data) in names.iter().zip(&orig) {
        let s = &seen[&format!("/{name}")];
        assert_eq!(
            (s.kind.as_str(), s.size),
            ("file", data.len() as u64),
            "{name}"
        );
        assert!(s.json.get("streams").is_none(), "{name}: {}", s.json);
        let o = run(&[&"cat", &img, &format!("/{name}")]);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.stdout == *data, "{name}: cat differs from the original");
    }
    let (code, _, err) = outcome(&run(&[&"cat", &img, &"/no stream"]));
    assert_eq!(code, 1);
    assert!(err.contains("WofCompressedData stream is missing"), "{err}");
    // cp writes the decoded bytes, and reports the damaged file without stopping.
    let out = dir.path().join("out");
    let (code, _, err) = outcome(&run(&[&"cp", &"-r", &"-q", &img, &"/", &out]));
    assert_eq!(code, 1);
    assert!(err.contains("/no stream: not copied"), "{err}");
    for (name, data) in names.iter().zip(&orig) {
        assert!(std::fs::read(out.join(name)).unwrap() == *data, "{name}");
    }
}

/// Marks `name`'s unnamed `$DATA` attribute and its `$STANDARD_INFORMATION` as EFS
/// encrypted, as Windows does, in the NTFS volume file given as argv[1] (the bytes patched
/// lie inside the record's first sector, away from the update sequence).
const EFS_MARK: &str = r#"
import struct, sys
vol, name = sys.argv[1], sys.argv[2].encode('utf-16-le')
data = bytearray(open(vol, 'rb').read())
at = 0
while True:
    at = data.find(b'FILE0', at)
    assert at >= 0, 'record not found'
    rec = data[at:at + 1024]
    if name in rec:
        break
    at += 1024
off = struct.unpack_from('<H', rec, 0x14)[0]
while struct.unpack_from('<I', rec, off)[0] != 0xFFFFFFFF:
    ty, ln = struct.unpack_from('<II', rec, off)
    if ty == 0x10:
        v = off + struct.unpack_from('<H', rec, off + 0x14)[0]
        struct.pack_into('<I', data, at + v + 0x20, struct.unpack_from('<I', rec, v + 0x20)[0] | 0x4000)
    if ty == 0x80 and rec[off + 9] == 0:
        struct.pack_into('<H', data, at + off + 0x0C, struct.unpack_from('<H', rec, off + 0x0C)[0] | 0x4000)
    off += ln
open(vol, 'r+b').write(data)
"#;

/// A file Windows encrypted (EFS) is refused by name with the reason, as ntfs-3g refuses
/// to read it; cp reports it and copies the rest.
#[test]
fn ntfs_efs_encrypted_file_is_refused() {
    if !require_root("ntfs_efs_encrypted_file_is_refused") {
        return;
    }
    let dir = tempdir();
    let vol = small_ntfs(dir.path());
    ntfs3g_fill(
        &vol,
        "import os\nopen('secret.txt', 'wb').write(os.urandom(10000))\n\
         open('plain.txt', 'w').write('plain\\n')",
    );
    python(EFS_MARK, dir.path(), &[&vol, Path::new("secret.txt")]);
    let mnt = dir.path().join("ro");
    std::fs::create_dir(&mnt).unwrap();
    sh(
        "ntfs-3g",
        &["-o", "ro", vol.to_str().unwrap(), mnt.to_str().unwrap()],
    );
    let by_ntfs3g = std::fs::read(mnt.join("secret.txt"));
    let plain = std::fs::read(mnt.join("plain.txt"));
    sh("umount", &[mnt.to_str().unwrap()]);
    assert!(by_ntfs3g.is_err(), "ntfs-3g reads the encrypted file");
    assert_eq!(plain.unwrap(), b"plain\n");
    let img = image_of(&vol, dir.path());
    let (code, _, err) = outcome(&run(&[&"cat", &img, &"/secret.txt"]));
    assert_eq!(code, 1);
    assert!(err.contains("EFS-encrypted"), "{err}");
    let out = dir.path().join("out");
    let (code, _, err) = outcome(&run(&[&"cp", &"-r", &"-q", &img, &"/", &out]));
    assert_eq!(code, 1);
    assert!(
        err.contains("/secret.txt: not copied: ") && err.contains("EFS"),
        "{err}"
    );
    assert!(!out.join("secret.txt").exists());
    assert_eq!(std::fs::read(out.join("plain.txt")).unwrap(), b"plain\n");
}

/// Names that cannot be created as they are (control characters, `%XX` look-alikes) are
/// escaped reversibly, reported, and nothing lands outside DEST. No root needed: mkfs.ext4
/// takes any byte but `/` and NUL in names.
#[test]
fn hostile_names_are_escaped_inside_dest() {
    let dir = tempdir();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let names = [
        "new\nline",
        "bell\x07",
        "tab\there",
        "%2F..%2F..%2Fescape",
        "...",
    ];
    for n in names {
        std::fs::write(tree.join(n), n.as_bytes()).unwrap();
    }
    std::fs::create_dir(tree.join("sub\x1b[31m")).unwrap();
    std::fs::write(tree.join("sub\x1b[31m/inner"), b"inner").unwrap();
    let vol = dir.path().join("vol.ext4");
    let o = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&tree)
        .arg(&vol)
        .arg("8M")
        .output()
        .expect("mkfs.ext4 is needed for this test");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image_of(&vol, dir.path());
    let dest = dir.path().join("dest");
    let o = run(&[&"cp", &"-r", &"-q", &img, &"/", &dest]);
    let (code, _, err) = outcome(&o);
    assert_eq!(code, 0, "{err}");
    for (name, escaped) in [
        ("new\nline", "new%0Aline"),
        ("bell\x07", "bell%07"),
        ("tab\there", "tab%09here"),
        ("%2F..%2F..%2Fescape", "%252F..%252F..%252Fescape"),
        ("...", "..."),
    ] {
        let p = dest.join(escaped);
        assert_eq!(std::fs::read(&p).unwrap(), name.as_bytes(), "{escaped}");
        if name != escaped {
            assert!(err.contains(&format!("name escaped as {escaped}")), "{err}");
        }
    }
    assert_eq!(
        std::fs::read(dest.join("sub%1B[31m/inner")).unwrap(),
        b"inner"
    );
    // Nothing outside DEST: the temporary directory holds only what the test made.
    let mut top: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["dest", "tree", "vol.ext4", "vol.ext4.strata"]);
}

/// The filesystem layer is shared by threads (as a FUSE front-end will): four threads read
/// every file of every partition at once, through one `Vfs`, and get the manifest's bytes.
#[test]
fn one_vfs_serves_many_threads() {
    use std::sync::Arc;
    use strata::vfs::{NodeKind, Target, Vfs};
    let dir = tempdir();
    let img = image_of(&sample_disk(dir.path()), dir.path());
    let dev: Arc<dyn strata::blockdev::BlockDev> =
        Arc::new(strata::container::reader::Image::open(&img).unwrap());
    let vfs = Arc::new(Vfs::open(dev).unwrap());
    let files: Vec<(String, String)> = ["p1", "p2", "p3"]
        .iter()
        .flat_map(|p| manifest_lines(p))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[2] == "f").then(|| (format!("/{}{}", f[0], f[1]), f[5].to_string()))
        })
        .collect();
    assert_eq!(files.len(), 360);
    let files = Arc::new(files);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (vfs, files) = (vfs.clone(), files.clone());
            std::thread::spawn(move || {
                // Each thread walks the list from a different place.
                for i in 0..files.len() {
                    let (path, sha) = &files[(i + t * 97) % files.len()];
                    let Target::Node { mount, node } = vfs.resolve(path).unwrap() else {
                        panic!("{path}: not a node");
                    };
                    let fs = vfs.fs(mount).unwrap();
                    assert_eq!(fs.metadata(node).unwrap().kind, NodeKind::File);
                    let data = Vfs::read_all(&**fs, node, "").unwrap();
                    assert_eq!(&hex_sha(&data), sha, "{path}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// A feature ext4-view cannot read is named in the error (mke2fs's name for it).
#[test]
fn ext_unsupported_feature_is_named() {
    let dir = tempdir();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a"), b"hi\n").unwrap();
    let vol = dir.path().join("vol.ext4");
    let o = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-O", "inline_data", "-d"])
        .arg(&tree)
        .arg(&vol)
        .arg("8M")
        .output()
        .expect("mkfs.ext4 is needed for this test");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image_of(&vol, dir.path());
    let (code, _, err) = outcome(&run(&[&"ls", &img, &"/"]));
    assert_eq!(code, 1);
    assert!(err.contains("inline_data"), "{err}");
}
