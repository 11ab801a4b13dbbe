//! Encrypted images on real data: chains of a disk changed through the kernel's ext4 and
//! mtools restore byte-identical and list, copy and mount the same files the kernel shows;
//! no 16-byte piece of a file's contents or name is stored in clear; a wrong or missing key
//! exits 4 and writes nothing; chunk records moved within an image or between images of a
//! chain, and a byte flipped in each region of the file, fail with clear errors and never
//! give wrong data; key slots can be added and removed without touching the data.

mod common;
use common::*;
use std::collections::BTreeSet;
#[cfg(unix)]
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Argon2id cost of every passphrase slot made here (the default takes 256 MiB).
const CHEAP: [&str; 4] = ["--kdf-memory", "8", "--kdf-passes", "1"];

/// The secrets of a test, as files.
struct Secrets {
    pass: PathBuf,
    pass2: PathBuf,
    wrong: PathBuf,
    key: PathBuf,
    wrong_key: PathBuf,
}

fn secrets(dir: &Path) -> Secrets {
    let s = Secrets {
        pass: dir.join("pass.txt"),
        pass2: dir.join("pass2.txt"),
        wrong: dir.join("wrong.txt"),
        key: dir.join("key.bin"),
        wrong_key: dir.join("wrong-key.bin"),
    };
    std::fs::write(&s.pass, "correct horse battery staple\n").unwrap();
    std::fs::write(&s.pass2, "a second, longer passphrase").unwrap();
    // One character away from the right one.
    std::fs::write(&s.wrong, "correct horse battery staplf\n").unwrap();
    std::fs::write(&s.key, noise(64, 0x6b65)).unwrap();
    std::fs::write(&s.wrong_key, noise(64, 0x6b66)).unwrap();
    s
}

/// Runs strata with `args` (strings or paths); returns the output.
fn st(args: &[&dyn AsRef<OsStr>]) -> Output {
    strata()
        .env_remove("STRATA_PASSPHRASE")
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("strata runs")
}

/// `strata create --encrypt` of `disk` under the passphrase file `pass`, cheap cost.
fn create_encrypted(disk: &Path, image: &Path, pass: &Path, extra: &[&str]) {
    let mut args: Vec<&dyn AsRef<OsStr>> =
        vec![&"create", &"-q", &"--encrypt", &"--passphrase-file", &pass];
    for c in &CHEAP {
        args.push(c);
    }
    for e in extra {
        args.push(e);
    }
    args.push(&disk);
    args.push(&image);
    ok(st(&args));
}

/// A child (`--incremental` or `--differential`) of `parent`, opened with `pass`.
fn create_child(disk: &Path, image: &Path, flag: &str, parent: &Path, pass: &Path, extra: &[&str]) {
    let mut args: Vec<&dyn AsRef<OsStr>> = vec![
        &"create",
        &"-q",
        &flag,
        &parent,
        &"--passphrase-file",
        &pass,
    ];
    for e in extra {
        args.push(e);
    }
    args.push(&disk);
    args.push(&image);
    ok(st(&args));
}

/// sha256 of the disk `image` restores to, opened with `secret` (`--passphrase-file` or
/// `--key-file` and a file).
fn restored_sha(image: &Path, flag: &str, secret: &Path) -> String {
    let target = image.with_extension("restored");
    let _ = std::fs::remove_file(&target);
    ok(st(&[&"restore", &"-q", &image, &target, &flag, &secret]));
    let s = sha256(&target);
    std::fs::remove_file(&target).unwrap();
    s
}

/// Arguments as one line, for messages.
fn show(args: &[&dyn AsRef<OsStr>]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The names in `dir`.
fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Asserts a run failed with `code`, one line on stderr naming `image` (its file name),
/// no panic and nothing on stdout.
fn failed(o: &Output, code: i32, image: &Path, what: &str) -> String {
    let (c, out, err) = outcome(o);
    assert_eq!(c, code, "{what}: stdout: {out}\nstderr: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{what}: not one line: {err}");
    let name = image.file_name().unwrap().to_string_lossy();
    assert!(
        err.contains(name.as_ref()),
        "{what}: {err:?} does not name {name}"
    );
    assert!(out.is_empty(), "{what}: output on failure: {out}");
    no_debug_text(&err);
    assert!(!err.contains("panicked"), "{what}: {err}");
    // Messages are written as single lines, not with a source line's indentation in them.
    assert!(!err.contains("   "), "{what}: run of spaces in {err:?}");
    err
}

/// Where the pieces of an image file are: chunk records (offset, stored_len), the catalog
/// section (offset, length), the block-hash table (offset, length), the index (offset,
/// length) and the trailer's offset. Found by walking the records from 4096, as the
/// format lays them out; the index of an encrypted image is sealed and cannot be read.
struct Layout {
    records: Vec<(u64, u32)>,
    catalog: Option<(u64, u64)>,
    hashes: (u64, u64),
    index: (u64, u64),
    trailer: u64,
}

fn layout(image: &Path) -> Layout {
    let b = std::fs::read(image).unwrap();
    let le32 = |at: usize| u64::from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()));
    let le64 = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let mut at = 4096usize;
    let mut records = Vec::new();
    while &b[at..at + 4] == b"SCHK" {
        let stored = le32(at + 8);
        records.push((at as u64, stored as u32));
        at += 24 + stored as usize;
    }
    let catalog = (&b[at..at + 8] == b"STRATCAT").then(|| {
        let len = 64 + le64(at + 16);
        let c = (at as u64, len);
        at += len as usize;
        c
    });
    let trailer = b.len() as u64 - 64;
    assert_eq!(&b[trailer as usize..trailer as usize + 8], b"STRATEND");
    let index = (le64(trailer as usize + 8), le64(trailer as usize + 16));
    assert_eq!(index.0 + index.1, trailer, "{}: layout", image.display());
    assert!(
        index.0 > at as u64,
        "{}: no block-hash table",
        image.display()
    );
    Layout {
        records,
        catalog,
        hashes: (at as u64, index.0 - at as u64),
        index,
        trailer,
    }
}

/// `bytes` with bit 0 of byte `at` flipped.
fn flipped(bytes: &[u8], at: u64) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at as usize] ^= 1;
    b
}

// ---------------------------------------------------------------------------------------
// A disk changed through the kernel's ext4 and mtools.

/// The sample disk's FAT32 partition (p1) starts at 1 MiB, its ext4 partition (p3) at
/// 65 MiB for 30 MiB.
#[cfg(unix)]
const SAMPLE_P1: u64 = 1 << 20;
#[cfg(target_os = "linux")]
const SAMPLE_P3: (u64, u64) = (65 << 20, 30 << 20);

/// Copies `host` into the FAT partition at `offset` of `disk` as `name` (mtools).
#[cfg(unix)]
fn fat_put(disk: &Path, offset: u64, host: &Path, name: &str) {
    let img = format!("{}@@{offset}", disk.display());
    let o = std::process::Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &img])
        .arg(host)
        .arg(format!("::/{name}"))
        .output()
        .unwrap_or_else(|e| panic!("mcopy (mtools) is needed: {e}"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Mounts the sample disk's ext4 partition read-write through the kernel, runs `f` in
/// it and unmounts, whatever `f` does.
#[cfg(target_os = "linux")]
fn in_ext4(disk: &Path, f: impl FnOnce(&Path)) {
    let dev = Loop(sh(
        "losetup",
        &[
            "--find",
            "--show",
            "--offset",
            &SAMPLE_P3.0.to_string(),
            "--sizelimit",
            &SAMPLE_P3.1.to_string(),
            disk.to_str().unwrap(),
        ],
    ));
    let mnt = tempdir();
    sh(
        "mount",
        &["-t", "ext4", &dev.0, mnt.path().to_str().unwrap()],
    );
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(mnt.path())));
    for i in 0.. {
        let o = std::process::Command::new("umount")
            .arg(mnt.path())
            .output()
            .unwrap();
        if o.status.success() {
            break;
        }
        assert!(i < 50, "umount: {}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(dev);
    r.unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// A strata FUSE mount, undone on drop.
#[cfg(target_os = "linux")]
struct FuseMount(PathBuf);

#[cfg(target_os = "linux")]
impl Drop for FuseMount {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = std::process::Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.0)
                .status();
        }
    }
}

/// Four points of the sample disk changed through the kernel's ext4 and mtools, imaged as
/// an encrypted chain (full, incremental, differential, incremental) twice: clones (every
/// sector) and used blocks only. Each point restores byte-identical (clones), every file
/// listed and copied out of either chain is what the kernel, ntfs-3g and mtools show of the
/// disk then (`fixtures/manifest.sh`), a consolidated point and a synthetic full image stay
/// encrypted and give the same, a FUSE mount of the newest point shows the same tree, and
/// every image verifies.
#[cfg(target_os = "linux")]
#[test]
fn encrypted_chains_of_a_disk_changed_by_the_kernel_restore_and_browse_exactly() {
    let test = "encrypted_chains_of_a_disk_changed_by_the_kernel_restore_and_browse_exactly";
    if !require_root(test) {
        return;
    }
    let d = tempdir();
    let s = secrets(d.path());
    let disk = sample_disk(d.path());
    let clones = d.path().join("clones");
    let used = d.path().join("used");
    std::fs::create_dir(&clones).unwrap();
    std::fs::create_dir(&used).unwrap();
    let names = ["p0-full", "p1-inc", "p2-diff", "p3-inc"];
    let parents: [Option<(&str, &str)>; 4] = [
        None,
        Some(("--incremental", "p0-full")),
        Some(("--differential", "p1-inc")),
        Some(("--incremental", "p2-diff")),
    ];
    let img = |dir: &Path, n: &str| dir.join(format!("{n}.strata"));
    let pf: [&dyn AsRef<OsStr>; 2] = [&"--passphrase-file", &s.pass];
    let extra: Vec<&OsStr> = vec![OsStr::new("--passphrase-file"), s.pass.as_os_str()];
    let mut shas = Vec::new();
    let mut manifests = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match i {
            0 => {}
            1 => {
                in_ext4(&disk, |m| {
                    std::fs::write(m.join("new noise file.bin"), noise(1_500_000, 11)).unwrap();
                    std::fs::write(m.join("journal of changes.txt"), text(40_000, 12)).unwrap();
                    let victim = std::fs::read_dir(m)
                        .unwrap()
                        .map(|e| e.unwrap().path())
                        .find(|p| {
                            p.is_file()
                                && !p.to_string_lossy().contains("journal of changes")
                                && !p.to_string_lossy().contains("new noise")
                        });
                    if let Some(v) = victim {
                        std::fs::remove_file(v).unwrap();
                    }
                });
                let host = d.path().join("host-report.txt");
                std::fs::write(&host, text(20_000, 13)).unwrap();
                fat_put(&disk, SAMPLE_P1, &host, "quarterly report 2026.txt");
            }
            2 => in_ext4(&disk, |m| {
                use std::os::unix::fs::FileExt;
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(m.join("new noise file.bin"))
                    .unwrap();
                f.write_all_at(&noise(65_536, 21), 700_000).unwrap();
                std::fs::rename(
                    m.join("journal of changes.txt"),
                    m.join("renamed journal.txt"),
                )
                .unwrap();
            }),
            _ => in_ext4(&disk, |m| {
                std::fs::create_dir(m.join("many small files")).unwrap();
                for k in 0..30 {
                    std::fs::write(
                        m.join(format!("many small files/small file number {k:02}.txt")),
                        text(300 + k * 41, 300 + k as u64),
                    )
                    .unwrap();
                }
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(m.join("new noise file.bin"))
                    .unwrap()
                    .set_len(100_000)
                    .unwrap();
            }),
        }
        for (dir, clone) in [(&clones, true), (&used, false)] {
            let image = img(dir, name);
            let x: &[&str] = if clone { &["--clone"] } else { &[] };
            match parents[i] {
                None => create_encrypted(&disk, &image, &s.pass, x),
                Some((flag, p)) => create_child(&disk, &image, flag, &img(dir, p), &s.pass, x),
            }
            assert_eq!(
                info_json_with(&image, &s.pass)["kind"],
                ["full", "incremental", "differential", "incremental"][i]
            );
        }
        shas.push(sha256(&disk));
        manifests.push(manifest(
            &disk,
            None,
            &d.path().join(format!("{name}.manifest")),
        ));
    }
    assert_ne!(shas[0], shas[3], "the disk did not change");

    for (i, name) in names.iter().enumerate() {
        // Clones restore byte-identical to the disk as it was.
        let c = img(&clones, name);
        assert_eq!(
            restored_sha(&c, "--passphrase-file", &s.pass),
            shas[i],
            "{name}"
        );
        let u = img(&used, name);
        for image in [&c, &u] {
            compare_with_manifest_with(image, &manifests[i], &["p1", "p2", "p3"], &extra);
            let mut v: Vec<&dyn AsRef<OsStr>> = vec![&"verify", &"-q", image];
            v.extend_from_slice(&pf);
            ok(st(&v));
        }
    }

    // A synthetic full image of the newest point, and the newest point merged into its
    // parent: encrypted with the chain's key, the same disk and files.
    for dir in [&clones, &used] {
        let synth = dir.join("synthetic.strata");
        let newest = img(dir, names[3]);
        ok(st(&[
            &"consolidate",
            &"-q",
            &newest,
            &"--full",
            &synth,
            &"--passphrase-file",
            &s.pass,
        ]));
        ok(st(&[
            &"consolidate",
            &"-q",
            &newest,
            &"--passphrase-file",
            &s.pass,
        ]));
        assert!(!img(dir, names[2]).exists(), "the merged parent stays");
        for image in [&synth, &newest] {
            let _ = std::fs::remove_dir_all(image.with_extension("out"));
            let (code, _, err) = outcome(&st(&[&"info", &image]));
            assert_eq!(code, 4, "{}: opens without its key: {err}", image.display());
            compare_with_manifest_with(image, &manifests[3], &["p1", "p2", "p3"], &extra);
            ok(st(&[
                &"verify",
                &"-q",
                &image,
                &"--passphrase-file",
                &s.pass,
            ]));
        }
        if dir == &clones {
            assert_eq!(restored_sha(&synth, "--passphrase-file", &s.pass), shas[3]);
            assert_eq!(restored_sha(&newest, "--passphrase-file", &s.pass), shas[3]);
        }
        // The points before stay whole.
        ok(st(&[
            &"verify",
            &"-q",
            &img(dir, names[1]),
            &"--passphrase-file",
            &s.pass,
        ]));
        if dir == &clones {
            assert_eq!(
                restored_sha(&img(dir, names[1]), "--passphrase-file", &s.pass),
                shas[1]
            );
        }
    }

    // A FUSE mount of the newest point shows what the kernel showed.
    if !require_fuse(test) {
        return;
    }
    let newest = img(&used, names[3]);
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let (code, _, err) = outcome(&st(&[
        &"mount",
        &newest,
        &mnt,
        &"--passphrase-file",
        &s.wrong,
    ]));
    assert_eq!(code, 4, "{err}");
    assert!(!is_mounted(&mnt), "mounted with a wrong passphrase");
    ok(st(&[
        &"mount",
        &newest,
        &mnt,
        &"--passphrase-file",
        &s.pass,
    ]));
    let _guard = FuseMount(mnt.clone());
    assert!(is_mounted(&mnt));
    let script = fixtures().join("manifest.sh");
    let mut seen = String::new();
    for p in ["p1", "p2", "p3"] {
        seen += &sh(
            "bash",
            &[
                script.to_str().unwrap(),
                "--walk",
                p,
                mnt.join(p).to_str().unwrap(),
            ],
        );
        seen += "\n";
    }
    assert!(
        seen == manifests[3],
        "the mount differs from the kernel's view"
    );
}

/// `strata info --json` of an encrypted image.
fn info_json_with(image: &Path, pass: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(st(&[
        &"info",
        &image,
        &"--json",
        &"--passphrase-file",
        &pass,
    ])))
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// No plaintext in an encrypted image.

/// Up to `want` distinct needles: file names (path components of at least 8 bytes, cut to
/// 16) and 16-byte pieces of the files' contents spread over every file under `root`.
/// Pieces with few distinct bytes (runs of zeros, padding) are left out: they say nothing
/// about a file and could occur anywhere.
#[cfg(unix)]
fn needles(root: &Path, want: usize) -> (Vec<Vec<u8>>, usize) {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    let mut names = BTreeSet::new();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.len() >= 8 {
                let b = name.as_bytes();
                names.insert(b[..b.len().min(16)].to_vec());
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() && m.len() >= 16 {
                files.push(p);
            }
        }
    }
    files.sort();
    let varied = |b: &[u8]| b.iter().collect::<BTreeSet<_>>().len() >= 8;
    let mut out: BTreeSet<Vec<u8>> = names
        .into_iter()
        .filter(|n| varied(n))
        .take(want / 4)
        .collect();
    let n_names = out.len();
    let contents: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let total: usize = contents.iter().map(Vec::len).sum();
    // Offsets spread evenly over all bytes, then every file gets its turn until enough.
    let step = (total / (want * 2)).max(16);
    let mut pos = 0usize;
    'outer: for round in 0..64 {
        for c in &contents {
            let mut at = (round * 997) % c.len().max(1);
            while at + 16 <= c.len() {
                if out.len() >= want {
                    break 'outer;
                }
                let piece = &c[at..at + 16];
                if varied(piece) {
                    out.insert(piece.to_vec());
                }
                at += step;
                pos += 1;
            }
        }
    }
    assert!(pos > 0);
    (out.into_iter().collect(), n_names)
}

/// Which of `needles` (each at least 8 bytes) occur anywhere in `hay`.
#[cfg(unix)]
fn found_in(needles: &[Vec<u8>], hay: &[u8]) -> BTreeSet<usize> {
    let mut by_prefix: HashMap<[u8; 8], Vec<usize>> = HashMap::new();
    for (i, n) in needles.iter().enumerate() {
        by_prefix
            .entry(n[..8].try_into().unwrap())
            .or_default()
            .push(i);
    }
    // A 2^20-bit filter of the prefixes keeps the hash map out of almost every position.
    let mut filter = vec![0u64; 1 << 14];
    let slot = |p: u64| (p.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 44) as usize;
    for k in by_prefix.keys() {
        let s = slot(u64::from_le_bytes(*k));
        filter[s / 64] |= 1 << (s % 64);
    }
    let mut found = BTreeSet::new();
    for at in 0..hay.len().saturating_sub(7) {
        let p: [u8; 8] = hay[at..at + 8].try_into().unwrap();
        let s = slot(u64::from_le_bytes(p));
        if filter[s / 64] & (1 << (s % 64)) == 0 {
            continue;
        }
        if let Some(list) = by_prefix.get(&p) {
            for &i in list {
                if hay[at..].starts_with(&needles[i]) {
                    found.insert(i);
                }
            }
        }
    }
    found
}

/// A full image, an incremental one after files were added with mtools and a synthetic
/// full image of that point: none holds any of 1000 pieces of the files' contents and
/// names, while the same chain unencrypted holds many of them.
#[cfg(unix)]
#[test]
fn no_piece_of_any_file_or_name_is_stored_in_clear() {
    let d = tempdir();
    let s = secrets(d.path());
    let disk = sample_disk(d.path());
    let enc = [
        d.path().join("e0.strata"),
        d.path().join("e1.strata"),
        d.path().join("es.strata"),
    ];
    let clear = [d.path().join("u0.strata"), d.path().join("u1.strata")];
    create_encrypted(&disk, &enc[0], &s.pass, &[]);
    ok(st(&[&"create", &"-q", &disk, &clear[0]]));
    let host = d.path().join("host.bin");
    std::fs::write(&host, noise(300_000, 31)).unwrap();
    fat_put(&disk, SAMPLE_P1, &host, "incompressible payload.bin");
    std::fs::write(&host, text(50_000, 32)).unwrap();
    fat_put(&disk, SAMPLE_P1, &host, "meeting minutes october.txt");
    create_child(&disk, &enc[1], "--incremental", &enc[0], &s.pass, &[]);
    ok(st(&[
        &"create",
        &"-q",
        &"--incremental",
        &clear[0],
        &disk,
        &clear[1],
    ]));
    ok(st(&[
        &"consolidate",
        &"-q",
        &enc[1],
        &"--full",
        &enc[2],
        &"--passphrase-file",
        &s.pass,
    ]));

    // The files of the disk at the newest point, as the unencrypted image gives them.
    let files = d.path().join("files");
    std::fs::create_dir(&files).unwrap();
    ok(st(&[
        &"cp", &"-r", &"-q", &clear[1], &"/p1", &"/p2", &"/p3", &files,
    ]));
    let (needles, n_names) = needles(&files, 1000);
    assert_eq!(needles.len(), 1000, "too few distinct pieces");
    assert!(n_names >= 50, "only {n_names} names");

    for e in &enc {
        let hay = std::fs::read(e).unwrap();
        let found = found_in(&needles, &hay);
        let shown: Vec<String> = found
            .iter()
            .take(5)
            .map(|&i| String::from_utf8_lossy(&needles[i]).into_owned())
            .collect();
        assert!(
            found.is_empty(),
            "{}: {} pieces in clear, e.g. {shown:?}",
            e.display(),
            found.len()
        );
    }
    let mut in_clear = BTreeSet::new();
    for u in &clear {
        in_clear.extend(found_in(&needles, &std::fs::read(u).unwrap()));
    }
    eprintln!(
        "unencrypted chain: {} of {} pieces in clear",
        in_clear.len(),
        needles.len()
    );
    assert!(
        in_clear.len() >= 100,
        "the unencrypted chain holds only {} pieces",
        in_clear.len()
    );
}

// ---------------------------------------------------------------------------------------
// Wrong and missing keys.

/// Every command given a wrong passphrase, a wrong key file, a key of the wrong kind or no
/// key at all exits 4 with one line naming the image, and writes nothing; the right
/// secret, from a file or the environment, opens the image.
#[test]
fn a_wrong_or_missing_key_exits_4_and_writes_nothing() {
    let d = tempdir();
    let s = secrets(d.path());
    let disk = sample_disk(d.path());
    let set = d.path().join("set");
    std::fs::create_dir(&set).unwrap();
    let full = set.join("full.strata");
    let inc = set.join("inc.strata");
    let keyed = set.join("keyed.strata");
    create_encrypted(&disk, &full, &s.pass, &[]);
    create_child(&disk, &inc, "--incremental", &full, &s.pass, &[]);
    {
        let mut args: Vec<&dyn AsRef<OsStr>> = vec![
            &"create",
            &"-q",
            &"--encrypt",
            &"--key-file",
            &s.key,
            &disk,
            &keyed,
        ];
        args.extend(CHEAP.iter().map(|c| c as &dyn AsRef<OsStr>));
        ok(st(&args));
    }
    let want = sha256(&disk);
    let before: Vec<(PathBuf, String)> = [&full, &inc, &keyed]
        .iter()
        .map(|p| (p.to_path_buf(), sha256(p)))
        .collect();
    let out_dir = d.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let target = out_dir.join("restored.img");
    let copy = out_dir.join("copied.txt");
    let child = set.join("child.strata");

    // (image, secret option, expected message)
    let wrong_pass: [&dyn AsRef<OsStr>; 2] = [&"--passphrase-file", &s.wrong];
    let wrong_key: [&dyn AsRef<OsStr>; 2] = [&"--key-file", &s.wrong_key];
    let pass_for_keyed: [&dyn AsRef<OsStr>; 2] = [&"--passphrase-file", &s.pass];
    let none: [&dyn AsRef<OsStr>; 0] = [];
    let cases: [(&Path, &[&dyn AsRef<OsStr>], &str); 6] = [
        (
            &full,
            &wrong_pass,
            "wrong key: the passphrase given opens none of its 1 key slot",
        ),
        (
            &full,
            &wrong_key,
            "wrong key: the key file given opens none of its 1 key slot",
        ),
        (&full, &none, "the image is encrypted: give its passphrase"),
        (
            &keyed,
            &wrong_key,
            "wrong key: the key file given opens none of its 1 key slot",
        ),
        (
            &keyed,
            &pass_for_keyed,
            "wrong key: the passphrase given opens none of its 1 key slot",
        ),
        (&keyed, &none, "the image is encrypted: give its passphrase"),
    ];
    for (image, secret, message) in cases {
        let commands: Vec<(Vec<&dyn AsRef<OsStr>>, &str)> = vec![
            (vec![&"restore", &image, &target], "restore"),
            (vec![&"cp", &image, &"/p1/README.txt", &copy], "cp"),
            (vec![&"cat", &image, &"/p1/README.txt"], "cat"),
            (vec![&"ls", &image, &"/p3", &"-R"], "ls"),
            (vec![&"find", &image, &"*.txt"], "find"),
            (vec![&"history", &image, &"/p1/README.txt"], "history"),
            (vec![&"info", &image], "info"),
            (
                vec![&"create", &"-q", &"--incremental", &image, &disk, &child],
                "create",
            ),
            (
                vec![&"key", &"add", &image, &"--new-passphrase-file", &s.pass2],
                "key add",
            ),
            (vec![&"key", &"remove", &image, &"0"], "key remove"),
        ];
        for (mut args, what) in commands {
            args.extend_from_slice(secret);
            let what = format!("{what} {} {:?}", image.display(), message);
            let err = failed(&st(&args), 4, image, &what);
            assert!(err.contains(message), "{what}: {err}");
            assert!(
                names_in(&out_dir).is_empty(),
                "{what}: left {:?}",
                names_in(&out_dir)
            );
            assert_eq!(
                names_in(&set),
                ["full.strata", "inc.strata", "keyed.strata"]
                    .map(String::from)
                    .into(),
                "{what}: left a file"
            );
        }
    }
    // A chain read through its child, with a wrong passphrase: the same, and diff too.
    for args in [
        vec![&"restore" as &dyn AsRef<OsStr>, &inc, &target],
        vec![&"diff", &full, &inc],
        vec![&"consolidate", &"-q", &inc],
        vec![&"verify", &inc],
    ] {
        let mut args = args;
        args.extend_from_slice(&wrong_pass);
        let (c, out, err) = outcome(&st(&args));
        assert_eq!(c, 4, "{}\n{out}{err}", show(&args));
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("inc.strata") || err.contains("full.strata"),
            "{err}"
        );
        assert!(names_in(&out_dir).is_empty());
    }
    for (p, sha) in &before {
        assert_eq!(
            &sha256(p),
            sha,
            "{}: changed by a failed command",
            p.display()
        );
    }

    // The right secrets open them: files and the environment.
    assert_eq!(restored_sha(&full, "--passphrase-file", &s.pass), want);
    assert_eq!(restored_sha(&inc, "--passphrase-file", &s.pass), want);
    assert_eq!(restored_sha(&keyed, "--key-file", &s.key), want);
    let env = |pass: &str| {
        strata()
            .env("STRATA_PASSPHRASE", pass)
            .args(["cat"])
            .arg(&inc)
            .arg("/p1/README.txt")
            .output()
            .unwrap()
    };
    let readme = ok(env("correct horse battery staple"));
    assert!(!readme.is_empty());
    let bad = env("correct horse battery staplf");
    failed(&bad, 4, &inc, "STRATA_PASSPHRASE wrong");

    // New chains: --encrypt on an unencrypted parent, a too-short key file and no secret
    // at all are refused, leaving no file.
    let plain = d.path().join("plain.strata");
    ok(st(&[&"create", &"-q", &disk, &plain]));
    let new = out_dir.join("new.strata");
    let short = d.path().join("short.key");
    std::fs::write(&short, [7u8; 15]).unwrap();
    for args in [
        vec![
            &"create" as &dyn AsRef<OsStr>,
            &"--encrypt",
            &"--incremental",
            &plain,
            &"--passphrase-file",
            &s.pass,
            &disk,
            &new,
        ],
        vec![&"create", &"--encrypt", &"--key-file", &short, &disk, &new],
        vec![&"create", &"--encrypt", &disk, &new],
    ] {
        let (c, out, err) = outcome(&st(&args));
        assert!(c != 0 && c != 101, "{}: {c}\n{out}{err}", show(&args));
        assert!(
            names_in(&out_dir).is_empty(),
            "{}: left {:?}",
            show(&args),
            names_in(&out_dir)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Chunk records moved.

/// The longest run of consecutive records of one stored length: (first, count). A file
/// of random bytes is stored as such a run of raw chunks.
#[cfg(unix)]
fn longest_run(records: &[(u64, u32)]) -> (usize, usize) {
    let mut best = (0, 0);
    let mut i = 0;
    while i < records.len() {
        let mut j = i;
        while j < records.len() && records[j].1 == records[i].1 {
            j += 1;
        }
        if j - i > best.1 {
            best = (i, j - i);
        }
        i = j;
    }
    best
}

/// Reads of a chunk whose record was swapped with another of the same image, or replaced
/// by a record of another image of the chain (same key, same length), fail with exit 3
/// naming the image and the chunk; `verify` exits 3; no wrong byte is ever written.
#[cfg(unix)]
#[test]
fn chunk_records_moved_within_or_between_images_fail_naming_the_chunk() {
    let d = tempdir();
    let s = secrets(d.path());
    let disk = sample_disk(d.path());
    let host = d.path().join("host.bin");
    let first = noise(2 << 20, 41);
    std::fs::write(&host, &first).unwrap();
    fat_put(&disk, SAMPLE_P1, &host, "first random file.bin");
    let full = d.path().join("full.strata");
    let inc = d.path().join("inc.strata");
    create_encrypted(&disk, &full, &s.pass, &["--chunk-size", "65536"]);
    let second = noise(1 << 20, 42);
    std::fs::write(&host, &second).unwrap();
    fat_put(&disk, SAMPLE_P1, &host, "second random file.bin");
    create_child(
        &disk,
        &inc,
        "--incremental",
        &full,
        &s.pass,
        &["--chunk-size", "65536"],
    );
    let pristine_full = std::fs::read(&full).unwrap();
    let pristine_inc = std::fs::read(&inc).unwrap();
    let (lf, li) = (layout(&full), layout(&inc));
    let target = d.path().join("restored.img");

    // Reads of the damaged image: the file fails (or stops) with exit 3 naming `image` and
    // one of `chunks`, and what it wrote is a prefix of the real contents.
    let check = |image: &Path, file: &str, real: &[u8], chunks: &[usize], what: &str| {
        let o = st(&[&"cat", &image, &file, &"--passphrase-file", &s.pass]);
        let (code, _, err) = outcome(&o);
        assert_eq!(code, 3, "{what}: cat: {err}");
        assert!(real.starts_with(&o.stdout), "{what}: cat wrote wrong bytes");
        let name = image.file_name().unwrap().to_string_lossy();
        assert!(err.contains(name.as_ref()), "{what}: {err}");
        assert!(
            chunks.iter().any(|c| err.contains(&format!("chunk {c}"))),
            "{what}: {err} names none of chunks {chunks:?}"
        );
        let (code, out, err) = outcome(&st(&[&"verify", &image, &"--passphrase-file", &s.pass]));
        assert_eq!(code, 3, "{what}: verify: {out}{err}");
        assert!(
            chunks
                .iter()
                .any(|c| out.contains(&format!("BAD chunk {c}"))
                    || err.contains(&format!("chunk {c}"))),
            "{what}: verify names none of chunks {chunks:?}: {out}{err}"
        );
        let (code, _, err) = outcome(&st(&[
            &"restore",
            &image,
            &target,
            &"--passphrase-file",
            &s.pass,
        ]));
        assert_eq!(code, 3, "{what}: restore: {err}");
        assert!(!target.exists(), "{what}: restore left its target");
    };

    // Two records of the full image swapped.
    let (run, n) = longest_run(&lf.records);
    assert!(n >= 20, "no run of raw chunks for the random file: {n}");
    let (i, j) = (run + 3, run + n - 4);
    let (a, b) = (lf.records[i], lf.records[j]);
    let len = 24 + a.1 as usize;
    let mut swapped = pristine_full.clone();
    swapped[a.0 as usize..][..len].copy_from_slice(&pristine_full[b.0 as usize..][..len]);
    swapped[b.0 as usize..][..len].copy_from_slice(&pristine_full[a.0 as usize..][..len]);
    std::fs::write(&full, &swapped).unwrap();
    check(
        &full,
        "/p1/first random file.bin",
        &first,
        &[i, j],
        "swapped in the full image",
    );
    std::fs::write(&full, &pristine_full).unwrap();

    // A record of the full image copied over one of the same length in the incremental
    // one, and the other way round.
    let (run_i, n_i) = longest_run(&li.records);
    assert!(
        n_i >= 10,
        "no run of raw chunks in the incremental image: {n_i}"
    );
    let x = run_i + n_i / 2;
    let y = i;
    assert_eq!(li.records[x].1, lf.records[y].1);
    let (r, q) = (li.records[x], lf.records[y]);
    let len = 24 + r.1 as usize;
    let mut moved = pristine_inc.clone();
    moved[r.0 as usize..][..len].copy_from_slice(&pristine_full[q.0 as usize..][..len]);
    std::fs::write(&inc, &moved).unwrap();
    check(
        &inc,
        "/p1/second random file.bin",
        &second,
        &[x],
        "full's record in the incremental",
    );
    std::fs::write(&inc, &pristine_inc).unwrap();
    let mut moved = pristine_full.clone();
    moved[q.0 as usize..][..len].copy_from_slice(&pristine_inc[r.0 as usize..][..len]);
    std::fs::write(&full, &moved).unwrap();
    let (code, _, err) = outcome(&st(&[
        &"restore",
        &inc,
        &target,
        &"--passphrase-file",
        &s.pass,
    ]));
    assert_eq!(code, 3, "incremental's record in the full image: {err}");
    assert!(
        err.contains("full.strata") && err.contains(&format!("chunk {y}")),
        "{err}"
    );
    assert!(!target.exists());
    std::fs::write(&full, &pristine_full).unwrap();

    // Undamaged again: everything reads.
    assert_eq!(
        restored_sha(&inc, "--passphrase-file", &s.pass),
        sha256(&disk)
    );
    ok(st(&[&"verify", &"-q", &inc, &"--passphrase-file", &s.pass]));
}

// ---------------------------------------------------------------------------------------
// A byte flipped in each region.

/// What a damaged copy of an image gives: restore and verify exit codes, and stderr.
struct Outcome {
    restore: i32,
    verify: i32,
    err: String,
}

/// Writes `bytes` as `image`, then restores and verifies it with `pass`. A restore that
/// succeeds must give `want` exactly; one that fails must leave no target, with one line of
/// error and never a panic.
fn try_damaged(image: &Path, bytes: &[u8], pass: &Path, want: &str, what: &str) -> Outcome {
    std::fs::write(image, bytes).unwrap();
    let target = image.with_extension("restored");
    let o = strata_limited()
        .args(["restore", "-q"])
        .arg(image)
        .arg(&target)
        .arg("--passphrase-file")
        .arg(pass)
        .output()
        .unwrap();
    let (restore, _, err) = outcome(&o);
    assert!(!err.contains("panicked"), "{what}: {err}");
    if restore == 0 {
        assert_eq!(sha256(&target), want, "{what}: restored wrong data");
        std::fs::remove_file(&target).unwrap();
    } else {
        assert!(!target.exists(), "{what}: restore left its target");
        failed(&o, restore, image, what);
    }
    let (verify, out, verr) = outcome(&st(&[
        &"verify",
        &"-q",
        &image,
        &"--passphrase-file",
        &pass,
    ]));
    assert!(!verr.contains("panicked"), "{what}: {verr}");
    assert!(
        verify == 0 || verify == 3 || verify == 4,
        "{what}: verify {verify}: {out}{verr}"
    );
    Outcome {
        restore,
        verify,
        err: err + &verr,
    }
}

/// A byte flipped in the header's clear fields, its sealed source description, its salt,
/// a chunk record, the block-hash table, the index and the trailer: restore and verify exit
/// 3 naming the part (or restore gives the exact disk where it does not need the part);
/// in the catalog, `find` falls back to walking the image with a warning and gives the
/// same answer.
#[test]
fn a_byte_flipped_in_any_region_is_caught() {
    let d = tempdir();
    let s = secrets(d.path());
    let disk = sample_disk(d.path());
    let want = sha256(&disk);
    let good = d.path().join("good.strata");
    create_encrypted(&disk, &good, &s.pass, &[]);
    let pristine = std::fs::read(&good).unwrap();
    let l = layout(&good);
    let damaged = d.path().join("damaged.strata");
    let (k, rec) = (l.records.len() / 2, l.records[l.records.len() / 2]);
    let (cat_at, cat_len) = l.catalog.expect("a catalog");
    let regions: Vec<(&str, u64, &str)> = vec![
        ("header: created", 97, "header"),
        ("header: disk size", 113, "header"),
        ("header: sealed source", 150, "header"),
        ("header: salt", 990, "header"),
        ("header: checksum", 4090, "header"),
        ("chunk record header", rec.0 + 17, "chunk"),
        ("chunk payload", rec.0 + 24 + u64::from(rec.1) / 2, "chunk"),
        ("chunk tag", rec.0 + 24 + u64::from(rec.1) - 3, "chunk"),
        ("index", l.index.0 + l.index.1 / 2, "index"),
        ("index tag", l.index.0 + l.index.1 - 2, "index"),
        ("trailer: index offset", l.trailer + 9, "trailer"),
        ("trailer: digest", l.trailer + 30, "trailer"),
    ];
    for (what, at, names) in regions {
        let o = try_damaged(&damaged, &flipped(&pristine, at), &s.pass, &want, what);
        assert_eq!((o.restore, o.verify), (3, 3), "{what}: {}", o.err);
        assert!(o.err.contains(names), "{what}: {}", o.err);
        if names == "chunk" {
            assert!(o.err.contains(&format!("chunk {k}")), "{what}: {}", o.err);
        }
    }

    // The block-hash table: verify finds it; a restore, which does not need it, gives the
    // exact disk; a child that would compare against it is not made.
    let what = "block-hash table";
    let o = try_damaged(
        &damaged,
        &flipped(&pristine, l.hashes.0 + l.hashes.1 / 2),
        &s.pass,
        &want,
        what,
    );
    assert_eq!(o.verify, 3, "{what}: {}", o.err);
    assert!(o.restore == 0 || o.restore == 3, "{what}: {}", o.err);
    let child = d.path().join("child.strata");
    let (code, _, err) = outcome(&st(&[
        &"create",
        &"-q",
        &"--incremental",
        &damaged,
        &disk,
        &child,
        &"--passphrase-file",
        &s.pass,
    ]));
    assert_eq!(code, 3, "{what}: create --incremental: {err}");
    assert!(!child.exists());

    // The catalog: a warning, and `find` answers as from the undamaged image.
    let find = |image: &Path| {
        let o = st(&[&"find", &image, &"*.txt", &"--passphrase-file", &s.pass]);
        let (code, out, err) = outcome(&o);
        assert_eq!(code, 0, "find: {err}");
        let rows: BTreeSet<String> = out
            .lines()
            .map(|l| l.replace(image.file_name().unwrap().to_str().unwrap(), "IMAGE"))
            .collect();
        (rows, err)
    };
    let (want_rows, err) = find(&good);
    assert!(err.trim().is_empty(), "{err}");
    assert!(want_rows.len() > 10, "{want_rows:?}");
    std::fs::write(&damaged, flipped(&pristine, cat_at + 64 + cat_len / 2)).unwrap();
    let (rows, err) = find(&damaged);
    assert!(err.contains("catalog"), "no warning: {err:?}");
    assert!(rows == want_rows, "find without the catalog differs");
    let o = try_damaged(
        &damaged,
        &flipped(&pristine, cat_at + 64 + cat_len / 2),
        &s.pass,
        &want,
        "catalog",
    );
    assert_eq!(o.restore, 0, "catalog: {}", o.err);

    // Bytes of the key-slot area no copy uses change nothing.
    let o = try_damaged(
        &damaged,
        &flipped(&pristine, 2300),
        &s.pass,
        &want,
        "unused slot area",
    );
    assert_eq!((o.restore, o.verify), (0, 0), "{}", o.err);
}

/// A byte flipped in the key id (header byte 968..984) is damage, as the header checksum
/// shows: every command exits 3, `verify` included, and none calls the passphrase wrong.
#[test]
fn a_damaged_key_id_is_reported_as_damage_not_as_a_wrong_passphrase() {
    let d = tempdir();
    let s = secrets(d.path());
    let disk = sample_disk(d.path());
    let good = d.path().join("good.strata");
    create_encrypted(&disk, &good, &s.pass, &[]);
    let pristine = std::fs::read(&good).unwrap();
    let damaged = d.path().join("damaged.strata");
    let o = try_damaged(
        &damaged,
        &flipped(&pristine, 970),
        &s.pass,
        &sha256(&disk),
        "key id",
    );
    assert!(
        !o.err.contains("wrong key"),
        "the right passphrase called wrong: {}",
        o.err
    );
    assert_eq!((o.restore, o.verify), (3, 3), "{}", o.err);
}

/// The key-slot area has two copies so that one damaged copy leaves the image usable: a
/// byte flipped in either copy still opens the image with its passphrase, on a new image
/// as after a key change; both copies damaged cannot be unlocked (exit 3 or 4).
#[test]
fn one_damaged_key_slot_copy_still_opens() {
    let d = tempdir();
    let s = secrets(d.path());
    let disk = sample_disk(d.path());
    let want = sha256(&disk);
    let fresh = d.path().join("fresh.strata");
    create_encrypted(&disk, &fresh, &s.pass, &[]);
    let changed = d.path().join("changed.strata");
    std::fs::copy(&fresh, &changed).unwrap();
    let mut args: Vec<&dyn AsRef<OsStr>> = vec![
        &"key",
        &"add",
        &changed,
        &"--new-passphrase-file",
        &s.pass2,
        &"--passphrase-file",
        &s.pass,
    ];
    args.extend(CHEAP.iter().map(|c| c as &dyn AsRef<OsStr>));
    ok(st(&args));
    let damaged = d.path().join("damaged.strata");
    let mut problems = Vec::new();
    for (name, image) in [("after a key change", &changed), ("new image", &fresh)] {
        let pristine = std::fs::read(image).unwrap();
        // Bytes in a slot's salt, in each copy.
        for (copy, at) in [(1, 1024 + 24 + 30), (2, 2560 + 24 + 30)] {
            let o = try_damaged(
                &damaged,
                &flipped(&pristine, at),
                &s.pass,
                &want,
                "slot copy",
            );
            if (o.restore, o.verify) != (0, 0) {
                problems.push(format!("{name}, copy {copy} damaged: {}", o.err.trim()));
            }
        }
        let both = flipped(&flipped(&pristine, 1024 + 24 + 30), 2560 + 24 + 30);
        let o = try_damaged(&damaged, &both, &s.pass, &want, "both slot copies");
        assert!(
            o.restore == 3 || o.restore == 4,
            "{name}: both copies damaged: {}",
            o.err
        );
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

// ---------------------------------------------------------------------------------------
// Key management.

/// `key list --json` of `target`: (image file name, key id, slot kinds).
fn key_list(target: &Path) -> Vec<(String, String, Vec<String>, serde_json::Value)> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(st(&[&"key", &"list", &target, &"--json"]))).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let name = Path::new(i["image"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let kinds = i["slots"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(n, s)| {
                    assert_eq!(s["slot"].as_u64(), Some(n as u64));
                    s["kind"].as_str().unwrap().to_string()
                })
                .collect();
            (
                name,
                i["key_id"].as_str().unwrap().to_string(),
                kinds,
                i["slots"].clone(),
            )
        })
        .collect()
}

/// A second passphrase and a key file added, each opening the image; the first
/// passphrase removed no longer opens it while the others do; the last slot is never
/// removed; a key change on the full image rewrites only its key-slot area and leaves its
/// incremental child opening; a directory target changes every image in it.
#[test]
fn key_slots_are_added_and_removed_without_touching_the_data() {
    let d = tempdir();
    let s = secrets(d.path());
    let disk = sample_disk(d.path());
    let want = sha256(&disk);
    let set = d.path().join("set");
    std::fs::create_dir(&set).unwrap();
    let full = set.join("full.strata");
    let inc = set.join("inc.strata");
    create_encrypted(&disk, &full, &s.pass, &[]);
    create_child(&disk, &inc, "--incremental", &full, &s.pass, &[]);
    let digest = |p: &Path| info_json_with(p, &s.pass)["index_digest"].clone();
    let (digest_full, digest_inc) = (digest(&full), digest(&inc));

    let l = key_list(&full);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].2, ["passphrase"]);
    assert_eq!(l[0].3[0]["kdf"]["memory_kib"], 8192);
    assert_eq!(l[0].3[0]["kdf"]["passes"], 1);
    let key_id = l[0].1.clone();
    assert_eq!(key_list(&inc)[0].1, key_id, "a chain has one key");

    // A second passphrase on the full image only.
    let before = std::fs::read(&full).unwrap();
    let mut args: Vec<&dyn AsRef<OsStr>> = vec![
        &"key",
        &"add",
        &full,
        &"--new-passphrase-file",
        &s.pass2,
        &"--passphrase-file",
        &s.pass,
    ];
    args.extend(CHEAP.iter().map(|c| c as &dyn AsRef<OsStr>));
    ok(st(&args));
    let after = std::fs::read(&full).unwrap();
    assert_eq!(before.len(), after.len());
    let changed: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    assert!(!changed.is_empty());
    assert!(
        changed.iter().all(|&i| (1024..4088).contains(&i)),
        "bytes outside the key-slot area changed: {:?}",
        changed
            .iter()
            .filter(|&&i| !(1024..4088).contains(&i))
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(key_list(&full)[0].2, ["passphrase", "passphrase"]);
    assert_eq!(restored_sha(&full, "--passphrase-file", &s.pass2), want);
    assert_eq!(restored_sha(&full, "--passphrase-file", &s.pass), want);
    assert_eq!(restored_sha(&inc, "--passphrase-file", &s.pass), want);
    assert_eq!(digest(&full), digest_full);
    ok(st(&[&"verify", &"-q", &inc, &"--passphrase-file", &s.pass]));

    // The last slot of the child is not removed.
    let inc_before = sha256(&inc);
    let (code, _, err) = outcome(&st(&[
        &"key",
        &"remove",
        &inc,
        &"0",
        &"--passphrase-file",
        &s.pass,
    ]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("last"), "{err}");
    assert_eq!(sha256(&inc), inc_before);

    // A key file on every image of the directory.
    let out = ok(st(&[
        &"key",
        &"add",
        &set,
        &"--new-key-file",
        &s.key,
        &"--passphrase-file",
        &s.pass,
    ]));
    assert_eq!(out.lines().count(), 2, "{out}");
    let all = key_list(&set);
    let kinds: Vec<(String, Vec<String>)> =
        all.iter().map(|i| (i.0.clone(), i.2.clone())).collect();
    assert_eq!(
        kinds,
        [
            (
                "full.strata".to_string(),
                vec![
                    "passphrase".to_string(),
                    "passphrase".into(),
                    "key file".into()
                ]
            ),
            (
                "inc.strata".to_string(),
                vec!["passphrase".to_string(), "key file".into()]
            ),
        ]
    );
    assert!(all.iter().all(|i| i.1 == key_id));
    assert!(all[0].3[2]["kdf"].is_null());
    assert_eq!(restored_sha(&inc, "--key-file", &s.key), want);
    assert_eq!(restored_sha(&full, "--key-file", &s.key), want);
    assert_eq!(digest(&inc), digest_inc);

    // The first passphrase removed from the full image: the slot's bytes are gone from the
    // file, it opens none, the others still open it.
    let slot0: Vec<u8> = std::fs::read(&full).unwrap()[1024 + 24 + 24..1024 + 24 + 128].to_vec();
    ok(st(&[&"key", &"remove", &full, &"0", &"--key-file", &s.key]));
    assert_eq!(key_list(&full)[0].2, ["passphrase", "key file"]);
    let bytes = std::fs::read(&full).unwrap();
    assert!(
        !bytes[..4096]
            .windows(slot0.len())
            .any(|w| w == slot0.as_slice()),
        "the removed slot is still in the header"
    );
    let target = d.path().join("out.img");
    let err = failed(
        &st(&[&"restore", &full, &target, &"--passphrase-file", &s.pass]),
        4,
        &full,
        "removed passphrase",
    );
    assert!(
        err.contains("wrong key") && err.contains("2 key slots"),
        "{err}"
    );
    assert!(!target.exists());
    assert_eq!(restored_sha(&full, "--passphrase-file", &s.pass2), want);
    assert_eq!(restored_sha(&full, "--key-file", &s.key), want);
    // The child keeps its own slots and still opens with the first passphrase.
    assert_eq!(restored_sha(&inc, "--passphrase-file", &s.pass), want);
    ok(st(&[&"verify", &"-q", &inc, &"--key-file", &s.key]));

    // Removing slots down to one, then the last one is refused.
    ok(st(&[
        &"key",
        &"remove",
        &full,
        &"1",
        &"--passphrase-file",
        &s.pass2,
    ]));
    let before = sha256(&full);
    let (code, _, err) = outcome(&st(&[
        &"key",
        &"remove",
        &full,
        &"0",
        &"--passphrase-file",
        &s.pass2,
    ]));
    assert_eq!(code, 1, "{err}");
    assert_eq!(sha256(&full), before);
    assert_eq!(restored_sha(&full, "--passphrase-file", &s.pass2), want);
}

/// Without --kdf-memory and --kdf-passes a passphrase slot costs Argon2id 256 MiB, 3
/// passes, one lane.
#[test]
fn the_default_passphrase_cost_is_argon2id_256_mib_3_passes() {
    let d = tempdir();
    let s = secrets(d.path());
    let disk = sample_disk(d.path());
    let image = d.path().join("default.strata");
    ok(st(&[
        &"create",
        &"-q",
        &"--encrypt",
        &"--passphrase-file",
        &s.pass,
        &disk,
        &image,
    ]));
    let l = key_list(&image);
    assert_eq!(
        l[0].3[0]["kdf"],
        serde_json::json!({"memory_kib": 262144, "passes": 3, "lanes": 1})
    );
    assert_eq!(
        restored_sha(&image, "--passphrase-file", &s.pass),
        sha256(&disk)
    );
}

/// `verify` of an image whose clear header fields were changed (the index is sealed to
/// them) says so in one clean line: exit 3, naming the index, without a source line's
/// indentation inside the message.
#[test]
fn a_changed_header_field_fails_verify_with_a_clean_message() {
    let d = tempdir();
    let s = secrets(d.path());
    let disk = sample_disk(d.path());
    let good = d.path().join("good.strata");
    create_encrypted(&disk, &good, &s.pass, &[]);
    let damaged = d.path().join("damaged.strata");
    std::fs::write(&damaged, flipped(&std::fs::read(&good).unwrap(), 97)).unwrap();
    let o = st(&[&"verify", &"-q", &damaged, &"--passphrase-file", &s.pass]);
    let err = failed(&o, 3, &damaged, "verify of a changed header");
    assert!(err.contains("index"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Chains rewritten by hand, long parent paths, key commands on a directory.

/// The little-endian u64 at `at` of `b`.
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The index digest in the trailer of an image's bytes: what a child records to name it.
fn trailer_digest(b: &[u8]) -> [u8; 32] {
    let t = b.len() - 64;
    b[t + 24..t + 56].try_into().unwrap()
}

/// Recomputes the header checksum of an image's bytes; returns it.
fn reseal_header(b: &mut [u8]) -> u64 {
    let sum = strata::container::header::Header::compute_checksum(&b[..4096]);
    b[4088..4096].copy_from_slice(&sum.to_le_bytes());
    sum
}

/// Rewrites the header of an image's bytes `b` to make it an incremental child of the
/// image `parent` (its UUID and index digest); returns the new header checksum.
fn name_parent(b: &mut [u8], parent: &[u8]) -> u64 {
    b[48..64].copy_from_slice(&parent[32..48]);
    b[64..96].copy_from_slice(&trailer_digest(parent));
    b[128] = 2;
    reseal_header(b)
}

/// Brings the index and trailer of an unencrypted image's bytes in line with a header
/// whose checksum is now `header_sum`: the index's copy of it, the trailer's index digest
/// and the trailer checksum, as anyone holding the file can.
#[cfg(unix)]
fn rebind_clear_index(b: &mut [u8], header_sum: u64) {
    use strata::container::index::Trailer;
    let t = b.len() - 64;
    let mut trailer = Trailer::decode(&b[t..]).unwrap();
    let (at, len) = (trailer.index_offset as usize, trailer.index_length as usize);
    b[at + 24..at + 32].copy_from_slice(&header_sum.to_le_bytes());
    trailer.index_digest = *blake3::hash(&b[at..at + len]).as_bytes();
    b[t..].copy_from_slice(&trailer.encode());
}

/// An unencrypted full image rewritten (header, index, trailer) into an incremental child
/// of an encrypted full image is refused by restore, ls and verify with the key, which
/// would otherwise lay its blocks over the parent's; an encrypted child rewritten to name
/// an unencrypted parent is refused by verify without the key. The same rewrite over an
/// unencrypted parent verifies and lists, so it is the key that is refused.
#[cfg(unix)]
#[test]
fn a_forged_child_in_clear_over_an_encrypted_parent_is_refused() {
    let d = tempdir();
    let s = secrets(d.path());
    let disk = sample_disk(d.path());
    let set = d.path().join("set");
    std::fs::create_dir(&set).unwrap();
    let locked = set.join("locked-full.strata");
    let plain = set.join("plain-full.strata");
    create_encrypted(&disk, &locked, &s.pass, &[]);
    ok(st(&[&"create", &"-q", &disk, &plain]));
    let host = d.path().join("host.txt");
    std::fs::write(&host, text(30_000, 41)).unwrap();
    fat_put(&disk, SAMPLE_P1, &host, "added later.txt");
    let newer = d.path().join("newer.strata");
    ok(st(&[&"create", &"-q", &disk, &newer]));
    let child = set.join("child.strata");
    create_child(&disk, &child, "--incremental", &locked, &s.pass, &[]);

    let newer_bytes = std::fs::read(&newer).unwrap();
    let forge = |parent: &Path, name: &str| {
        let mut b = newer_bytes.clone();
        let sum = name_parent(&mut b, &std::fs::read(parent).unwrap());
        rebind_clear_index(&mut b, sum);
        let p = set.join(name);
        std::fs::write(&p, b).unwrap();
        p
    };
    let over_plain = forge(&plain, "forged-a.strata");
    let over_locked = forge(&locked, "forged-b.strata");

    // Over the unencrypted parent the rewritten image is a sound child.
    assert_eq!(info_json(&over_plain)["kind"], "incremental");
    ok(st(&[&"verify", &"-q", &over_plain]));
    let listed = ok(st(&[&"ls", &over_plain, &"/p1"]));
    assert!(listed.contains("added later.txt"), "{listed}");

    // Over the encrypted one it is refused, before anything is written.
    let target = d.path().join("out.img");
    let pf: [&dyn AsRef<OsStr>; 2] = [&"--passphrase-file", &s.pass];
    for (mut args, what) in [
        (
            vec![&"restore" as &dyn AsRef<OsStr>, &over_locked, &target],
            "restore",
        ),
        (vec![&"ls", &over_locked, &"/"], "ls"),
        (vec![&"verify", &"-q", &over_locked], "verify"),
    ] {
        args.extend_from_slice(&pf);
        let err = failed(&st(&args), 3, &over_locked, what);
        assert!(
            err.contains("not encrypted") && err.contains("locked-full.strata"),
            "{what}: {err}"
        );
        assert!(!target.exists(), "{what}: wrote {}", target.display());
    }
    // Without a key the encrypted parent cannot even be opened.
    let (code, out, err) = outcome(&st(&[&"verify", &"-q", &over_locked]));
    assert!(
        code != 0 && code != 101,
        "keyless verify: {code}\n{out}{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("locked-full.strata"), "{err}");

    // An encrypted child naming the unencrypted image, verified without the key.
    let mut b = std::fs::read(&child).unwrap();
    name_parent(&mut b, &std::fs::read(&plain).unwrap());
    let forged = set.join("forged-c.strata");
    std::fs::write(&forged, b).unwrap();
    let err = failed(
        &st(&[&"verify", &"-q", &forged]),
        3,
        &forged,
        "keyless verify of an encrypted child over a parent in clear",
    );
    assert!(
        err.contains("not encrypted") && err.contains("plain-full.strata"),
        "{err}"
    );
}

/// Runs strata with `args`, no key and stdin from /dev/null; fails the test if it is still
/// running after `secs` seconds (it is killed then).
fn st_within(args: &[&dyn AsRef<OsStr>], secs: u64) -> Output {
    use std::process::Stdio;
    let mut child = strata()
        .env_remove("STRATA_PASSPHRASE")
        .args(args.iter().map(|a| a.as_ref()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata runs");
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(secs) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{}: still running after {secs} s", show(args));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// `verify` without the key of an encrypted child whose header names itself as its
/// parent, and of two children naming each other, ends with one line instead of going
/// round the chain for ever.
#[test]
fn keyless_verify_of_a_chain_that_names_itself_ends() {
    let d = tempdir();
    let s = secrets(d.path());
    let disk = sample_disk(d.path());
    let one = d.path().join("one");
    let two = d.path().join("two");
    std::fs::create_dir(&one).unwrap();
    std::fs::create_dir(&two).unwrap();
    let full = one.join("full.strata");
    create_encrypted(&disk, &full, &s.pass, &[]);
    let own = one.join("own-parent.strata");
    create_child(&disk, &own, "--incremental", &full, &s.pass, &[]);
    let pair = [two.join("left.strata"), two.join("right.strata")];
    for p in &pair {
        create_child(&disk, p, "--incremental", &full, &s.pass, &[]);
    }

    let mut b = std::fs::read(&own).unwrap();
    let me = b.clone();
    name_parent(&mut b, &me);
    assert_eq!(b[48..64], b[32..48]);
    std::fs::write(&own, b).unwrap();
    // Its only candidate is itself: no parent is found (exit 1, as for any missing parent).
    let err = failed(&st_within(&[&"verify", &own], 30), 1, &own, "names itself");
    assert!(err.contains("not found"), "{err}");

    let bytes = [
        std::fs::read(&pair[0]).unwrap(),
        std::fs::read(&pair[1]).unwrap(),
    ];
    for (i, p) in pair.iter().enumerate() {
        let mut b = bytes[i].clone();
        name_parent(&mut b, &bytes[1 - i]);
        std::fs::write(p, b).unwrap();
    }
    // The loop shows at the second image, whose parent is the first again.
    let err = failed(
        &st_within(&[&"verify", &pair[0]], 30),
        3,
        &pair[1],
        "two naming each other",
    );
    assert!(err.contains("loops"), "{err}");
}

/// The catalog section's method and uncompressed length are sealed with its payload: set
/// to "raw" and the sealed payload's length (checksums fixed), the catalog fails to open,
/// `find` warns and answers as from the intact image by walking it, and `verify` reports
/// the catalog (exit 3).
#[test]
fn the_catalog_method_and_length_are_authenticated() {
    let d = tempdir();
    let s = secrets(d.path());
    let disk = sample_disk(d.path());
    let good = d.path().join("good.strata");
    create_encrypted(&disk, &good, &s.pass, &[]);
    let (at, _) = layout(&good).catalog.expect("a catalog");
    let at = at as usize;
    let mut b = std::fs::read(&good).unwrap();
    assert_eq!(&b[at..at + 8], b"STRATCAT");
    assert_eq!(b[at + 12], 1, "the catalog is not compressed");
    let stored = le64(&b, at + 16);
    b[at + 12] = 0;
    b[at + 24..at + 32].copy_from_slice(&(stored - 28).to_le_bytes());
    let sum = xxhash_rust::xxh3::xxh3_64(&b[at..at + 48]);
    b[at + 48..at + 56].copy_from_slice(&sum.to_le_bytes());
    let changed = d.path().join("changed.strata");
    std::fs::write(&changed, b).unwrap();

    let find = |image: &Path| {
        let (code, out, err) =
            outcome(&st(&[&"find", &image, &"*", &"--passphrase-file", &s.pass]));
        assert_eq!(code, 0, "find: {err}");
        let name = image.file_name().unwrap().to_str().unwrap();
        let rows: Vec<String> = out.lines().map(|l| l.replace(name, "IMAGE")).collect();
        (rows, err)
    };
    let (want, err) = find(&good);
    assert!(err.trim().is_empty(), "{err}");
    assert!(want.len() > 10, "{want:?}");
    let (rows, err) = find(&changed);
    assert!(
        err.contains("catalog") && err.contains("authentication failed"),
        "no warning: {err:?}"
    );
    assert!(rows == want, "find without the catalog differs");

    let (code, out, err) = outcome(&st(&[&"verify", &changed, &"--passphrase-file", &s.pass]));
    assert_eq!(code, 3, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("catalog") && all.contains("authentication failed"),
        "{all}"
    );
}

/// A parent whose path from the child's directory does not fit the header (over 1000
/// bytes) is left out of the child's header: create succeeds, the child has no parent
/// hint and opens with `--parent-dir`.
#[cfg(unix)]
#[test]
fn a_parent_path_too_long_for_the_header_is_left_out() {
    let d = tempdir();
    let s = secrets(d.path());
    let disk = sample_disk(d.path());
    let want = sha256(&disk);
    let x = d.path().join("x");
    let mut deep = x.clone();
    for c in ['a', 'b', 'c', 'd', 'e'] {
        deep.push(c.to_string().repeat(200));
    }
    std::fs::create_dir_all(&deep).unwrap();
    let full = deep.join("full.strata");
    create_encrypted(&disk, &full, &s.pass, &[]);
    let child = x.join("child.strata");
    let (code, out, err) = outcome(&st(&[
        &"create",
        &"-q",
        &"--incremental",
        &full,
        &"--passphrase-file",
        &s.pass,
        &disk,
        &child,
    ]));
    assert_eq!(code, 0, "create: {out}{err}");

    let with_dir: [&dyn AsRef<OsStr>; 4] = [&"--parent-dir", &deep, &"--passphrase-file", &s.pass];
    let mut args: Vec<&dyn AsRef<OsStr>> = vec![&"info", &child, &"--json"];
    args.extend_from_slice(&with_dir);
    let info: serde_json::Value = serde_json::from_str(&ok(st(&args))).unwrap();
    assert_eq!(info["kind"], "incremental");
    assert!(
        info["parent_hint"].is_null() || info["parent_hint"] == "",
        "{}",
        info["parent_hint"]
    );
    let target = d.path().join("restored.img");
    let mut args: Vec<&dyn AsRef<OsStr>> = vec![&"restore", &"-q", &child, &target];
    args.extend_from_slice(&with_dir);
    ok(st(&args));
    assert_eq!(sha256(&target), want);
    std::fs::remove_file(&target).unwrap();
    // Without the directory there is nothing to find it by.
    let (code, out, err) = outcome(&st(&[
        &"restore",
        &child,
        &target,
        &"--passphrase-file",
        &s.pass,
    ]));
    assert!(code != 0 && code != 101, "{code}\n{out}{err}");
    assert!(!target.exists());
}

/// On a directory holding two chains, `key add` changes the chain of the passphrase given
/// and says which image it left alone; `key remove` removes the same slot (matched as that
/// slot, whatever its number) from every image of the chain.
#[test]
fn key_commands_on_a_directory_change_one_chain_and_match_slots_by_identity() {
    let d = tempdir();
    let s = secrets(d.path());
    let disk = sample_disk(d.path());
    let want = sha256(&disk);
    let set = d.path().join("set");
    std::fs::create_dir(&set).unwrap();
    let full = set.join("a0-full.strata");
    let inc = set.join("a1-inc.strata");
    let other = set.join("b-other.strata");
    let pass_b = d.path().join("pass-b.txt");
    std::fs::write(&pass_b, "the other chain's passphrase").unwrap();
    create_encrypted(&disk, &full, &s.pass, &[]);
    create_child(&disk, &inc, "--incremental", &full, &s.pass, &[]);
    create_encrypted(&disk, &other, &pass_b, &[]);
    // A key file on the full image only: the slot added next has another number in each.
    ok(st(&[
        &"key",
        &"add",
        &full,
        &"--new-key-file",
        &s.key,
        &"--passphrase-file",
        &s.pass,
    ]));
    let other_before = (sha256(&other), key_list(&other));

    let mut args: Vec<&dyn AsRef<OsStr>> = vec![
        &"key",
        &"add",
        &set,
        &"--new-passphrase-file",
        &s.pass2,
        &"--passphrase-file",
        &s.pass,
    ];
    args.extend(CHEAP.iter().map(|c| c as &dyn AsRef<OsStr>));
    let (code, out, err) = outcome(&st(&args));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("a0-full.strata") && out.contains("a1-inc.strata"));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("b-other.strata") && err.contains("another chain"),
        "{err}"
    );
    assert_eq!(
        key_list(&full)[0].2,
        ["passphrase", "key file", "passphrase"]
    );
    assert_eq!(key_list(&inc)[0].2, ["passphrase", "passphrase"]);
    assert_eq!(restored_sha(&inc, "--passphrase-file", &s.pass2), want);
    assert_eq!((sha256(&other), key_list(&other)), other_before);

    // Slot 2 of the first image is the new passphrase: slot 1 of the child.
    let (code, out, err) = outcome(&st(&[
        &"key",
        &"remove",
        &set,
        &"2",
        &"--passphrase-file",
        &s.pass,
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(err.contains("b-other.strata"), "{err}");
    assert_eq!(key_list(&full)[0].2, ["passphrase", "key file"]);
    assert_eq!(key_list(&inc)[0].2, ["passphrase"]);
    let target = d.path().join("out.img");
    for image in [&full, &inc] {
        let err = failed(
            &st(&[&"restore", image, &target, &"--passphrase-file", &s.pass2]),
            4,
            image,
            "removed passphrase",
        );
        assert!(err.contains("wrong key"), "{err}");
        assert!(!target.exists());
        assert_eq!(restored_sha(image, "--passphrase-file", &s.pass), want);
    }
    assert_eq!(restored_sha(&full, "--key-file", &s.key), want);
    assert_eq!((sha256(&other), key_list(&other)), other_before);
    assert_eq!(restored_sha(&other, "--passphrase-file", &pass_b), want);
}

/// `create --encrypt` given both a key file and a passphrase file makes a slot for each:
/// either alone opens the image.
#[test]
fn a_key_file_and_a_passphrase_at_creation_make_two_slots() {
    let d = tempdir();
    let s = secrets(d.path());
    let disk = sample_disk(d.path());
    let image = d.path().join("both.strata");
    create_encrypted(
        &disk,
        &image,
        &s.pass,
        &["--key-file", s.key.to_str().unwrap()],
    );
    let mut kinds = key_list(&image)[0].2.clone();
    kinds.sort();
    assert_eq!(kinds, ["key file", "passphrase"]);
    let want = sha256(&disk);
    assert_eq!(restored_sha(&image, "--key-file", &s.key), want);
    assert_eq!(restored_sha(&image, "--passphrase-file", &s.pass), want);
    failed(
        &st(&[&"info", &image, &"--passphrase-file", &s.wrong]),
        4,
        &image,
        "wrong passphrase",
    );
}
