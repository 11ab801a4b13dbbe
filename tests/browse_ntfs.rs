//! NTFS volumes as other systems leave them, read by `strata cat`, `ls`, `cp` and a FUSE
//! mount, compared with what ntfs-3g (and The Sleuth Kit, where ntfs-3g cannot) reads of
//! the same volume, and the third-party samples against the listings made with ntfs-3g's
//! tools (`fixtures/third-party`).
//!
//! Tests that fill or mount a volume need root (ntfs-3g and FUSE mounts); under `CI=true` a
//! missing privilege is a failure.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What a reader shows at a path: a file's sha256, a link's target, or a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    File(String),
    Link(String),
    Dir,
}

/// What the tree mounted at `root` shows at each of `paths` (relative to it).
fn seen_under(root: &Path, paths: &[&str]) -> BTreeMap<String, Seen> {
    paths
        .iter()
        .map(|p| {
            let at = root.join(p);
            let m = std::fs::symlink_metadata(&at).unwrap_or_else(|e| panic!("{p}: {e}"));
            let s = if m.file_type().is_symlink() {
                Seen::Link(std::fs::read_link(&at).unwrap().to_string_lossy().into())
            } else if m.is_dir() {
                Seen::Dir
            } else {
                Seen::File(hex_sha(
                    &std::fs::read(&at).unwrap_or_else(|e| panic!("{p}: {e}")),
                ))
            };
            (p.to_string(), s)
        })
        .collect()
}

/// Mounts the volume file `vol` read-only with ntfs-3g, runs `f` on the mount point, and
/// unmounts it whatever `f` does.
fn with_ntfs3g<T>(vol: &Path, f: impl FnOnce(&Path) -> T) -> T {
    with_ntfs3g_opts(vol, "", f)
}

/// [`with_ntfs3g`] with more mount options `opts`.
fn with_ntfs3g_opts<T>(vol: &Path, opts: &str, f: impl FnOnce(&Path) -> T) -> T {
    let mnt = vol.with_extension("ro-mnt");
    let _ = std::fs::create_dir(&mnt);
    let opts = if opts.is_empty() {
        "ro".to_string()
    } else {
        format!("ro,{opts}")
    };
    sh(
        "ntfs-3g",
        &["-o", &opts, vol.to_str().unwrap(), mnt.to_str().unwrap()],
    );
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mnt)));
    sh("umount", &[mnt.to_str().unwrap()]);
    r.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// A strata FUSE mount of `image` at `dir`, detached on drop (even when a test fails).
struct Mounted(PathBuf);

impl Mounted {
    fn new(image: &Path, dir: &Path) -> Option<Mounted> {
        let fuse = Path::new("/dev/fuse").exists()
            && Command::new("fusermount3").arg("-V").output().is_ok();
        if !fuse {
            assert!(
                std::env::var_os("CI").is_none(),
                "needs /dev/fuse and fusermount3 (fuse3), and CI must not skip it"
            );
            eprintln!("FUSE part skipped (needs /dev/fuse and fusermount3)");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let dir = std::fs::canonicalize(dir).unwrap();
        ok(run(&[&"mount", &image, &dir]));
        let start = Instant::now();
        while !is_mounted(&dir) {
            assert!(start.elapsed() < Duration::from_secs(30), "no mount");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Mounted(dir))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3").arg("-uz").arg(&self.0).status();
    }
}

/// Pairs of names that differ only in case, as ntfs-3g writes them (POSIX namespace) when
/// a tree such as /usr/share/man is copied onto NTFS, and a big directory whose index
/// B-tree has several levels with such pairs spread over its nodes. `Only.txt` has a second
/// name (a hard link) `ONLY.txt`: the same file under two names is not ambiguous. `Read me
/// first.txt` has a DOS 8.3 name, `README~1.TXT`, as Windows gives long names.
const CASE_PAIRS: &str = r#"
import os
def put(path, data):
    with open(path, 'wb') as f:
        f.write(data)
put('_exit.2.gz', b'exit page\n' * 50)
os.symlink('_exit.2.gz', '_Exit.2.gz')
put('nan.3.gz', b'lower nan\n' * 70)
put('NAN.3.gz', b'UPPER NAN\n' * 90)
put('index.html', b'<p>lower index</p>\n')
put('Index.html', b'<p>Capital Index</p>\n' * 3)
os.mkdir('pod'); os.mkdir('Pod')
put('pod/perlpod.pod', b'lower pod child\n')
put('pod/same', b'same name, lower directory\n')
put('Pod/Simple.pm', b'capital Pod child\n')
put('Pod/same', b'same name, capital directory\n' * 2)
put('Only.txt', b'one file in this case\n')
os.link('Only.txt', 'ONLY.txt')
put('Read me first.txt', b'with a DOS name\n')
os.setxattr('Read me first.txt', 'system.ntfs_dos_name', 'README~1.TXT'.encode())
os.mkdir('big')
for i in range(1500):
    put('big/entry %04d with a long name' % i, b'%d\n' % i)
    if i % 50 == 7:
        put('big/case %04d' % i, b'lower %d\n' % i)
        put('big/CASE %04d' % i, b'UPPER %d\n' % i * 3)
"#;

fn case_pair_paths() -> Vec<String> {
    let mut p: Vec<String> = [
        "_exit.2.gz",
        "_Exit.2.gz",
        "nan.3.gz",
        "NAN.3.gz",
        "index.html",
        "Index.html",
        "pod",
        "Pod",
        "pod/perlpod.pod",
        "pod/same",
        "Pod/Simple.pm",
        "Pod/same",
        "Only.txt",
        "ONLY.txt",
        "Read me first.txt",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in (7..1500).step_by(50) {
        p.push(format!("big/case {i:04}"));
        p.push(format!("big/CASE {i:04}"));
        p.push(format!("big/entry {i:04} with a long name"));
    }
    p
}

/// Names that differ only in case: `cat`, `ls PATH`, `cp PATH` and a FUSE mount give for
/// each exactly what ntfs-3g gives (an exact match always wins); looked up ignoring case,
/// a name matching several entries is an error that names them, one matching a single
/// entry finds it.
#[test]
fn ntfs_names_differing_in_case_read_as_ntfs3g_reads_them() {
    if !require_root("ntfs_names_differing_in_case_read_as_ntfs3g_reads_them") {
        return;
    }
    let dir = tempdir();
    let vol = small_ntfs(dir.path());
    ntfs3g_fill(&vol, CASE_PAIRS);
    let paths = case_pair_paths();
    let paths: Vec<&str> = paths.iter().map(|s| s.as_str()).collect();
    let (want, inos) = with_ntfs3g(&vol, |m| {
        let inos: BTreeMap<String, u64> = paths
            .iter()
            .map(|p| {
                use std::os::unix::fs::MetadataExt;
                (
                    p.to_string(),
                    std::fs::symlink_metadata(m.join(p)).unwrap().ino(),
                )
            })
            .collect();
        (seen_under(m, &paths), inos)
    });
    // The volume holds what the test is about.
    assert_ne!(want["nan.3.gz"], want["NAN.3.gz"]);
    assert_eq!(want["_Exit.2.gz"], Seen::Link("_exit.2.gz".into()));
    assert_eq!(want["Pod"], Seen::Dir);
    let info = sh(
        "ntfsinfo",
        &["-F", "/Read me first.txt", vol.to_str().unwrap()],
    );
    assert!(info.contains("README~1.TXT"), "no DOS name: {info}");
    let img = image_of(&vol, dir.path());

    for (path, seen) in &want {
        let abs = format!("/{path}");
        // `ls PATH` lists a directory's entries, or the one entry: the file record ntfs-3g
        // gives as its inode number.
        let listed = ok(run(&[&"ls", &img, &abs]));
        if *seen != Seen::Dir {
            let json = ok(run(&[&"ls", &"--json", &img, &abs]));
            let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
            assert_eq!(v["ino"].as_u64(), Some(inos[path]), "ls {path}: {json}");
            if let Seen::Link(target) = seen {
                assert_eq!(v["target"].as_str(), Some(target.as_str()), "ls {path}");
            }
        }
        match seen {
            Seen::File(sum) => {
                let out = run(&[&"cat", &img, &abs]);
                assert!(out.status.success(), "cat {path}: {out:?}");
                assert_eq!(&hex_sha(&out.stdout), sum, "cat {path}");
                let dest = dir.path().join("cp-out");
                let _ = std::fs::remove_file(&dest);
                ok(run(&[&"cp", &"-q", &img, &abs, &dest]));
                assert_eq!(&hex_sha(&std::fs::read(&dest).unwrap()), sum, "cp {path}");
            }
            Seen::Link(target) => {
                let dest = dir.path().join("cp-link");
                let _ = std::fs::remove_file(&dest);
                ok(run(&[&"cp", &"-q", &img, &abs, &dest]));
                assert_eq!(
                    std::fs::read_link(&dest).unwrap().to_string_lossy(),
                    target.as_str(),
                    "cp {path}"
                );
            }
            Seen::Dir => {
                // The children of this directory, not of its neighbour in other case.
                let children = with_ntfs3g(&vol, |m| {
                    let mut n: Vec<String> = std::fs::read_dir(m.join(path))
                        .unwrap()
                        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect();
                    n.sort();
                    n
                });
                for c in &children {
                    assert!(listed.contains(c.as_str()), "ls {path}: {listed}");
                }
                let dest = dir.path().join(format!("cp-dir-{path}"));
                ok(run(&[&"cp", &"-r", &"-q", &img, &abs, &dest]));
                for c in &children {
                    let p = format!("{path}/{c}");
                    let Seen::File(sum) = &want[&p] else {
                        panic!("{p}")
                    };
                    assert_eq!(
                        &hex_sha(&std::fs::read(dest.join(c)).unwrap()),
                        sum,
                        "cp {p}"
                    );
                }
            }
        }
    }

    // Ignoring case: one match is found, several are an error naming them, not a pick.
    let out = ok(run(&[&"cat", &img, &"/only.TXT"]));
    assert_eq!(out, "one file in this case\n");
    let out = ok(run(&[&"cat", &img, &"/READ ME FIRST.txt"]));
    assert_eq!(out, "with a DOS name\n");
    for (asked, names) in [
        ("/NAn.3.gz", ["nan.3.gz", "NAN.3.gz"]),
        ("/INDEX.HTML", ["index.html", "Index.html"]),
        ("/POD/same", ["pod", "Pod"]),
        ("/big/Case 0757", ["case 0757", "CASE 0757"]),
    ] {
        let o = run(&[&"cat", &img, &asked]);
        let (code, stdout, stderr) = outcome(&o);
        assert_ne!(code, 0, "cat {asked} picked one: {stdout}");
        assert!(stdout.is_empty(), "cat {asked}: {stdout}");
        assert!(stderr.contains("ambiguous"), "cat {asked}: {stderr}");
        for n in names {
            assert!(stderr.contains(n), "cat {asked}: {stderr}");
        }
        let o = run(&[&"ls", &img, &asked]);
        assert_ne!(o.status.code(), Some(0), "ls {asked}");
    }

    // A FUSE mount looks names up exactly, as ntfs-3g does.
    let mnt = dir.path().join("strata-mnt");
    if let Some(m) = Mounted::new(&img, &mnt) {
        let got = std::panic::catch_unwind(|| seen_under(&m.0, &paths));
        let missing = std::fs::metadata(m.0.join("NAn.3.gz")).map(|_| ());
        drop(m);
        assert_eq!(got.unwrap(), want);
        assert_eq!(
            missing.unwrap_err().kind(),
            std::io::ErrorKind::NotFound,
            "the mount is exact as ntfs-3g is"
        );
    }
}

/// Sets the initialized size (valid data length, offset 0x38 of a non-resident attribute
/// record) of the first piece of `$DATA` attribute STREAM of file record REC to INIT, in
/// the volume file VOL: argv = VOL REC STREAM INIT. The piece is looked for in the record
/// and, for a file whose attributes spill over (`$ATTRIBUTE_LIST`), in its extension
/// records. The update sequence array is undone before the edit and redone after it.
const SET_INITIALIZED: &str = r#"
import struct, sys
vol, rec, stream, init = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
f = open(vol, 'r+b')
boot = f.read(512)
bps = struct.unpack_from('<H', boot, 11)[0]
cs = bps * boot[13]
mft = struct.unpack_from('<Q', boot, 0x30)[0] * cs
cpr = struct.unpack_from('<b', boot, 0x40)[0]
rs = cpr * cs if cpr > 0 else 1 << -cpr
def load(n):
    f.seek(mft + n * rs); r = bytearray(f.read(rs))
    if r[:4] != b'FILE':
        return None
    usa, count = struct.unpack_from('<HH', r, 4)
    for i in range(1, count):
        assert r[i * 512 - 2:i * 512] == r[usa:usa + 2], 'torn record %d' % n
        r[i * 512 - 2:i * 512] = r[usa + 2 * i:usa + 2 * i + 2]
    return r
def store(n, r):
    usa, count = struct.unpack_from('<HH', r, 4)
    for i in range(1, count):
        r[usa + 2 * i:usa + 2 * i + 2] = r[i * 512 - 2:i * 512]
        r[i * 512 - 2:i * 512] = r[usa:usa + 2]
    f.seek(mft + n * rs); f.write(r)
def edit(n):
    r = load(n)
    if r is None:
        return False
    assert struct.unpack_from('<I', r, 0x2c)[0] == n, 'record %d is not where expected' % n
    if n != rec and struct.unpack_from('<Q', r, 0x20)[0] & (2**48 - 1) != rec:
        return False
    at = struct.unpack_from('<H', r, 0x14)[0]
    while struct.unpack_from('<I', r, at)[0] != 0xFFFFFFFF:
        ty, length = struct.unpack_from('<II', r, at)
        nonres, nlen, noff = r[at + 8], r[at + 9], struct.unpack_from('<H', r, at + 10)[0]
        name = bytes(r[at + noff:at + noff + 2 * nlen]).decode('utf-16-le')
        if ty == 0x80 and name == stream and nonres and struct.unpack_from('<Q', r, at + 0x10)[0] == 0:
            size = struct.unpack_from('<Q', r, at + 0x30)[0]
            assert init < size, (init, size)
            struct.pack_into('<Q', r, at + 0x38, init)
            store(n, r)
            return True
        at += length
    return False
assert edit(rec) or any(edit(n) for n in range(16, 4096) if n != rec), 'no $DATA piece found'
"#;

/// Files whose initialized size (valid data length) is below their size, with the old
/// contents still in the clusters past it. No Linux tool writes this: ntfs-3g always
/// initializes what it writes. Windows leaves it behind for preallocated files
/// (SetFileValidData, databases), VSS stores and downloads in progress, so the sizes are
/// set here by editing the file records of files written through ntfs-3g. Bytes past the
/// initialized size read as zeros through ntfs-3g, and must through strata: a plain file, a
/// named stream, a compressed file, a sparse file, and a compressed file so fragmented that
/// its attribute continues in other file records.
#[test]
fn ntfs_bytes_past_the_initialized_size_read_as_zeros() {
    if !require_root("ntfs_bytes_past_the_initialized_size_read_as_zeros") {
        return;
    }
    let dir = tempdir();
    let vol = small_ntfs(dir.path());
    let windows = "streams_interface=windows";
    ntfs3g_fill_with(
        &vol,
        windows,
        r#"
import os
def nonzero(n, seed):
    return bytes((i * seed + i // 4093 + 1) % 255 + 1 for i in range(n))
open('plain.bin', 'wb').write(nonzero(300000, 7))
open('streamed.txt', 'w').write('main contents\n')
open('streamed.txt:extra', 'wb').write(nonzero(200000, 11))
os.mkdir('comp')
os.setxattr('comp', 'system.ntfs_attrib_be', (0x800).to_bytes(4, 'big'))
open('comp/text.txt', 'w').write(''.join('line %d of a compressible file\n' % i for i in range(8000)))
with open('comp/fragmented.bin', 'wb') as f:
    for i in range(200):
        f.write((b'unit %d compressible ' % i) * 3000); f.write(nonzero(8000, i + 3))
with open('sparse.bin', 'wb') as f:
    f.truncate(2 << 20); f.write(nonzero(100000, 5)); f.seek(1 << 20); f.write(nonzero(300000, 13))
"#,
    );
    // (path as ntfs-3g shows it, file, stream, initialized size)
    let cases = [
        ("plain.bin", "/plain.bin", "", 100_003u64),
        ("streamed.txt:extra", "/streamed.txt", "extra", 12_293),
        ("comp/text.txt", "/comp/text.txt", "", 70_001),
        ("comp/fragmented.bin", "/comp/fragmented.bin", "", 1_000_000),
        ("sparse.bin", "/sparse.bin", "", (1 << 20) + 5000),
    ];
    let read_all = |m: &Path| -> Vec<Vec<u8>> {
        cases
            .iter()
            .map(|c| std::fs::read(m.join(c.0)).unwrap())
            .collect()
    };
    let before = with_ntfs3g_opts(&vol, windows, read_all);
    let info = sh(
        "ntfsinfo",
        &["-F", "/comp/fragmented.bin", vol.to_str().unwrap()],
    );
    assert!(info.contains("$ATTRIBUTE_LIST"), "{info}");
    let mut records = Vec::new();
    for (_, file, stream, init) in &cases {
        let info = sh("ntfsinfo", &["-F", file, vol.to_str().unwrap()]);
        let rec: u64 = info
            .split("Dumping Inode ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{file}: {info}"));
        records.push(rec);
        python(
            SET_INITIALIZED,
            dir.path(),
            &[
                &vol,
                Path::new(&rec.to_string()),
                Path::new(stream),
                Path::new(&init.to_string()),
            ],
        );
    }
    let after = with_ntfs3g_opts(&vol, windows, read_all);
    for (i, (path, _, _, init)) in cases.iter().enumerate() {
        let (b, a, init) = (&before[i], &after[i], *init as usize);
        assert_eq!(a.len(), b.len(), "{path}: the size is kept");
        assert_eq!(
            a[..init],
            b[..init],
            "{path}: ntfs-3g before the initialized size"
        );
        assert!(
            b[init..].iter().any(|&x| x != 0),
            "{path}: no old data past the initialized size"
        );
        assert!(
            a[init..].iter().all(|&x| x == 0),
            "{path}: ntfs-3g reads zeros past the initialized size"
        );
    }
    // The Sleuth Kit reads the same (main contents only: it names streams by attribute id).
    for (i, (path, _, stream, _)) in cases.iter().enumerate() {
        if stream.is_empty() {
            let o = Command::new("icat")
                .arg(&vol)
                .arg(records[i].to_string())
                .output()
                .expect("icat (sleuthkit) is needed for this test");
            assert!(o.status.success(), "icat {path}");
            assert!(o.stdout == after[i], "icat {path} differs from ntfs-3g");
        }
    }

    let img = image_of(&vol, dir.path());
    for (i, (path, _, stream, _)) in cases.iter().enumerate() {
        let abs = format!("/{path}");
        let o = run(&[&"cat", &img, &abs]);
        assert!(o.status.success(), "cat {path}: {o:?}");
        assert!(o.stdout == after[i], "cat {path} differs from ntfs-3g");
        // cp copies main contents (streams go with `cat FILE:STREAM`).
        if !stream.is_empty() {
            continue;
        }
        let dest = dir.path().join("cp-out");
        let _ = std::fs::remove_file(&dest);
        ok(run(&[&"cp", &"-q", &img, &abs, &dest]));
        assert!(
            std::fs::read(&dest).unwrap() == after[i],
            "cp {path} differs from ntfs-3g"
        );
    }
    let mnt = dir.path().join("strata-mnt");
    if let Some(m) = Mounted::new(&img, &mnt) {
        let got: Vec<(String, Vec<u8>)> = cases
            .iter()
            .filter(|c| c.2.is_empty())
            .map(|c| (c.0.to_string(), std::fs::read(m.0.join(c.0)).unwrap()))
            .collect();
        drop(m);
        for (path, data) in got {
            let i = cases.iter().position(|c| c.0 == path).unwrap();
            assert!(data == after[i], "mount {path} differs from ntfs-3g");
        }
    }
}

/// Directories carrying a reparse point that is not a link: OneDrive's cloud folders (tags
/// 0x9000001a to 0x9000f01a) keep their children in their own index. Written here through
/// ntfs-3g's `system.ntfs_reparse_data` on directories that already hold files, as the
/// cloud filter does. ntfs-3g itself shows such a directory as a link to "unsupported
/// reparse tag" and cannot enter it, so The Sleuth Kit (`fls -r -p`, `icat`) is the
/// reference: strata lists the same directories and files with the same contents (through
/// `ls`, `cat` and a mount), and a junction and a symbolic link beside them stay links.
#[test]
fn ntfs_directories_with_cloud_reparse_points_list_as_tsk_lists_them() {
    if !require_root("ntfs_directories_with_cloud_reparse_points_list_as_tsk_lists_them") {
        return;
    }
    let dir = tempdir();
    let vol = small_ntfs(dir.path());
    ntfs3g_fill(
        &vol,
        r#"
import os, struct
def reparse(tag, body):
    return struct.pack('<IHH', tag, len(body), 0) + body
def mount_point(sub):
    sub = sub.encode('utf-16-le')
    body = struct.pack('<HHHH', 0, len(sub), len(sub) + 2, 0) + sub + b'\0\0' + b'\0\0'
    return reparse(0xA0000003, body)
os.makedirs('OneDrive/Documents/Old')
open('OneDrive/Documents/report.txt', 'w').write('quarterly report\n' * 100)
open('OneDrive/Documents/Old/notes.txt', 'w').write('old notes\n')
open('OneDrive/photo.bin', 'wb').write(bytes(range(256)) * 400)
os.makedirs('Sync/inner')
open('Sync/inner/data.csv', 'w').write('a,b\n1,2\n')
os.mkdir('junction')
open('link', 'w').close()
# A cloud file's own reparse data starts with a version and the provider's blob.
cloud = b'\x01\x00\x00\x00' + os.urandom(40)
for path, data in [
    ('OneDrive', reparse(0x9000701A, cloud)),
    ('OneDrive/Documents', reparse(0x9000001A, cloud)),
    ('Sync', reparse(0x9000301A, cloud)),
    ('junction', mount_point('\\??\\C:\\Sync')),
]:
    try:
        os.setxattr(path, 'system.ntfs_reparse_data', data)
    except OSError:
        pass
"#,
    );
    // ntfs-3g cannot enter the cloud folders (said above).
    let entered = with_ntfs3g(&vol, |m| std::fs::read_dir(m.join("OneDrive")).is_ok());
    assert!(
        !entered,
        "ntfs-3g now enters cloud folders: compare with it too"
    );

    // The Sleuth Kit's view: path -> (kind, record) for every user file and directory.
    let fls = sh("fls", &["-r", "-p", "-u", vol.to_str().unwrap()]);
    let mut want: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for l in fls.lines() {
        let Some((head, path)) = l.split_once(":\t") else {
            continue;
        };
        if path.starts_with('$') || path.contains(':') {
            continue;
        }
        let mut f = head.split_whitespace();
        let kind = f.next().unwrap().split('/').nth(1).unwrap().to_string();
        let rec: u64 = f
            .last()
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        want.insert(format!("/{path}"), (kind, rec));
    }
    for p in [
        "/OneDrive/Documents/Old/notes.txt",
        "/OneDrive/photo.bin",
        "/Sync/inner/data.csv",
    ] {
        assert_eq!(want[p].0, "r", "fls: {p}: {fls}");
    }

    let img = image_of(&vol, dir.path());
    let mut seen: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for l in ok(run(&[&"ls", &"-R", &"--json", &img, &"/"])).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let kind = match v["type"].as_str().unwrap() {
            "file" => "r",
            "dir" => "d",
            "symlink" => "l",
            other => panic!("{l}: {other}"),
        };
        seen.insert(
            v["path"].as_str().unwrap().to_string(),
            (kind.into(), v["ino"].as_u64().unwrap()),
        );
    }
    // Links stay links (TSK shows a junction as the directory it is stored as).
    assert_eq!(seen["/junction"].0, "l");
    assert_eq!(seen["/link"].0, "r", "an empty file here, no reparse data");
    want.get_mut("/junction").unwrap().0 = "l".into();
    assert_eq!(seen, want);

    let mnt = dir.path().join("strata-mnt");
    let mounted = Mounted::new(&img, &mnt);
    for (path, (kind, rec)) in &want {
        if kind != "r" {
            continue;
        }
        let o = Command::new("icat")
            .arg(&vol)
            .arg(rec.to_string())
            .output()
            .unwrap();
        assert!(o.status.success(), "icat {path}");
        let sum = hex_sha(&o.stdout);
        let cat = run(&[&"cat", &img, path]);
        assert!(cat.status.success(), "cat {path}: {cat:?}");
        assert_eq!(hex_sha(&cat.stdout), sum, "cat {path}");
        if let Some(m) = &mounted {
            let data = std::fs::read(m.0.join(&path[1..])).unwrap();
            assert_eq!(hex_sha(&data), sum, "mount {path}");
        }
    }
    if let Some(m) = &mounted {
        let md = std::fs::symlink_metadata(m.0.join("OneDrive/Documents")).unwrap();
        assert!(md.is_dir());
    }
}

/// Makes a directory's index loop, in the volume file VOL: the end entry of the first
/// index record (INDX) of directory record DIR is given a subnode pointing back to that
/// same record, as damage could. argv = VOL DIR. Prints the record's VCN.
const LOOP_INDEX: &str = r#"
import struct, sys
vol, dirrec = sys.argv[1], int(sys.argv[2])
f = open(vol, 'r+b')
data = f.read()
for pos in range(0, len(data), 4096):
    r = bytearray(data[pos:pos + 4096])
    if r[:4] != b'INDX':
        continue
    usa, count = struct.unpack_from('<HH', r, 4)
    for i in range(1, count):
        r[i * 512 - 2:i * 512] = r[usa + 2 * i:usa + 2 * i + 2]
    first, used, alloc = struct.unpack_from('<III', r, 0x18)
    at = 0x18 + first
    if struct.unpack_from('<Q', r, at + 16)[0] & (2**48 - 1) != dirrec:
        continue
    if r[0x18 + 12] & 1 or used + 8 > alloc:
        continue
    while True:
        length, _, flags = struct.unpack_from('<HHI', r, at + 8)
        if flags & 2:
            break
        at += length
    vcn = struct.unpack_from('<Q', r, 0x10)[0]
    struct.pack_into('<HHI', r, at + 8, length + 8, 0, flags | 1)
    struct.pack_into('<Q', r, at + length, vcn)
    struct.pack_into('<I', r, 0x18 + 4, used + 8)
    r[0x18 + 12] |= 1
    for i in range(1, count):
        r[usa + 2 * i:usa + 2 * i + 2] = r[i * 512 - 2:i * 512]
        r[i * 512 - 2:i * 512] = r[usa:usa + 2]
    f.seek(pos); f.write(r)
    print(vcn)
    sys.exit(0)
sys.exit('no index record of that directory with room for the change')
"#;

/// A directory index whose subnodes loop (damage) is an error naming the record, for
/// listings and lookups, within a memory limit and in bounded time: it is not walked
/// again and again.
#[test]
fn ntfs_looping_directory_index_is_an_error() {
    if !require_root("ntfs_looping_directory_index_is_an_error") {
        return;
    }
    let dir = tempdir();
    let vol = small_ntfs(dir.path());
    ntfs3g_fill(
        &vol,
        r#"
import os
os.mkdir('big')
for i in range(1500):
    open('big/entry %04d with a long name' % i, 'w').write(str(i))
"#,
    );
    let info = sh("ntfsinfo", &["-F", "/big", vol.to_str().unwrap()]);
    let rec = info
        .split("Dumping Inode ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    python(LOOP_INDEX, dir.path(), &[&vol, Path::new(&rec)]);
    let img = image_of(&vol, dir.path());
    let strata_bin = env!("CARGO_BIN_EXE_strata");
    for args in [
        vec!["ls", "-R", "/"],
        vec!["ls", "/big"],
        vec!["cat", "/big/entry 1499 with a long name"],
        vec!["cat", "/big/ENTRY 0000 WITH A LONG NAME"],
    ] {
        let start = Instant::now();
        // 1 GiB of address space and 60 s: a walk that follows the loop fails either.
        let o = Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 1048576; exec timeout 60 \"$@\"")
            .arg("sh")
            .arg(strata_bin)
            .arg(args[0])
            .args(&args[1..args.len() - 1])
            .arg(&img)
            .arg(args[args.len() - 1])
            .output()
            .unwrap();
        let (code, _, stderr) = outcome(&o);
        assert!(
            start.elapsed() < Duration::from_secs(50),
            "{args:?}: too slow"
        );
        if code == 0 {
            // A lookup whose path through the index does not meet the loop may succeed.
            assert_eq!(args[0], "cat", "{args:?} listed a looping index");
            continue;
        }
        assert!(
            code != 124 && code != 101 && code < 128,
            "{args:?}: exit {code}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("record {rec}")),
            "{args:?}: {stderr}"
        );
    }
}

/// The initialized size of a value whose first piece lives in an extension record (named
/// through the file's `$ATTRIBUTE_LIST`): stream `111` of `Nine.txt` on a volume Windows
/// wrote (go-ntfs's `charlie.dd`), its initialized size lowered as in
/// [`ntfs_bytes_past_the_initialized_size_read_as_zeros`]. ntfs-3g moves other attributes
/// out of a full record first, so this layout comes from Windows.
#[test]
fn ntfs_initialized_size_of_a_stream_in_an_extension_record() {
    if !require_root("ntfs_initialized_size_of_a_stream_in_an_extension_record") {
        return;
    }
    let dir = tempdir();
    let vol = third_party("go-ntfs-charlie/charlie.dd.zst", dir.path());
    let info = sh("ntfsinfo", &["-F", "/Nine.txt", vol.to_str().unwrap()]);
    assert!(
        info.contains("$DATA (0x80) from mft record 39") && info.contains("'111'"),
        "stream 111 is no longer in an extension record: {info}"
    );
    let windows = "streams_interface=windows";
    let read = |m: &Path| std::fs::read(m.join("Nine.txt:111")).unwrap();
    let before = with_ntfs3g_opts(&vol, windows, read);
    let init = 1234usize;
    python(
        SET_INITIALIZED,
        dir.path(),
        &[
            &vol,
            Path::new("38"),
            Path::new("111"),
            Path::new(&init.to_string()),
        ],
    );
    let after = with_ntfs3g_opts(&vol, windows, read);
    assert_eq!(after.len(), before.len());
    assert_eq!(after[..init], before[..init]);
    assert!(
        before[init..].iter().any(|&b| b != 0),
        "no old data to hide"
    );
    assert!(
        after[init..].iter().all(|&b| b == 0),
        "ntfs-3g reads zeros past the initialized size"
    );
    let img = image_of(&vol, dir.path());
    let o = run(&[&"cat", &img, &"/Nine.txt:111"]);
    assert!(o.status.success(), "{o:?}");
    assert!(o.stdout == after, "cat differs from ntfs-3g");
}

/// Compressed files read twice through the filesystems of a chain decode each of their
/// units once (LZNT1 compression units of 16 clusters; WOF chunks of 4 KiB with XPRESS and
/// 32 KiB with LZX): the units are kept in the chain's cache, under the same ceiling as its
/// chunks (a ceiling smaller than a file makes its second read decode again, and nothing
/// held goes over it). Every read gives what ntfs-3g reads.
#[test]
fn ntfs_compressed_units_are_decoded_once_under_the_chain_ceiling() {
    if !require_root("ntfs_compressed_units_are_decoded_once_under_the_chain_ceiling") {
        return;
    }
    let dir = tempdir();
    let vol = small_ntfs(dir.path());
    let lznt1 = r#"
os.mkdir('comp')
os.setxattr('comp', 'system.ntfs_attrib_be', (0x800).to_bytes(4, 'big'))
open('comp/text.txt', 'w').write(''.join('line %d of a compressible file\n' % i for i in range(50000)))
"#;
    ntfs3g_fill_with(
        &vol,
        "streams_interface=windows",
        &format!("{WOF_FILL}{lznt1}"),
    );
    // A compression unit is 16 clusters (boot sector: bytes per sector times sectors per
    // cluster); WOF chunks are as the algorithm says.
    let boot = std::fs::read(&vol).unwrap();
    let cluster = u64::from(u16::from_le_bytes([boot[11], boot[12]])) * u64::from(boot[13]);
    let files = [
        ("comp/text.txt", "comp/text.txt", 16 * cluster),
        ("lzx", "lzx.orig", 32 << 10),
        ("xpress4k", "xpress4k.orig", 4 << 10),
    ];
    let want: Vec<Vec<u8>> = with_ntfs3g(&vol, |m| {
        files
            .iter()
            .map(|f| std::fs::read(m.join(f.1)).unwrap())
            .collect()
    });
    let img = image_of(&vol, dir.path());

    // Reads `path` twice with a cache of `ceiling`: (units, chunks) decoded after each.
    let read = |path: &str, want: &[u8], ceiling: u64| {
        let chain = strata::point::open_chain(&img, &Default::default(), ceiling).unwrap();
        let vfs = strata::point::vfs_of(&chain).unwrap();
        let strata::vfs::Target::Node { mount, node } = vfs.resolve(path).unwrap() else {
            panic!("{path}: not a file")
        };
        let fs = vfs.fs(mount).unwrap();
        let mut loads = Vec::new();
        for pass in 0..2 {
            let got = strata::vfs::Vfs::read_all(&**fs, node, "").unwrap();
            assert!(got == want, "{path}, pass {pass}: differs from ntfs-3g");
            let cache = chain.cache();
            assert!(cache.bytes_held() <= ceiling);
            loads.push((cache.unit_loads(), cache.chunk_loads()));
        }
        loads
    };
    for ((path, _, unit), want) in files.iter().zip(&want) {
        let units = (want.len() as u64).div_ceil(*unit);
        assert!(units > 4, "{path}: {units} units");
        // Room for everything: the second read is answered from the cache alone.
        let loads = read(&format!("/{path}"), want, 64 << 20);
        assert_eq!(loads[0].0, units, "{path}: each unit decoded once");
        assert_eq!(
            loads[1], loads[0],
            "{path}: the second read decoded nothing"
        );
    }
    // A ceiling of four units: the units draw on it, so they do not all stay.
    let (unit, want) = (files[0].2, &want[0]);
    let units = (want.len() as u64).div_ceil(unit);
    let loads = read("/comp/text.txt", want, 4 * unit);
    assert_eq!(loads[0].0, units);
    assert!(loads[1].0 > units, "{loads:?}");
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
fn ntfs_samples() {
    let dir = tempdir();
    let raw = third_party("ntfs-samples-msuhanov/ntfs-2m.raw.zst", dir.path());
    check_against_listing(
        &raw,
        "/p1",
        "ntfs-samples-msuhanov/expected/ntfs-2m.p1.listing.txt",
        &[],
    );
    // Written by Windows 10, with an LZNT1-compressed file (1.txt).
    let dir = tempdir();
    let raw = third_party("ntfs-samples-msuhanov/ntfs-ramslack.raw.zst", dir.path());
    check_against_listing(
        &raw,
        "/p1",
        "ntfs-samples-msuhanov/expected/ntfs-ramslack.p1.listing.txt",
        &[],
    );
    let dir = tempdir();
    let raw = third_party("ntfs-rs/testfs1.zst", dir.path());
    // 512-byte clusters: some file records of many_subdirs straddle two $MFT data runs
    // (the ntfs crate alone misreads those).
    check_against_listing(&raw, "/", "ntfs-rs/expected/testfs1.listing.txt", &[]);
}

#[test]
fn ntfs_alternate_data_streams() {
    let dir = tempdir();
    let raw = third_party("go-ntfs-charlie/charlie.dd.zst", dir.path());
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
    assert_eq!(code, 3);
    assert!(err.contains("WofCompressedData stream is missing"), "{err}");
    // cp writes the decoded bytes, and reports the damaged file without stopping.
    let out = dir.path().join("out");
    let (code, _, err) = outcome(&run(&[&"cp", &"-r", &"-q", &img, &"/", &out]));
    assert_eq!(code, 3);
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

/// Clusters of attribute `ty` (as `istat` names it, e.g. `$DATA`) of record `inode` of
/// `vol`, from The Sleuth Kit's `istat`.
fn istat_clusters(vol: &Path, inode: &str, ty: &str) -> Vec<u64> {
    let out = sh("istat", &[vol.to_str().unwrap(), inode]);
    let mut clusters = Vec::new();
    let mut inside = false;
    for line in out.lines() {
        if line.starts_with("Type: ") {
            inside = line.starts_with(&format!("Type: {ty} "));
            continue;
        }
        if inside {
            // istat shows a sparse run (the $MFT's unallocated tail) as cluster 0, which
            // is the boot sector, never an attribute's.
            clusters.extend(
                line.split_whitespace()
                    .map(|w| w.parse::<u64>().unwrap())
                    .filter(|&c| c != 0),
            );
        }
    }
    assert!(
        !clusters.is_empty(),
        "record {inode}: no {ty} clusters: {out}"
    );
    clusters
}

/// `create` packs the `$MFT` and the directories' index blocks into chunks of their own,
/// smaller than the image's chunk size and holding no file contents. The image restores
/// byte for byte and reads as ntfs-3g reads the volume.
#[test]
fn ntfs_metadata_in_chunks_of_its_own() {
    use strata::container::reader::Image;
    if !require_root("ntfs_metadata_in_chunks_of_its_own") {
        return;
    }
    let dir = tempdir();
    let vol = dir.path().join("vol.ntfs");
    std::fs::File::create(&vol)
        .unwrap()
        .set_len(96 << 20)
        .unwrap();
    sh(
        "mkntfs",
        &["-q", "-F", "-f", "-c", "4096", vol.to_str().unwrap()],
    );
    // Directories filled between big files, so that their index blocks lie among file data.
    ntfs3g_fill(
        &vol,
        r#"
import os, random
rng = random.Random(5)
for d in range(5):
    os.makedirs('d%d' % d)
    with open('d%d/data.bin' % d, 'wb') as f:
        f.write(rng.randbytes(3 << 20))
    for i in range(300):
        open('d%d/entry %03d with a long name.txt' % (d, i), 'w').write('%d %d\n' % (d, i) * (i + 1))
"#,
    );
    let img = round_trip(dir.path(), &vol, &[]);
    let image = Image::open(&img).unwrap();
    let chunk_size = image.header().chunk_size;
    let index = image.index();
    let bs = u64::from(image.header().block_size);
    let fsstat = sh("fsstat", &[vol.to_str().unwrap()]);
    let cs: u64 = fsstat
        .lines()
        .find_map(|l| l.strip_prefix("Cluster Size: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("fsstat: {fsstat}"));
    // The chunk holding each stored block of `clusters` (zero blocks are not stored).
    let chunks_of = |clusters: &[u64]| -> Vec<u32> {
        let mut out = Vec::new();
        for &cl in clusters {
            for b in cl * cs / bs..((cl + 1) * cs).div_ceil(bs) {
                if let Some(e) = index
                    .extents
                    .iter()
                    .find(|e| e.disk_block <= b && b < e.end())
                {
                    out.push(e.chunk);
                }
            }
        }
        out
    };
    let small = |c: &u32| index.chunks[*c as usize].raw_len < chunk_size;
    let mut meta = std::collections::BTreeSet::new();
    let mft = chunks_of(&istat_clusters(&vol, "0", "$DATA"));
    assert!(!mft.is_empty() && mft.iter().all(small), "$MFT in {mft:?}");
    meta.extend(mft);
    for d in 0..5 {
        let rec = sh("ifind", &["-n", &format!("/d{d}"), vol.to_str().unwrap()]);
        let idx = chunks_of(&istat_clusters(&vol, rec.trim(), "$INDEX_ALLOCATION"));
        assert!(
            !idx.is_empty() && idx.iter().all(small),
            "/d{d} index in {idx:?}"
        );
        meta.extend(idx);
        let rec = sh(
            "ifind",
            &["-n", &format!("/d{d}/data.bin"), vol.to_str().unwrap()],
        );
        let data = chunks_of(&istat_clusters(&vol, rec.trim(), "$DATA"));
        assert!(
            !data.is_empty() && data.iter().all(|c| !meta.contains(c)),
            "/d{d}/data.bin shares a chunk with metadata"
        );
    }

    let mut paths = vec![];
    for d in 0..5 {
        paths.push(format!("d{d}"));
        paths.push(format!("d{d}/data.bin"));
        for i in [0, 7, 150, 299] {
            paths.push(format!("d{d}/entry {i:03} with a long name.txt"));
        }
    }
    let paths: Vec<&str> = paths.iter().map(|s| s.as_str()).collect();
    let want = with_ntfs3g(&vol, |m| seen_under(m, &paths));
    let Some(m) = Mounted::new(&img, &dir.path().join("mnt")) else {
        return;
    };
    assert_eq!(seen_under(&m.0, &paths), want);
}

/// The file records `ntfsinfo` dumps attribute `attr` (e.g. `$DATA (0x80)`) of `inode` from.
fn records_of(vol: &Path, inode: &str, attr: &str) -> Vec<u64> {
    let info = sh("ntfsinfo", &["-v", "-i", inode, vol.to_str().unwrap()]);
    let prefix = format!("Dumping attribute {attr} from mft record ");
    info.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|r| r.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

/// A file and a directory on a fragmented volume, whose `$DATA` and `$INDEX_ALLOCATION`
/// outgrew their file records: ntfs-3g keeps the first piece in the base record and puts
/// the rest in extension records named by a non-resident `$ATTRIBUTE_LIST` (Windows splits
/// big attributes the same way). `cat` of the file gives what TSK's icat and ntfs-3g read
/// (it gave an empty file), and every name in the directory is found by path, in `ls` and
/// through a mount, as the same record ntfs-3g shows, with the same bytes (the directory
/// could not be listed).
#[test]
fn ntfs_split_attributes() {
    if !require_root("ntfs_split_attributes") {
        return;
    }
    let dir = tempdir();
    let vol = dir.path().join("split.ntfs");
    let script = fixtures().join("make-ntfs-split-attributes.sh");
    sh(script.to_str().unwrap(), &[vol.to_str().unwrap()]);
    // The volume holds what the test is about (big.bin is record 105, dir record 120).
    let data = records_of(&vol, "105", "$DATA (0x80)");
    assert!(
        data.len() >= 3 && data[0] == 105,
        "$DATA pieces in {data:?}"
    );
    let index = records_of(&vol, "120", "$INDEX_ALLOCATION (0xa0)");
    assert!(
        index.len() >= 2 && index.contains(&120),
        "index in {index:?}"
    );
    let info = sh("ntfsinfo", &["-v", "-i", "105", vol.to_str().unwrap()]);
    let list = info
        .split("Dumping attribute $ATTRIBUTE_LIST")
        .nth(1)
        .unwrap();
    assert!(
        list.split("Dumping")
            .next()
            .unwrap()
            .contains("Resident: \t\t No"),
        "the attribute list is resident: {list}"
    );
    // What ntfs-3g reads: every file's bytes and record number.
    let want: BTreeMap<String, (String, u64)> = with_ntfs3g(&vol, |m| {
        let mut out = BTreeMap::new();
        for rel in ["big.bin", "filler.bin"]
            .map(String::from)
            .into_iter()
            .chain(
                std::fs::read_dir(m.join("dir"))
                    .unwrap()
                    .map(|e| format!("dir/{}", e.unwrap().file_name().to_string_lossy())),
            )
        {
            use std::os::unix::fs::MetadataExt;
            let p = m.join(&rel);
            let ino = std::fs::metadata(&p).unwrap().ino();
            out.insert(rel, (hex_sha(&std::fs::read(&p).unwrap()), ino));
        }
        out
    });
    assert_eq!(want.len(), 2002);
    let img = image_of(&vol, dir.path());
    for f in ["big.bin", "filler.bin"] {
        let o = run(&[&"cat", &img, &format!("/{f}")]);
        assert!(o.status.success(), "cat {f}: {o:?}");
        assert_eq!(
            hex_sha(&o.stdout),
            want[f].0,
            "cat {f} differs from ntfs-3g"
        );
        let icat = common::tsk::icat(&vol, 0, &want[f].1.to_string());
        assert_eq!(icat, want[f].0, "icat {f} differs from ntfs-3g");
    }
    // Lookups by path: `cat` of some paths spread over the index nodes, then every path
    // through a mount.
    for rel in want.keys().step_by(97) {
        let o = run(&[&"cat", &img, &format!("/{rel}")]);
        assert!(o.status.success(), "cat {rel}: {o:?}");
        assert_eq!(
            hex_sha(&o.stdout),
            want[rel].0,
            "cat {rel} differs from ntfs-3g"
        );
    }
    let mnt = dir.path().join("mnt");
    if let Some(m) = Mounted::new(&img, &mnt) {
        for (rel, (sha, ino)) in &want {
            use std::os::unix::fs::MetadataExt;
            let p = m.0.join(rel);
            let meta = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{rel}: {e}"));
            // The mount numbers inodes `(filesystem + 1) << 48 | record`.
            assert_eq!(meta.ino() & 0xFFFF_FFFF_FFFF, *ino, "{rel}: another record");
            let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert_eq!(&hex_sha(&got), sha, "{rel}: other bytes");
        }
    }
}
