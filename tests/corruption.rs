//! The corruption matrix: a small FAT volume with files, imaged, then a byte flipped at
//! every structural place of the image (header, chunk records and payloads, block-hash
//! table, index, trailer, a child's parent reference) and in the volume's own metadata.
//! For each flip: `verify` reports it, files untouched by the damage still read back
//! exactly, damaged files fail with an error (and `verify` names them), nothing panics,
//! hangs or returns wrong bytes.
//!
//! Where each file lies on the disk comes from mtools (`mshowfat`), not from strata.
// The reference (where each file lies) comes from mtools, a Linux tool.
#![cfg(unix)]

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata::chain::{Chain, ResolveOptions};
use strata::container::reader::Image;
use strata::vfs::{NodeKind, Target, Vfs};

/// Chunk size of the matrix images: small, so that one damaged chunk costs a few files.
const CHUNK: u32 = 16 << 10;

struct Fixture {
    _dir: tempfile::TempDir,
    disk: PathBuf,
    image: PathBuf,
    /// Path in the volume -> contents.
    files: BTreeMap<String, Vec<u8>>,
    /// Path (files and directories) -> disk byte ranges of its clusters.
    places: BTreeMap<String, Vec<(u64, u64)>>,
    /// Disk bytes that are not file or directory clusters: boot sector, FATs, root directory.
    metadata_end: u64,
}

/// A 2 MiB FAT12 volume (bare, no partition table) with 14 files in the root and two
/// directories, filled by mtools, and its image.
fn fixture() -> Fixture {
    let dir = tempdir();
    let tree = dir.path().join("tree");
    let mut files = BTreeMap::new();
    for (i, sub) in ["", "docs/", "docs/deep/"].iter().enumerate() {
        std::fs::create_dir_all(tree.join(sub)).unwrap();
        for j in 0..5u64 {
            let len = [700, 9000, 33000, 70000, 120000][j as usize] + i * 13;
            let data = if j % 2 == 0 {
                text(len, 40 + j + 10 * i as u64)
            } else {
                noise(len, 40 + j + 10 * i as u64)
            };
            let name = format!("{sub}f{i}{j}.bin");
            std::fs::write(tree.join(&name), &data).unwrap();
            files.insert(format!("/{name}"), data);
        }
    }
    files.remove("/docs/deep/f24.bin");
    std::fs::remove_file(tree.join("docs/deep/f24.bin")).unwrap();
    let disk = dir.path().join("fat.img");
    sh(
        "mkfs.fat",
        &[
            "-C",
            "-i",
            "0badf00d",
            "-n",
            "MATRIX",
            disk.to_str().unwrap(),
            "2048",
        ],
    );
    let img = disk.to_str().unwrap();
    let mut args = vec!["-s", "-i", img];
    let names: Vec<String> = std::fs::read_dir(&tree)
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_string())
        .collect();
    args.extend(names.iter().map(String::as_str));
    args.push("::/");
    sh("mcopy", &args);

    // Cluster geometry from the boot sector, cluster lists from mshowfat.
    let boot = std::fs::read(&disk).unwrap()[..512].to_vec();
    let le16 = |o: usize| u64::from(u16::from_le_bytes([boot[o], boot[o + 1]]));
    let (bps, spc, reserved, fats, roots, spf) = (
        le16(11),
        u64::from(boot[13]),
        le16(14),
        u64::from(boot[16]),
        le16(17),
        le16(22),
    );
    let data_start = (reserved + fats * spf) * bps + roots * 32;
    let cluster = spc * bps;
    let mut places = BTreeMap::new();
    let mut paths: Vec<String> = files.keys().cloned().collect();
    paths.extend(["/docs".to_string(), "/docs/deep".to_string()]);
    for p in &paths {
        let out = sh("mshowfat", &["-i", img, &format!("::{p}")]);
        let mut ranges = Vec::new();
        for run in out.split('<').skip(1) {
            let run = run.split('>').next().unwrap();
            let (a, b) = run.split_once('-').unwrap_or((run, run));
            let (a, b): (u64, u64) = (a.trim().parse().unwrap(), b.trim().parse().unwrap());
            ranges.push((
                data_start + (a - 2) * cluster,
                data_start + (b - 1) * cluster,
            ));
        }
        assert!(!ranges.is_empty(), "{p}: {out}");
        places.insert(p.clone(), ranges);
    }
    let image = dir.path().join("fat.strata");
    let chunk = CHUNK.to_string();
    ok(run_limited(&[
        &"create",
        &disk,
        &image,
        &"-q",
        &"--chunk-size",
        &chunk,
    ]));
    Fixture {
        _dir: dir,
        disk,
        image,
        files,
        places,
        metadata_end: data_start,
    }
}

fn overlaps(a: &[(u64, u64)], b: &[(u64, u64)]) -> bool {
    a.iter()
        .any(|&(s, e)| b.iter().any(|&(s2, e2)| s < e2 && s2 < e))
}

/// What reading every file of `image`'s point in time gave: files read back exactly, and
/// files that failed with an error. Panics (failing the test) on wrong bytes.
/// Err when the image does not open. A volume that cannot be opened counts as every file
/// failing.
fn read_files(
    files: &BTreeMap<String, Vec<u8>>,
    image: &Path,
) -> Result<(BTreeSet<String>, BTreeSet<String>), String> {
    let chain = Chain::open(image, &ResolveOptions::default()).map_err(|e| e.to_string())?;
    let all_failed = || Ok((BTreeSet::new(), files.keys().cloned().collect()));
    let chain = Arc::new(chain);
    let Ok(vfs) = Vfs::open(chain.clone(), chain.sector_size(), chain.cache()) else {
        return all_failed();
    };
    if vfs.fs(0).is_err() {
        return all_failed();
    }
    let (mut good, mut failed) = (BTreeSet::new(), BTreeSet::new());
    for (path, want) in files {
        let got = vfs.resolve(path).and_then(|t| match t {
            Target::Node { mount, node } => {
                let fs = vfs.fs(mount)?;
                assert_eq!(fs.metadata(node)?.kind, NodeKind::File, "{path}");
                Vfs::read_all(&**fs, node, "")
            }
            Target::Top => unreachable!("a file path"),
        });
        match got {
            Ok(data) => {
                assert!(data == *want, "{path}: read returned wrong bytes");
                good.insert(path.clone());
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.is_empty() && !msg.contains('\n'), "{path}: {msg:?}");
                failed.insert(path.clone());
            }
        }
    }
    Ok((good, failed))
}

/// `path` or a directory above it is among the `named` lost paths.
fn covered(named: &BTreeSet<String>, path: &str) -> bool {
    named.contains(path)
        || named
            .iter()
            .any(|d| d == "/" || path.starts_with(&format!("{d}/")))
}

fn flipped(pristine: &[u8], path: &Path, at: u64) {
    let mut b = pristine.to_vec();
    b[at as usize] ^= 0x10;
    std::fs::write(path, b).unwrap();
}

/// A damaged chunk costs exactly the files whose data or directory lies in it: `verify`
/// names them, their reads fail, every other file reads back exactly.
#[test]
fn a_damaged_chunk_costs_only_its_files_and_verify_names_them() {
    let fx = fixture();
    let pristine = std::fs::read(&fx.image).unwrap();
    let img = Image::open(&fx.image).unwrap();
    let chunks: Vec<_> = img.index().chunks.clone();
    let ranges: Vec<_> = (0..chunks.len() as u32)
        .map(|i| img.chunk_disk_ranges(i))
        .collect();
    drop(img);
    let mut files_lost = 0;
    for (i, c) in chunks.iter().enumerate() {
        flipped(
            &pristine,
            &fx.image,
            c.offset + 24 + u64::from(c.stored_len) / 2,
        );
        let reports = strata::ops::verify::verify_chain(&fx.image, 1, false, &Default::default())
            .expect("a damaged chunk is reported, not an error");
        let top = &reports[0];
        assert!(!top.ok(), "chunk {i}: not reported");
        assert!(
            top.problems[0].what.starts_with(&format!("chunk {i} ")),
            "{:?}",
            top.problems
        );
        let named: BTreeSet<String> = top.damaged_files.iter().map(|f| f.path.clone()).collect();

        let (good, failed) = read_files(&fx.files, &fx.image).expect("the chain opens");
        let damaged = &ranges[i];
        for (path, place) in &fx.places {
            let is_file = fx.files.contains_key(path);
            // A file or directory whose clusters lie in the chunk is lost, and named.
            if overlaps(place, damaged) {
                assert!(
                    covered(&named, path),
                    "chunk {i}: {path} lost but not named: {named:?}"
                );
                if is_file {
                    assert!(
                        failed.contains(path),
                        "chunk {i}: {path} read despite damage"
                    );
                }
            }
        }
        // Every file verify names fails to read, and every other one reads exactly.
        for f in &failed {
            assert!(
                covered(&named, f),
                "chunk {i}: {f} fails to read but verify does not name it"
            );
        }
        for f in &good {
            assert!(!named.contains(f), "chunk {i}: {f} named but reads fine");
        }
        // When the chunk holds only file data (no FAT, no directory), the other files are
        // all intact.
        let only_data = damaged.iter().all(|&(s, _)| s >= fx.metadata_end)
            && !["/docs", "/docs/deep"]
                .iter()
                .any(|d| overlaps(&fx.places[*d], damaged));
        if only_data {
            for (path, place) in &fx.places {
                if fx.files.contains_key(path) && !overlaps(place, damaged) {
                    assert!(
                        good.contains(path),
                        "chunk {i}: {path} lost though not in it"
                    );
                }
            }
        }
        files_lost += failed.len();
    }
    std::fs::write(&fx.image, &pristine).unwrap();
    let (good, _) = read_files(&fx.files, &fx.image).unwrap();
    assert_eq!(good.len(), fx.files.len());
    eprintln!(
        "damaged chunks: {} tried, {files_lost} file losses named and confirmed",
        chunks.len()
    );
}

/// Byte offsets of every structural field of `image` (see docs/FORMAT.md).
fn structural_offsets(image: &Path) -> Vec<(u64, String)> {
    let img = Image::open(image).unwrap();
    let h = img.header();
    let idx = img.index();
    let t = img.trailer();
    let mut v = Vec::new();
    let text_end = 144 + h.source.len() as u64 + h.parent_hint.len() as u64;
    for o in (0..text_end).chain(4088..4096) {
        v.push((o, format!("header byte {o}")));
    }
    for (i, c) in idx.chunks.iter().enumerate() {
        for o in 0..24 {
            v.push((c.offset + o, format!("chunk {i} record byte {o}")));
        }
        let n = u64::from(c.stored_len);
        for o in [0, n / 2, n - 1] {
            v.push((c.offset + 24 + o, format!("chunk {i} payload byte {o}")));
        }
    }
    for o in [0, 7, 8 * idx.block_hash_count - 1] {
        v.push((
            idx.block_hashes_offset + o,
            format!("block-hash table byte {o}"),
        ));
    }
    for o in 0..t.index_length {
        v.push((t.index_offset + o, format!("index byte {o}")));
    }
    let tail = img.file_len() - 64;
    for o in 0..64 {
        v.push((tail + o, format!("trailer byte {o}")));
    }
    v
}

/// Every structural byte of a full image and of a child (its parent reference included),
/// flipped one at a time: `verify` fails, and reads either fail with a one-line error or
/// return exactly the right bytes.
#[test]
fn structural_flips_are_reported_and_never_read_as_wrong_data() {
    let fx = fixture();
    // A child: one file rewritten.
    let child_disk = fx.disk.with_file_name("fat2.img");
    std::fs::copy(&fx.disk, &child_disk).unwrap();
    let place = fx.places["/f02.bin"][0];
    write_at(&child_disk, place.0, &noise(4096, 77));
    let child = fx.image.with_file_name("child.strata");
    ok(run_limited(&[
        &"create",
        &child_disk,
        &child,
        &"-q",
        &"--incremental",
        &fx.image,
    ]));
    let mut child_files = fx.files.clone();
    let f02 = child_files.get_mut("/f02.bin").unwrap();
    f02[..4096].copy_from_slice(&noise(4096, 77));
    let mut tried = 0;
    let mut opened_and_read = 0;
    for (image, files) in [(&fx.image, &fx.files), (&child, &child_files)] {
        let pristine = std::fs::read(image).unwrap();
        let offsets = structural_offsets(image);
        for (at, what) in &offsets {
            flipped(&pristine, image, *at);
            let verified = strata::ops::verify::verify_chain(image, 1, false, &Default::default());
            match &verified {
                Ok(reports) => assert!(
                    reports.iter().any(|r| !r.ok()),
                    "{}: flip of {what} not reported",
                    image.display()
                ),
                Err(e) => {
                    let m = e.to_string();
                    assert!(m.contains(".strata") && !m.contains('\n'), "{what}: {m}");
                }
            }
            match read_files(files, image) {
                Ok(_) => opened_and_read += 1,
                Err(m) => assert!(m.contains(".strata") && !m.contains('\n'), "{what}: {m}"),
            }
            tried += 1;
        }
        std::fs::write(image, &pristine).unwrap();
    }
    assert!(tried > 4000, "{tried}");
    eprintln!("structural flips: {tried} tried, {opened_and_read} still opened (reads checked)");
}

/// Flips in the FAT volume's own metadata (boot sector, FAT, root directory, a
/// subdirectory) made before imaging: `create` either images it or fails with a clear
/// error, the image verifies, and browsing it never panics or hangs.
#[test]
fn filesystem_metadata_flips_never_panic_or_hang() {
    let fx = fixture();
    let pristine = std::fs::read(&fx.disk).unwrap();
    let boot = &pristine[..512];
    let bps = u64::from(u16::from_le_bytes([boot[11], boot[12]]));
    let fat = u64::from(u16::from_le_bytes([boot[14], boot[15]])) * bps;
    let root = fx.metadata_end - u64::from(u16::from_le_bytes([boot[17], boot[18]])) * 32;
    let docs = fx.places["/docs"][0].0;
    let mut offsets: Vec<u64> = (0..62).collect();
    offsets.extend((fat..fat + 96).step_by(1));
    offsets.extend((root..root + 8 * 32).step_by(3));
    offsets.extend((docs..docs + 4 * 32).step_by(5));
    let out = fx.image.with_file_name("meta.strata");
    let watchdog = Watchdog::start();
    let mut created = 0;
    for &at in &offsets {
        watchdog.set(format!("metadata flip at disk byte {at}"));
        flipped(&pristine, &fx.disk, at);
        let _ = std::fs::remove_file(&out);
        let mut opts = strata::ops::create::CreateOptions::new(&fx.disk, &out);
        opts.threads = 1;
        opts.chunk_size = CHUNK;
        match strata::ops::create::create(&opts) {
            Ok(_) => {
                created += 1;
                let r = strata::ops::verify::verify(&out, 1, false).unwrap();
                assert!(r.ok(), "flip at {at}: {:?}", r.problems);
                let chain = Chain::open(&out, &ResolveOptions::default()).unwrap();
                let chain = Arc::new(chain);
                if let Ok(vfs) = Vfs::open(chain.clone(), chain.sector_size(), chain.cache()) {
                    walk_all(&vfs);
                }
            }
            Err(e) => assert!(!e.to_string().contains('\n'), "flip at {at}: {e}"),
        }
    }
    watchdog.stop();
    eprintln!(
        "filesystem metadata flips: {} tried, {created} imaged and browsed",
        offsets.len()
    );
}

/// Lists and reads everything, ignoring errors (they are allowed here; panics and hangs
/// are not).
fn walk_all(vfs: &Vfs) {
    for (i, _) in vfs.mounts().iter().enumerate() {
        let Ok(fs) = vfs.fs(i) else { continue };
        let mut todo = vec![(fs.root(), 0)];
        while let Some((dir, depth)) = todo.pop() {
            let Ok(list) = fs.read_dir(dir) else { continue };
            for e in list {
                match fs.metadata(e.node).map(|m| m.kind) {
                    Ok(NodeKind::Dir) if depth < 8 => todo.push((e.node, depth + 1)),
                    Ok(NodeKind::File) => {
                        let _ = Vfs::read_all(&**fs, e.node, "");
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Aborts the test process when one step takes over a minute: a hang is a failure that
/// names the step, never a test run that never ends.
struct Watchdog {
    step: Arc<std::sync::Mutex<(String, std::time::Instant)>>,
    done: Arc<std::sync::atomic::AtomicBool>,
}

impl Watchdog {
    fn start() -> Watchdog {
        let step = Arc::new(std::sync::Mutex::new((
            String::new(),
            std::time::Instant::now(),
        )));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, d) = (step.clone(), done.clone());
        std::thread::spawn(move || {
            while !d.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(200));
                let (what, since) = s.lock().unwrap().clone();
                if since.elapsed().as_secs() > 60 {
                    eprintln!("hang: {what} has run for over 60 s");
                    std::process::abort();
                }
            }
        });
        Watchdog { step, done }
    }

    fn set(&self, what: String) {
        *self.step.lock().unwrap() = (what, std::time::Instant::now());
    }

    fn stop(&self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A directory made to contain itself (the FAT entry of /docs/deep pointed at /docs's own
/// cluster): `ls -R` stops at the loop with a message instead of running for ever.
#[test]
fn a_directory_loop_is_reported_not_followed() {
    let fx = fixture();
    let mut disk = std::fs::read(&fx.disk).unwrap();
    let (docs, end) = fx.places["/docs"][0];
    let boot = &disk[..512];
    let cluster = u64::from(u16::from_le_bytes([boot[11], boot[12]])) * u64::from(boot[13]);
    let docs_cluster = (docs - fx.metadata_end) / cluster + 2;
    let at = (docs..end)
        .step_by(32)
        .find(|&o| &disk[o as usize..o as usize + 11] == b"DEEP       ")
        .expect("the entry of /docs/deep") as usize;
    disk[at + 26..at + 28].copy_from_slice(&(docs_cluster as u16).to_le_bytes());
    let looped = fx.disk.with_file_name("loop.img");
    std::fs::write(&looped, &disk).unwrap();
    let image = fx.disk.with_file_name("loop.strata");
    ok(run_limited(&[&"create", &looped, &image, &"-q"]));
    let watchdog = Watchdog::start();
    watchdog.set("ls -R of a directory loop".into());
    let (code, out, err) = outcome(&run_limited(&[&"ls", &"-R", &image]));
    // Damaged metadata: the integrity exit code.
    assert_eq!(code, 3, "{err}");
    // /docs/deep is /docs itself (the same first cluster): listed, not entered.
    assert!(out.contains("/docs/deep\n"), "{out}");
    assert!(!out.contains("/docs/deep/"), "the loop was entered: {out}");
    assert!(
        !out.contains(&"/deep".repeat(8)),
        "the loop was followed: {out}"
    );
    assert!(err.contains("loops back"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    watchdog.stop();
}
