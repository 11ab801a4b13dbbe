//! Command-line interface: argument definitions and the code that prints results.
//!
//! Exit codes: 0 success, 1 error, 2 usage error, 3 an image failed an integrity check.

mod browse;
pub(crate) mod catalog;
mod demo;
mod key;
mod mount;
mod xattr;

use crate::chain::ResolveOptions;

use crate::error::{Error, Result};
use crate::ops::{consolidate, create, info, restore, verify};
use crate::units::count;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit code for an image that failed an integrity check.
pub const EXIT_INTEGRITY: u8 = 3;
/// Exit code for an encrypted image that could not be unlocked (no key, or a wrong one).
pub const EXIT_KEY: u8 = 4;

/// strata: block-level disk backup images that open like a drive.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    keys: key::KeyArgs,
    /// Endpoint of the S3-compatible server holding `s3://BUCKET/KEY` images (default:
    /// AWS_ENDPOINT_URL, the AWS config file, else AWS S3 in AWS_REGION).
    #[arg(long, global = true, value_name = "URL")]
    s3_endpoint: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Image a disk, a partition or a raw disk file.
    Create(CreateArgs),
    /// Show what an image holds and its chain, or list the backup sets in a directory.
    Info {
        /// An image file, or a directory of images.
        image: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// Check every checksum of an image and of its parents (exit code 3 when anything is
    /// damaged).
    Verify {
        /// The image file.
        image: PathBuf,
        #[command(flatten)]
        chain: ChainArgs,
        /// Worker threads (default: all cores).
        #[arg(long, short = 't', value_parser = parse_threads)]
        threads: Option<usize>,
        /// No progress bar.
        #[arg(long, short = 'q')]
        quiet: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write the disk, as it was at an image's point in time, to a device or a file.
    Restore {
        /// The image file (any point of a chain).
        image: PathBuf,
        #[command(flatten)]
        chain: ChainArgs,
        /// A block device, or a file (created sparse).
        target: PathBuf,
        /// Replace an existing non-empty file.
        #[arg(long, short = 'f')]
        force: bool,
        /// Worker threads (default: all cores).
        #[arg(long, short = 't', value_parser = parse_threads)]
        threads: Option<usize>,
        /// No progress bar.
        #[arg(long, short = 'q')]
        quiet: bool,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Merge an image into its parent (dropping the parent's point in time), or write a
    /// synthetic full image of any point with --full.
    Consolidate {
        /// The image whose point in time is kept.
        image: PathBuf,
        /// Write a full image of the point to this new file instead; nothing else changes.
        #[arg(long, value_name = "OUT")]
        full: Option<PathBuf>,
        /// With --full: replace OUT if it exists.
        #[arg(long, short = 'f')]
        force: bool,
        /// Keep the parent file after merging, even if no other image needs it.
        #[arg(long)]
        keep_parent: bool,
        /// zstd compression level, 1 (fastest) to 22 (smallest).
        #[arg(long, short = 'l', default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
        level: i32,
        /// Compression threads (default: all cores).
        #[arg(long, short = 't', value_parser = parse_threads)]
        threads: Option<usize>,
        /// No progress bar.
        #[arg(long, short = 'q')]
        quiet: bool,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// List files inside an image: the partitions at the top (p1, p2…), then their files.
    Ls {
        /// The image file (any point of a chain).
        image: PathBuf,
        /// Path inside the image, e.g. /p2/Users (default: the top).
        #[arg(default_value = "/")]
        path: String,
        /// Long listing: type, size, modification time, link targets, streams.
        #[arg(long, short = 'l')]
        long: bool,
        /// List directories recursively.
        #[arg(long, short = 'R')]
        recursive: bool,
        /// One JSON object per line and entry.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        chain: ChainArgs,
        #[command(flatten)]
        cache: browse::CacheArgs,
    },
    /// Write a file inside an image (or a stream of it, PATH:stream) to stdout.
    Cat {
        /// The image file (any point of a chain).
        image: PathBuf,
        /// Path inside the image, e.g. /p2/notes.txt or /p2/file.txt:stream.
        path: String,
        #[command(flatten)]
        chain: ChainArgs,
        #[command(flatten)]
        cache: browse::CacheArgs,
    },
    /// Copy files or trees out of an image, keeping modification times and holes.
    Cp {
        /// The image file (any point of a chain).
        image: PathBuf,
        /// Paths inside the image, e.g. /p2/Users/anna/Documents.
        #[arg(required = true, num_args = 1.., value_name = "PATH")]
        paths: Vec<std::ffi::OsString>,
        /// Where to copy to: an existing directory (each PATH goes inside it) or, for one
        /// PATH, a new name.
        #[arg(required = true, value_name = "DEST")]
        dest: PathBuf,
        /// Copy directories and everything below them.
        #[arg(long, short = 'r')]
        recursive: bool,
        /// Replace existing files and links at the destination (directories are merged).
        #[arg(long, short = 'f')]
        force: bool,
        /// No progress bar, no summary.
        #[arg(long, short = 'q')]
        quiet: bool,
        #[command(flatten)]
        chain: ChainArgs,
        #[command(flatten)]
        cache: browse::CacheArgs,
    },
    /// Find files by name across every point of a chain or a directory of images.
    Find(catalog::FindArgs),
    /// The versions of one file across the points of a chain or a directory.
    History(catalog::HistoryArgs),
    /// What changed between two points: added, removed, modified, renamed.
    Diff(catalog::DiffArgs),
    /// Browse every backup in a web page: points, files, search, versions, downloads.
    Serve(ServeArgs),
    /// Show the files of an image in a directory (read-only), like a disk.
    Mount(mount::MountArgs),
    /// List, add or remove the passphrases and key files of encrypted images.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Unmount an image mounted with `strata mount`.
    Unmount(mount::UnmountArgs),
    /// Run the whole job on the built-in sample disk: image, inspect, verify, restore, compare.
    Demo {
        /// Keep the files in this directory (default: a temporary directory, removed after).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// `strata serve`.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Directories of images (every backup set in them) and images (each with its chain).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Address and port to listen on (default 127.0.0.1 and a free port). Any other
    /// address than loopback lets the network in: the URL's token is then the only guard.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<std::net::SocketAddr>,
    /// Also answer to this host name (a name the machine has on the network); repeatable.
    #[arg(long, value_name = "NAME")]
    allow_host: Vec<String>,
    #[command(flatten)]
    chain: ChainArgs,
    #[command(flatten)]
    cache: browse::CacheArgs,
}

/// Where to look for parent images.
#[derive(Debug, Clone, clap::Args)]
pub struct ChainArgs {
    /// Also look for parent images in DIR (repeatable); the parent's recorded path and the
    /// image's own directory are always searched.
    #[arg(long, value_name = "DIR", value_parser = parse_existing_dir)]
    parent_dir: Vec<PathBuf>,
}

impl ChainArgs {
    fn resolve(self) -> ResolveOptions {
        ResolveOptions {
            parent_dirs: self.parent_dir,
        }
    }
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// Disk, partition or raw disk file to image.
    source: PathBuf,
    /// Image file to write.
    dest: PathBuf,
    /// Store every sector (free space included) instead of only used blocks.
    #[arg(long)]
    clone: bool,
    /// Keep the contents of pagefile.sys, hiberfil.sys and swapfile.sys (NTFS); by default
    /// they are left out and read as zeros after a restore.
    #[arg(long)]
    keep_pagefile: bool,
    /// zstd compression level, 1 (fastest) to 22 (smallest).
    #[arg(long, short = 'l', default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    level: i32,
    /// Compression threads (default: all cores). The image is identical whatever the count.
    #[arg(long, short = 't', value_parser = parse_threads)]
    threads: Option<usize>,
    /// Replace DEST if it exists.
    #[arg(long, short = 'f')]
    force: bool,
    /// Store only the changes since PARENT (any image of a chain): an incremental image.
    #[arg(long, value_name = "PARENT", conflicts_with = "differential")]
    incremental: Option<PathBuf>,
    /// Store the changes since the full image at the base of IMAGE's chain: a differential
    /// image.
    #[arg(long, value_name = "IMAGE")]
    differential: Option<PathBuf>,
    #[command(flatten)]
    chain: ChainArgs,
    /// No progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
    /// Logical sector size of a raw disk file (block devices report their own).
    #[arg(long, value_name = "BYTES", value_parser = parse_sector_size)]
    sector_size: Option<u32>,
    /// Uncompressed bytes per chunk: a power of two from 4096 to 64 MiB. Filesystem
    /// metadata (directories, inode tables, $MFT) goes into chunks of at most 256 KiB.
    #[arg(long, value_name = "BYTES", default_value_t = crate::container::DEFAULT_CHUNK_SIZE,
          value_parser = parse_chunk_size)]
    chunk_size: u32,
    /// Do not store a catalog of the files (used by find, history and diff, which then
    /// walk the image instead). STRATA_NO_CATALOG in the environment does the same.
    #[arg(long)]
    no_catalog: bool,
    /// Set the image UUID instead of a random one (for reproducible images; with
    /// SOURCE_DATE_EPOCH the output is byte-identical between runs).
    #[arg(long, value_name = "UUID")]
    uuid: Option<uuid::Uuid>,
    /// Image around source sectors that cannot be read: their blocks are recorded as
    /// unreadable (they restore as zeros, `info` lists them) instead of failing.
    #[arg(long)]
    skip_bad_sectors: bool,
    /// Encrypt a new chain (AES-256-GCM) under a passphrase (asked twice, or
    /// --passphrase-file, or STRATA_PASSPHRASE) or a key file (--key-file). A child of an
    /// encrypted image is encrypted with its chain's key without this option.
    #[arg(long, conflicts_with_all = ["incremental", "differential"])]
    encrypt: bool,
    #[command(flatten)]
    kdf: key::KdfArgs,
}

/// `--threads`: at least one (clap names the option and the value in its message).
fn parse_threads(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("at least 1 thread is needed".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a number of threads".into()),
    }
}

/// A power of two from `min` to `max`.
fn parse_power_of_two(s: &str, min: u32, max: u32) -> std::result::Result<u32, String> {
    let n: u32 = s.parse().map_err(|_| "not a number of bytes".to_string())?;
    if n < min || n > max || !n.is_power_of_two() {
        return Err(format!("must be a power of two from {min} to {max}"));
    }
    Ok(n)
}

/// `--chunk-size`.
fn parse_chunk_size(s: &str) -> std::result::Result<u32, String> {
    parse_power_of_two(s, 4096, crate::container::MAX_CHUNK_SIZE)
}

/// `--sector-size`.
fn parse_sector_size(s: &str) -> std::result::Result<u32, String> {
    parse_power_of_two(s, 512, 65536)
}

/// `--parent-dir`: a directory that exists (a typo would otherwise be searched in vain).
fn parse_existing_dir(s: &str) -> std::result::Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if crate::storage::is_remote(&p) {
        // A bucket prefix: listed when a parent is looked for there.
        return Ok(p);
    }
    match std::fs::metadata(&p) {
        Ok(m) if m.is_dir() => Ok(p),
        Ok(_) => Err("not a directory".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("no such directory".into()),
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

/// Refuses, with the right order, `strata ls /p2 IMAGE`: the image that does not exist is
/// a path inside an image, and one of the paths is a file on disk.
fn image_first(cmd: &str, image: &Path, paths: &[&str]) -> Result<()> {
    if crate::storage::is_remote(image) || std::fs::symlink_metadata(image).is_ok() {
        return Ok(());
    }
    if let Some(p) = paths.iter().find(|p| Path::new(p).is_file()) {
        let usage = if cmd == "cp" {
            "IMAGE PATH... DEST"
        } else {
            "IMAGE PATH"
        };
        return Err(Error::Invalid(format!(
            "{}: no such image; {p} is a file: the image comes first (strata {cmd} {usage})",
            image.display()
        )));
    }
    Ok(())
}

/// The key of a new encrypted chain: a random master key, kept in the keyring, in one
/// slot under the secret the options give (or a passphrase asked twice).
fn new_chain_key(
    keys: &key::KeyArgs,
    kdf: crate::container::crypto::KdfCost,
) -> Result<create::NewKey> {
    use crate::container::crypto::{KeySlot, KeySlots, MasterKey};
    use crate::container::keyring::{new_secret, read_passphrase_file};
    // Both a key file and a passphrase file given: a slot for each, so either opens it.
    let mut secrets = Vec::new();
    if let (Some(_), Some(p)) = (&keys.key_file, &keys.passphrase_file) {
        secrets.push(read_passphrase_file(p)?);
    }
    secrets.push(new_secret(
        keys.passphrase_file.as_deref(),
        keys.key_file.as_deref(),
        true,
    )?);
    let master = MasterKey::generate();
    crate::container::keyring::remember(&master);
    let now = create::creation_time().0;
    Ok(create::NewKey {
        key_id: master.key_id(),
        slots: KeySlots {
            generation: 0,
            slots: secrets
                .iter()
                .map(|s| KeySlot::new(&master, s, kdf, now))
                .collect(),
        },
    })
}

fn threads(n: Option<usize>) -> usize {
    n.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1)
}

/// Parses arguments, runs the command and returns the process exit code.
pub fn main() -> ExitCode {
    // Before any thread starts (see there).
    crate::open_files::prepare();
    let cli = Cli::parse();
    // On Linux `mount` forks before any thread exists and handles its signals itself; the
    // Windows front-end turns the handler's Ctrl-C flag into an unmount.
    if !(cfg!(target_os = "linux") && matches!(cli.command, Command::Mount(_))) {
        crate::progress::install_interrupt_handler();
    }
    let is_mount = matches!(cli.command, Command::Mount(_));
    crate::error::record_panics(is_mount);
    let file = cli.command.file();
    let result = match crate::error::catch_panic(|| run(cli)) {
        Ok(r) => r,
        Err(why) => {
            eprintln!(
                "strata: error: {}",
                crate::error::internal_error(&file, &why)
            );
            return ExitCode::from(EXIT_INTEGRITY);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let is_pipe = matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe);
            if is_pipe {
                return ExitCode::SUCCESS; // the reader went away (`| head`): not an error
            }
            eprintln!("strata: error: {e}");
            if e.is_integrity_failure() {
                ExitCode::from(EXIT_INTEGRITY)
            } else if matches!(e, Error::Key { .. }) {
                ExitCode::from(EXIT_KEY)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

impl Command {
    /// The file a command reads (the image; the source for `create`), named when the
    /// command fails with an internal error.
    fn file(&self) -> PathBuf {
        match self {
            Command::Create(a) => a.source.clone(),
            Command::Info { image, .. }
            | Command::Verify { image, .. }
            | Command::Restore { image, .. }
            | Command::Consolidate { image, .. }
            | Command::Ls { image, .. }
            | Command::Cat { image, .. }
            | Command::Cp { image, .. } => image.clone(),
            Command::Mount(a) => a.image.clone(),
            Command::Find(a) => a.images.clone(),
            Command::Serve(a) => a.images.first().cloned().unwrap_or_default(),
            Command::History(a) => a.images.clone(),
            Command::Diff(a) => a.new.clone(),
            Command::Unmount(a) => a.mountpoint.clone(),
            Command::Key(
                key::KeyCommand::List { image, .. }
                | key::KeyCommand::Add { image, .. }
                | key::KeyCommand::Remove { image, .. },
            ) => image.clone(),
            Command::Demo { .. } => PathBuf::from("demo"),
        }
    }
}

fn out(text: &str) -> Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{text}")
        .and_then(|_| o.flush())
        .map_err(|e| Error::io("stdout", "cannot write", e))
}

fn json<T: serde::Serialize>(v: &T) -> Result<()> {
    out(&serde_json::to_string_pretty(v).expect("serialisable"))
}

fn run(cli: Cli) -> Result<ExitCode> {
    cli.keys.configure();
    if let Some(e) = &cli.s3_endpoint {
        crate::storage::s3::set_endpoint(e);
    }
    match cli.command {
        Command::Key(k) => key::run(k)?,
        Command::Create(a) => {
            let encrypt = if a.encrypt {
                Some(new_chain_key(&cli.keys, a.kdf.cost())?)
            } else {
                None
            };
            let opts = create::CreateOptions {
                level: a.level,
                threads: threads(a.threads),
                force: a.force,
                clone: a.clone,
                keep_pagefile: a.keep_pagefile,
                sector_size: a.sector_size,
                uuid: a.uuid,
                parent: match (a.incremental, a.differential) {
                    (Some(p), _) => Some(create::ParentSpec::Incremental(p)),
                    (None, Some(p)) => Some(create::ParentSpec::Differential(p)),
                    (None, None) => None,
                },
                resolve: a.chain.resolve(),
                chunk_size: a.chunk_size,
                progress: !a.quiet && !a.json,
                skip_bad_sectors: a.skip_bad_sectors,
                catalog: !a.no_catalog && std::env::var_os("STRATA_NO_CATALOG").is_none(),
                encrypt,
                ..create::CreateOptions::new(a.source, a.dest)
            };
            let s = create::create(&opts)?;
            if !s.unreadable.is_empty() {
                let n: u64 = s.unreadable.iter().map(|(a, b)| b - a).sum();
                eprintln!(
                    "strata: warning: {}: {n} bytes could not be read, recorded as unreadable \
                     (they restore as zeros): disk bytes {}",
                    s.source,
                    info::ranges_text(&s.unreadable)
                );
            }
            if a.json {
                json(&s)?;
            } else if !a.quiet {
                out(&create_text(&s))?;
            }
        }
        Command::Info {
            image,
            json: j,
            chain,
        } => {
            let opts = chain.resolve();
            let text = if crate::storage::is_dir(&image) {
                let d = info::dir_info(&image, &opts)?;
                if j {
                    return json(&d).map(|_| ExitCode::SUCCESS);
                }
                d.to_string()
            } else {
                let i = info::info(&image, &opts)?;
                if j {
                    return json(&i).map(|_| ExitCode::SUCCESS);
                }
                i.to_string()
            };
            out(&text)?;
        }
        Command::Verify {
            image,
            chain,
            threads: t,
            quiet,
            json: j,
        } => {
            let keyless = crate::chain::resolve::peek_header(&image)
                .is_some_and(|h| h.encryption.is_some())
                && !crate::container::keyring::has_source();
            let reports = if keyless {
                verify::verify_stored_chain(&image, &chain.resolve())?
            } else {
                verify::verify_chain(&image, threads(t), !quiet && !j, &chain.resolve())?
            };
            if j {
                json(&reports)?;
            } else {
                let texts: Vec<String> = reports.iter().map(verify_text).collect();
                out(&texts.join("\n"))?;
            }
            if reports.iter().any(|r| !r.ok()) {
                return Ok(ExitCode::from(EXIT_INTEGRITY));
            }
        }
        Command::Restore {
            image,
            chain,
            target,
            force,
            threads: t,
            quiet,
            json: j,
        } => {
            let opts = restore::RestoreOptions {
                image,
                target,
                force,
                threads: threads(t),
                progress: !quiet && !j,
                resolve: chain.resolve(),
            };
            let s = restore::restore(&opts)?;
            if j {
                json(&s)?;
            } else if !quiet {
                out(&restore_text(&s))?;
            }
        }
        Command::Consolidate {
            image,
            full,
            force,
            keep_parent,
            level,
            threads: t,
            quiet,
            json: j,
            chain,
        } => {
            let s = consolidate::consolidate(&consolidate::ConsolidateOptions {
                image,
                full_output: full,
                force,
                keep_parent,
                level,
                threads: threads(t),
                progress: !quiet && !j,
                resolve: chain.resolve(),
            })?;
            if j {
                json(&s)?;
            } else if !quiet {
                out(&consolidate_text(&s))?;
            }
        }
        Command::Demo { dir } => demo::run(dir)?,
        Command::Mount(a) => mount::mount(a)?,
        Command::Find(a) => catalog::find(&a)?,
        Command::Serve(a) => crate::serve::serve(crate::serve::ServeOptions {
            roots: a.images,
            listen: a.listen,
            allow_hosts: a.allow_host,
            resolve: a.chain.resolve(),
            cache_bytes: a.cache.bytes(),
        })?,
        Command::History(a) => catalog::history(&a)?,
        Command::Diff(a) => catalog::diff(&a)?,
        Command::Unmount(a) => mount::unmount(a)?,
        Command::Ls {
            image,
            path,
            long,
            recursive,
            json,
            chain,
            cache,
        } => {
            image_first("ls", &image, &[&path])?;
            let opts = browse::LsOptions {
                long,
                recursive,
                json,
                resolve: chain.resolve(),
                cache_bytes: cache.bytes(),
            };
            let code = browse::ls(&image, &path, &opts)?;
            if code != 0 {
                return Ok(ExitCode::from(code));
            }
        }
        Command::Cat {
            image,
            path,
            chain,
            cache,
        } => {
            image_first("cat", &image, &[&path])?;
            browse::cat(&image, &path, &chain.resolve(), cache.bytes())?
        }
        Command::Cp {
            image,
            paths,
            dest,
            recursive,
            force,
            quiet,
            chain,
            cache,
        } => {
            let sources = paths
                .into_iter()
                .map(|p| {
                    p.into_string().map_err(|p| {
                        Error::Invalid(format!(
                            "{}: paths inside images are Unicode",
                            p.to_string_lossy()
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let all: Vec<&str> = sources.iter().map(String::as_str).collect();
            image_first("cp", &image, &all)?;
            let opts = browse::CpOptions {
                recursive,
                force,
                quiet,
                resolve: chain.resolve(),
                cache_bytes: cache.bytes(),
            };
            let s = browse::cp(&image, &sources, &dest, &opts)?;
            for (src, name) in &s.escaped {
                eprintln!("strata: {src}: name escaped as {name}");
            }
            for (src, why) in &s.skipped {
                eprintln!("strata: {src}: skipped: {why}");
            }
            for (src, why) in &s.failed {
                eprintln!("strata: {src}: not copied: {why}");
            }
            for (what, why) in &s.not_kept {
                eprintln!("strata: {what} not kept: {why}");
            }
            if !quiet {
                out(&format!(
                    "copied {}, {}, {}, {}",
                    count(s.files, "file", "files"),
                    count(s.dirs, "directory", "directories"),
                    count(s.links, "link", "links"),
                    info::human_bytes(s.bytes)
                ))?;
            }
            if s.damaged {
                return Ok(ExitCode::from(EXIT_INTEGRITY));
            }
            if !s.failed.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn create_text(s: &create::CreateSummary) -> String {
    let parent = match &s.parent {
        Some(p) => format!(
            " of {}; {} unchanged",
            p.display(),
            info::short_bytes(s.unchanged_bytes)
        ),
        None => String::new(),
    };
    format!(
        "created {} image {} (uuid {}){parent}\n  disk {}, read {}, stored {} of data in {}\
         \n  image {}, ratio {:.2}:1 (data stored / image size), in {:.1} s",
        s.kind.name(),
        s.image.display(),
        s.uuid,
        info::human_bytes(s.disk_bytes),
        info::human_bytes(s.bytes_read),
        info::human_bytes(s.data_bytes),
        count(s.chunks, "chunk", "chunks"),
        info::human_bytes(s.image_bytes),
        s.ratio,
        s.seconds
    ) + &catalog_line(s)
}

/// What the catalog took, when the image has one.
fn catalog_line(s: &create::CreateSummary) -> String {
    if s.catalog_bytes == 0 {
        return String::new();
    }
    let read = s.catalog_entries_read.min(s.catalog_entries);
    let from_parent = if read < s.catalog_entries {
        format!(
            " ({read} read, {} as in the parent's catalog)",
            s.catalog_entries - read
        )
    } else {
        String::new()
    };
    format!(
        "\n  catalog {}, {}{from_parent}",
        info::short_bytes(s.catalog_bytes),
        count(s.catalog_entries, "entry", "entries")
    )
}

fn consolidate_text(s: &consolidate::ConsolidateSummary) -> String {
    let names: Vec<String> = s.merged.iter().map(|p| p.display().to_string()).collect();
    let mut t = format!(
        "wrote {} ({} image, {}) from {}",
        s.image.display(),
        s.kind.name(),
        info::human_bytes(s.image_bytes),
        names.join(" + ")
    );
    for p in &s.removed {
        t.push_str(&format!("\n  removed {} (merged)", p.display()));
    }
    for (p, why) in &s.kept {
        t.push_str(&format!("\n  kept {}: {why}", p.display()));
    }
    t
}

fn verify_text(r: &verify::VerifyReport) -> String {
    let mut t = String::new();
    for p in &r.problems {
        t.push_str(&format!("BAD {}: {}", p.what, p.detail));
        if !p.disk_ranges.is_empty() {
            t.push_str(&format!(
                "\n    affects disk bytes {}",
                info::ranges_text(&p.disk_ranges)
            ));
        }
        t.push('\n');
    }
    if !r.damaged_files.is_empty() {
        t.push_str(&format!(
            "LOST {} with data in damaged chunks:\n",
            count(
                r.damaged_files.len() as u64,
                "file or directory",
                "files or directories"
            )
        ));
        for f in &r.damaged_files {
            t.push_str(&format!("    {}: {}\n", f.path, f.error));
        }
    }
    if let Some(note) = &r.files_note {
        t.push_str(&format!("note: {note}\n"));
    }
    if !r.unreadable.is_empty() {
        t.push_str(&format!(
            "note: {}: the source could not be read at disk bytes {} when the image was made \
             (they read as zeros)\n",
            r.image.display(),
            info::ranges_text(&r.unreadable)
        ));
    }
    let speed = r.image_bytes as f64 / r.seconds.max(1e-9) / (1 << 20) as f64;
    if r.ok() && !r.content_checked {
        t.push_str(&format!(
            "OK {}: {} intact as stored, content not checked (encrypted, no key given)",
            r.image.display(),
            count(r.chunks, "chunk", "chunks"),
        ));
    } else if r.ok() {
        t.push_str(&format!(
            "OK {}: {}, {} of data verified in {:.1} s, {speed:.0} MiB/s of image",
            r.image.display(),
            count(r.chunks, "chunk", "chunks"),
            info::human_bytes(r.data_bytes),
            r.seconds
        ));
    } else {
        t.push_str(&format!(
            "FAILED {}: {} in {} checked",
            r.image.display(),
            count(r.problems.len() as u64, "problem", "problems"),
            count(r.chunks, "chunk", "chunks")
        ));
    }
    t
}

fn restore_text(s: &restore::RestoreSummary) -> String {
    format!(
        "restored {} to {}\n  disk {}, {} of data written, checked, in {:.1} s",
        s.image.display(),
        s.target.display(),
        info::human_bytes(s.disk_bytes),
        info::human_bytes(s.data_bytes),
        s.seconds
    )
}
