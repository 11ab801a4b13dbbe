//! What a new user meets first: refusals that protect devices, partitions that cannot be
//! read, exit codes, messages in words.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// The sample disk imaged with 4 KiB chunks (one block per chunk) in `dir`.
fn sample_image_4k(dir: &Path) -> PathBuf {
    let disk = sample_disk(dir);
    let image = dir.join("sample.strata");
    ok(run(&[
        &"create",
        &disk,
        &image,
        &"-q",
        &"--chunk-size",
        &"4096",
    ]));
    image
}

/// First 4 KiB block of the NTFS partition (p2) of the sample disk: its boot sector.
const NTFS_BOOT_BLOCK: u64 = 42991616 / 4096;

/// Start of the sample disk's NTFS partition (p2), in 512-byte sectors.
#[cfg(target_os = "linux")]
const NTFS_START_SECTOR: u64 = 83968;

/// The first cluster of the unnamed `$DATA` attribute of the file at `path` on the sample
/// disk's NTFS partition, read with The Sleuth Kit (`ifind`, `istat`); clusters are 4 KiB.
#[cfg(target_os = "linux")]
fn ntfs_first_cluster(disk: &Path, path: &str) -> u64 {
    let off = NTFS_START_SECTOR.to_string();
    let d = disk.to_str().unwrap();
    let inode = if path == "$MFT" {
        "0".to_string()
    } else {
        sh("ifind", &["-o", &off, "-n", path, d])
    };
    let stat = sh("istat", &["-o", &off, d, &inode]);
    let after = stat
        .split("Type: $DATA (128-")
        .nth(1)
        .unwrap_or_else(|| panic!("{path}: no $DATA: {stat}"));
    after
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A 4 KiB disk block of the NTFS partition from its cluster number.
#[cfg(target_os = "linux")]
fn ntfs_block(cluster: u64) -> u64 {
    NTFS_BOOT_BLOCK + cluster
}

#[test]
fn a_partition_that_cannot_be_read_is_listed_and_copying_from_it_fails() {
    let d = tempdir();
    let image = sample_image_4k(d.path());
    damage_block_chunks(&image, &[NTFS_BOOT_BLOCK]);

    // `ls` lists all three partitions, says on stderr which one cannot be read, and exits 3
    // (damage in the image).
    let (code, out, err) = outcome(&run(&[&"ls", &image]));
    assert_eq!(code, 3, "{out}\n{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["p1", "p2", "p3"]);
    assert!(
        err.starts_with("strata: p2: ") && err.contains("corrupt chunk"),
        "{err}"
    );

    let (code, out, _) = outcome(&run(&[&"ls", &"-l", &image]));
    assert_eq!(code, 3);
    let p2 = out.lines().find(|l| l.contains(" p2 ")).expect("p2 listed");
    assert!(
        p2.contains("cannot be read") && p2.contains("corrupt chunk"),
        "{p2}"
    );

    let (code, out, _) = outcome(&run(&[&"ls", &"--json", &image]));
    assert_eq!(code, 3);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(
        rows[1]["error"].as_str().unwrap().contains("corrupt chunk"),
        "{}",
        rows[1]
    );
    assert!(rows[0].get("error").is_none() && rows[2].get("error").is_none());

    // `ls -R` lists the other two in full and fails.
    let (code, out, err) = outcome(&run(&[&"ls", &"-R", &image]));
    assert_eq!(code, 3, "{err}");
    assert!(out.lines().any(|l| l == "/p2"), "p2 listed");
    assert!(out.lines().any(|l| l.starts_with("/p3/")), "p3 walked");
    assert!(err.contains("p2") && err.contains("corrupt chunk"), "{err}");

    // Copying everything copies p1 and p3 and fails loudly on p2.
    let dest = d.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    let (code, _, err) = outcome(&run(&[&"cp", &"-r", &"-q", &image, &"/", &dest]));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("/p2: not copied") && err.contains("corrupt chunk"),
        "{err}"
    );
    for line in sample_manifest().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f[2] != "f" || f[0] == "p2" {
            continue;
        }
        let copied = dest.join("disk").join(f[0]).join(&f[1][1..]);
        assert_eq!(sha256(&copied), f[5], "{}", copied.display());
    }
    fails(
        &[&"cp", &"-r", &image, &"/p2", &dest],
        3,
        &["p2", "corrupt chunk"],
    );
    fails(
        &[&"cat", &image, &"/p2/Documents/client data/letter.csv"],
        3,
        &["p2", "corrupt chunk"],
    );
}

// Finds the damaged file's cluster with The Sleuth Kit, a Linux tool.
#[cfg(target_os = "linux")]
#[test]
fn damaged_file_data_or_metadata_exits_3_in_words() {
    let d = tempdir();
    let image = sample_image_4k(d.path());
    let disk = d.path().join("sample-disk.img");
    let file = "/Documents/client data/budget 2021.txt";
    let data = ntfs_block(ntfs_first_cluster(&disk, file));
    damage_block_chunks(&image, &[data]);
    let inside = format!("/p2{file}");
    fails(&[&"cat", &image, &inside], 3, &["corrupt chunk"]);
    let dest = d.path().join("copy.txt");
    fails(&[&"cp", &image, &inside, &dest], 3, &["corrupt chunk"]);
    assert!(!dest.exists(), "no partial copy is left");
    // In a recursive copy the file is reported and the exit code is still 3.
    let tree = d.path().join("tree");
    let (code, _, err) = outcome(&run(&[
        &"cp",
        &"-r",
        &"-q",
        &image,
        &"/p2/Documents",
        &tree,
    ]));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("budget 2021.txt: not copied") && err.contains("corrupt chunk"),
        "{err}"
    );
    no_debug_text(&err);

    // The file's record in the $MFT (1 KiB records; the file's record number from ifind).
    let image = sample_image_4k(&d.path().join("mft").tap_mkdir());
    let off = NTFS_START_SECTOR.to_string();
    let record: u64 = sh("ifind", &["-o", &off, "-n", file, disk.to_str().unwrap()])
        .parse()
        .unwrap();
    let mft = ntfs_first_cluster(&disk, "$MFT");
    damage_block_chunks(&image, &[ntfs_block(mft + record * 1024 / 4096)]);
    fails(&[&"cat", &image, &inside], 3, &["corrupt chunk"]);

    // ext4 (p3): a file's first data block, found with debugfs on a copy of the partition.
    let part = sample_p3(&disk, d.path());
    let file = "/Dokumente/final/appendix.jpg";
    let first = sample_p3_blocks(&part, file)[0];
    let image = sample_image_4k(&d.path().join("ext").tap_mkdir());
    damage_block_chunks(&image, &[first]);
    fails(
        &[&"cat", &image, &format!("/p3{file}")],
        3,
        &["corrupt chunk"],
    );
}

#[test]
fn messages_are_words_not_rust_debug_text() {
    let d = tempdir();
    let disk = sample_disk(d.path());
    let image = d.path().join("sample.strata");
    let out = ok(run(&[&"create", &disk, &image]));
    assert!(out.starts_with("created full image "), "{out}");
    no_debug_text(&out);
    let full = d.path().join("full.strata");
    let out = ok(run(&[&"consolidate", &image, &"--full", &full]));
    assert!(out.contains("(full image, "), "{out}");
    no_debug_text(&out);
    fails(
        &[&"cat", &image, &"/p3/lost+found"],
        1,
        &["/p3/lost+found: not a regular file (a directory)"],
    );
    let (code, _, err) = outcome(&run(&[&"ls", &"--cache-size", &"12X", &image]));
    assert_eq!(code, 2);
    assert!(
        err.contains("invalid value '12X' for '--cache-size <SIZE>': unknown unit"),
        "{err}"
    );
}

#[cfg(target_os = "linux")]
trait MkDir {
    fn tap_mkdir(self) -> Self;
}

#[cfg(target_os = "linux")]
impl MkDir for PathBuf {
    fn tap_mkdir(self) -> PathBuf {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// The file type of `p` itself, as `ls -l` shows it.
#[cfg(unix)]
fn type_letter(p: &Path) -> char {
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::symlink_metadata(p).unwrap().file_type();
    if t.is_fifo() {
        'p'
    } else if t.is_socket() {
        's'
    } else if t.is_char_device() {
        'c'
    } else if t.is_file() {
        '-'
    } else {
        '?'
    }
}

#[cfg(unix)]
#[test]
fn force_never_replaces_a_device_node_fifo_or_socket() {
    let d = tempdir();
    let image = sample_image_4k(d.path());
    let disk = d.path().join("sample-disk.img");
    let fifo = d.path().join("fifo");
    sh("mkfifo", &[fifo.to_str().unwrap()]);
    let socket = d.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let mut specials = vec![(fifo, "a FIFO", 'p'), (socket, "a socket", 's')];
    // A character device like /dev/null, made here so a failure cannot harm the real one.
    if require_root("force_never_replaces_a_device_node_fifo_or_socket (character device)") {
        let null = d.path().join("null");
        sh("mknod", &[null.to_str().unwrap(), "c", "1", "3"]);
        specials.push((null, "a character device", 'c'));
    }
    for (p, kind, letter) in &specials {
        fails(
            &[&"restore", &"-f", &"-q", &image, p],
            1,
            &[kind, "regular file or a block device"],
        );
        fails(
            &[&"create", &"-f", &"-q", &disk, p],
            1,
            &[kind, "never replaced"],
        );
        fails(
            &[
                &"cp",
                &"-f",
                &image,
                &"/p2/Documents/client data/letter.csv",
                p,
            ],
            1,
            &[kind, "never replaced"],
        );
        assert_eq!(type_letter(p), *letter, "{} was replaced", p.display());
    }
    // A regular file is still replaced with --force.
    let plain = d.path().join("plain");
    std::fs::write(&plain, b"old").unwrap();
    ok(run(&[
        &"cp",
        &"-f",
        &"-q",
        &image,
        &"/p2/Documents/client data/letter.csv",
        &plain,
    ]));
    assert_eq!(std::fs::read(&plain).unwrap().len(), 2030);
}

#[test]
fn bad_option_values_are_usage_errors() {
    let d = tempdir();
    let disk = d.path().join("disk.img");
    std::fs::write(&disk, text(1 << 20, 7)).unwrap();
    let image = d.path().join("disk.strata");
    let missing = d.path().join("no-such-dir");
    for (args, says) in [
        (
            vec!["--chunk-size", "1000"],
            "must be a power of two from 4096",
        ),
        (
            vec!["--chunk-size", "8192000"],
            "must be a power of two from 4096",
        ),
        (
            vec!["--sector-size", "1000"],
            "must be a power of two from 512",
        ),
        (vec!["--level", "99"], "99"),
        (vec!["--threads", "0"], "at least 1 thread"),
        (
            vec!["--parent-dir", missing.to_str().unwrap()],
            "no such directory",
        ),
    ] {
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"create", &disk, &image, &"-q"];
        a.extend(args.iter().map(|s| s as &dyn AsRef<std::ffi::OsStr>));
        let (code, _, err) = outcome(&run(&a));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(says) && err.contains(args[0]),
            "{args:?}: {err}"
        );
        assert!(!image.exists());
    }
    ok(run(&[&"create", &disk, &image, &"-q"]));
    // The same checks on the other commands.
    for a in [
        vec!["verify", "-t", "0"],
        vec!["restore", "--threads", "0"],
        vec!["consolidate", "--threads", "0"],
        vec!["info", "--parent-dir", missing.to_str().unwrap()],
        vec!["ls", "--parent-dir", missing.to_str().unwrap()],
    ] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&a[0], &image];
        if a[0] == "restore" {
            args.push(&"out.img");
        }
        args.extend(a[1..].iter().map(|s| s as &dyn AsRef<std::ffi::OsStr>));
        let (code, _, err) = outcome(&run(&args));
        assert_eq!(code, 2, "{a:?}: {err}");
    }
}

#[test]
fn create_and_info_give_one_ratio_and_name_it() {
    let d = tempdir();
    let disk = sample_disk(d.path());
    let image = d.path().join("sample.strata");
    let created = ok(run(&[&"create", &disk, &image]));
    let info = ok(run(&[&"info", &image]));
    let ratio = |text: &str| -> String {
        let at = text
            .find("ratio")
            .unwrap_or_else(|| panic!("no ratio: {text}"));
        let rest = &text[at..];
        assert!(rest.contains(":1 (data stored / image size)"), "{text}");
        rest.split_whitespace().nth(1).unwrap().to_string()
    };
    assert_eq!(ratio(&created), ratio(&info), "{created}\n{info}");
    let j: serde_json::Value =
        serde_json::from_str(&ok(run(&[&"create", &"-f", &"--json", &disk, &image]))).unwrap();
    let i: serde_json::Value =
        serde_json::from_str(&ok(run(&[&"info", &"--json", &image]))).unwrap();
    let want = j["data_bytes"].as_f64().unwrap() / j["image_bytes"].as_f64().unwrap();
    assert!((j["ratio"].as_f64().unwrap() - want).abs() < 1e-9, "{j}");
    assert!(
        (i["compression_ratio"].as_f64().unwrap() - want).abs() < 1e-9,
        "{i}"
    );
}

#[test]
fn messages_name_what_the_user_typed_and_what_is_on_disk() {
    let d = tempdir();
    let disk = sample_disk(d.path());
    let image = d.path().join("sample.strata");
    ok(run(&[&"create", &disk, &image, &"-q"]));

    // cp's usage names its arguments.
    let help = ok(run(&[&"cp", &"--help"]));
    assert!(
        help.contains(" cp [OPTIONS] <IMAGE> <PATH>... <DEST>"),
        "{help}"
    );

    // Counts take the right number; no doubled parentheses.
    let out = ok(run(&[
        &"cp",
        &image,
        &"/p2/Documents/client data/letter.csv",
        &d.path(),
    ]));
    assert!(
        out.starts_with("copied 1 file, 0 directories, 0 links, "),
        "{out}"
    );
    let info = ok(run(&[&"info", &image]));
    assert!(info.contains(", 3 partitions"), "{info}");
    let verify = ok(run(&[&"verify", &"-q", &image]));
    for text in [&out, &info, &verify] {
        assert!(!text.contains(") ("), "doubled parentheses: {text}");
        assert!(!text.contains("(s)"), "{text}");
    }

    // ls and cp use the names as NTFS stores them, whatever the case typed.
    let typed = "/p2/DOCUMENTS/Client Data/LETTER.CSV";
    assert_eq!(ok(run(&[&"ls", &image, &typed])).trim(), "letter.csv");
    let out = ok(run(&[&"ls", &"--json", &image, &typed]));
    assert!(
        out.contains("\"path\":\"/p2/Documents/client data/letter.csv\""),
        "{out}"
    );
    let out = ok(run(&[
        &"ls",
        &"-R",
        &image,
        &"/p2/documents/./CLIENT DATA/../client data",
    ]));
    assert!(
        out.lines()
            .all(|l| l.starts_with("/p2/Documents/client data/")),
        "{out}"
    );
    let into = d.path().join("into");
    std::fs::create_dir(&into).unwrap();
    ok(run(&[
        &"cp",
        &"-q",
        &"-r",
        &image,
        &typed,
        &"/p2/documents/CLIENT DATA",
        &into,
    ]));
    assert!(into.join("letter.csv").is_file() && into.join("client data").is_dir());

    // A missing stream names the file.
    fails(
        &[
            &"cat",
            &image,
            &"/p2/Documents/client data/letter.csv:nosuch",
        ],
        1,
        &["/p2/Documents/client data/letter.csv: ", "nosuch"],
    );

    // Restoring into a missing directory names the target, not the internal file.
    let target = d.path().join("no-such-dir/disk.img");
    let err = fails(
        &[&"restore", &image, &target],
        1,
        &[target.to_str().unwrap()],
    );
    assert!(!err.contains(".partial"), "{err}");

    // Swapped arguments get a hint.
    fails(
        &[&"ls", &"/p2", &image],
        1,
        &["the image comes first", "strata ls IMAGE PATH"],
    );
    fails(
        &[&"cp", &"/p2/x", &image, &d.path()],
        1,
        &["the image comes first", "strata cp IMAGE PATH... DEST"],
    );
}

/// A partition with nothing strata browses (swap) is listed with the reason and is no
/// error; `ls -R` and `cp -r IMAGE /` pass over it.
// The disk is built by fixtures/make-disk.sh with Linux tools.
#[cfg(target_os = "linux")]
#[test]
fn a_swap_partition_is_listed_and_is_no_error() {
    let d = tempdir();
    let disk = d.path().join("disk.img");
    sh(
        fixtures().join("make-disk.sh").to_str().unwrap(),
        &[
            "--table",
            "gpt",
            "--size",
            "24M",
            "--part",
            "fs=swap,size=4M,label=SWAP",
            "--part",
            "fs=ext4,size=rest,label=DATA,seed=4,files=5",
            disk.to_str().unwrap(),
        ],
    );
    let image = d.path().join("disk.strata");
    ok(run(&[&"create", &disk, &image, &"-q"]));
    let (code, out, err) = outcome(&run(&[&"ls", &"-l", &image]));
    assert_eq!(code, 0, "{err}");
    let p1 = out
        .lines()
        .find(|l| l.ends_with("]") && l.contains(" p1 "))
        .expect("p1 listed");
    assert!(
        p1.ends_with("[Linux swap \"SWAP\": browsing Linux swap is not supported]"),
        "{p1}"
    );
    assert!(out.contains(" p2  [ext4 \"DATA\"]"), "{out}");
    let (code, _, err) = outcome(&run(&[&"ls", &"-R", &image]));
    assert_eq!(code, 0, "{err}");
    let dest = d.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    let (code, _, err) = outcome(&run(&[&"cp", &"-r", &"-q", &image, &"/", &dest]));
    assert_eq!((code, err.as_str()), (0, ""));
}
