//! `strata demo`: the whole job on the sample disk built into the binary: image it, check
//! it, look inside (partitions, a file, an NTFS stream), restore it and compare.

use crate::error::{Error, Result};
use crate::ops::{create, info, restore, verify};
use crate::vfs::{NodeKind, Target, Vfs};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The sample disk (GPT with FAT32, NTFS and ext4 partitions), zstd-compressed;
/// `fixtures/make-sample-disk.sh` builds it.
static SAMPLE: &[u8] = include_bytes!("../../fixtures/sample/sample-disk.img.zst");

fn sha256_file(p: &Path) -> Result<String> {
    let mut f = std::fs::File::open(p).map_err(|e| Error::io(p, "cannot open", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(p, "cannot read", e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs the demo in `dir` (kept) or in a temporary directory (removed).
pub fn run(dir: Option<PathBuf>) -> Result<()> {
    let tmp;
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, "cannot create", e))?;
            d
        }
        None => {
            tmp = tempfile::tempdir().map_err(|e| Error::io("/tmp", "cannot create", e))?;
            tmp.path().to_path_buf()
        }
    };
    let disk = dir.join("sample-disk.img");
    let image = dir.join("sample-disk.strata");
    let restored = dir.join("restored-disk.img");
    for p in [&image, &restored] {
        let _ = std::fs::remove_file(p);
    }
    println!("== 1. the sample disk (built into strata)");
    let raw = zstd::stream::decode_all(SAMPLE)
        .map_err(|e| Error::Invalid(format!("the built-in sample disk is damaged: {e}")))?;
    std::fs::write(&disk, &raw).map_err(|e| Error::io(&disk, "cannot write", e))?;
    println!(
        "   {}, {}",
        disk.display(),
        info::human_bytes(raw.len() as u64)
    );
    drop(raw);

    println!(
        "\n== 2. strata create {} {}",
        disk.display(),
        image.display()
    );
    let s = create::create(&create::CreateOptions::new(&disk, &image))?;
    println!(
        "   read {} -> image {} in {:.2} s",
        info::human_bytes(s.bytes_read),
        info::human_bytes(s.image_bytes),
        s.seconds
    );

    println!("\n== 3. strata info {}", image.display());
    for line in info::info(&image, &Default::default())?.to_string().lines() {
        println!("   {line}");
    }

    println!("\n== 4. strata verify {}", image.display());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let r = verify::verify(&image, threads, false)?;
    if !r.ok() {
        return Err(Error::Invalid(format!(
            "verification found {}",
            crate::units::count(r.problems.len() as u64, "problem", "problems")
        )));
    }
    println!("   OK: {} chunks verified", r.chunks);

    browse(&image)?;

    println!(
        "\n== 8. strata restore {} {}",
        image.display(),
        restored.display()
    );
    let rs = restore::restore(&restore::RestoreOptions {
        image: image.clone(),
        target: restored.clone(),
        force: false,
        threads,
        progress: false,
        resolve: Default::default(),
    })?;
    println!(
        "   wrote {} in {:.2} s",
        info::human_bytes(rs.disk_bytes),
        rs.seconds
    );

    println!("\n== 9. compare");
    let (a, b) = (sha256_file(&disk)?, sha256_file(&restored)?);
    println!("   sha256 original {a}\n   sha256 restored {b}");
    if a != b {
        return Err(Error::Invalid(
            "the restored disk differs from the original".into(),
        ));
    }
    println!("\nThe restored disk is identical to the original.");
    println!(
        "The image holds only the blocks the filesystems use and restores the rest as zeros;\n\
         the sample disk's free space is zeros (it was made on a fresh file), so nothing is\n\
         lost. On a used disk free space holds old data, which a restore leaves as zeros\n\
         (`create --clone` keeps every sector)."
    );
    Ok(())
}

/// At most `n` characters of `s`, on one line.
fn excerpt(s: &str, n: usize) -> String {
    let line = s.lines().next().unwrap_or_default();
    match line.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

/// Steps 5 to 7: the files inside the image, as `ls`, `cat` and a stream read show them.
fn browse(image: &Path) -> Result<()> {
    let vfs = crate::point::open_vfs(
        image,
        &Default::default(),
        super::browse::DEFAULT_BROWSE_CACHE_BYTES,
    )?;
    println!("\n== 5. strata ls {} /p1 (and /p2, /p3)", image.display());
    for (i, m) in vfs.mounts().iter().enumerate() {
        let fs = vfs.fs(i)?;
        let mut names: Vec<String> = fs
            .read_dir(fs.root())?
            .into_iter()
            .map(|e| {
                if e.kind == NodeKind::Dir {
                    format!("{}/", e.name)
                } else {
                    e.name
                }
            })
            .collect();
        names.sort();
        let kind = m.kind.map_or("", |k| k.name());
        println!(
            "   /{} [{kind} \"{}\"]: {}",
            m.name,
            m.label,
            names.join("  ")
        );
    }

    let file = "/p2/README.txt";
    println!("\n== 6. strata cat {} '{file}'", image.display());
    let Target::Node { mount, node } = vfs.resolve(file)? else {
        return Err(Error::Invalid(format!("{file}: not a file")));
    };
    let fs = vfs.fs(mount)?;
    let text = Vfs::read_all(&**fs, node, "")?;
    println!("   {}", excerpt(&String::from_utf8_lossy(&text), 72));

    // The mark Windows browsers put on a download: an NTFS alternate data stream.
    let file = "/p2/results.png";
    println!(
        "\n== 7. strata cat {} '{file}:Zone.Identifier'",
        image.display()
    );
    let Target::Node { mount, node } = vfs.resolve(file)? else {
        return Err(Error::Invalid(format!("{file}: not a file")));
    };
    let fs = vfs.fs(mount)?;
    let zone = Vfs::read_all(&**fs, node, "Zone.Identifier")?;
    for line in String::from_utf8_lossy(&zone).lines() {
        println!("   {}", line.trim_end_matches('\r'));
    }
    Ok(())
}
