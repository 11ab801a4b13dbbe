//! The Linux mount front-end: `strata mount` and `strata unmount` over FUSE (`fuser`,
//! mounting through `fusermount3`, or directly as root).
//!
//! This directory is compiled into the `strata` crate (`#[path]` in `src/lib.rs`) rather
//! than being a crate of its own: a crate that depends on `strata` could not be a
//! dependency of the `strata` binary.
//!
//! By default `mount` returns once the mount is ready and a detached process keeps serving
//! it (like sshfs): the process forks before any thread exists, the child mounts and tells
//! the parent through a pipe "ready" or why it failed. `--foreground` stays attached. Both
//! unmount cleanly on SIGINT, SIGTERM or SIGHUP.

mod tree;

use crate::chain::{Chain, ResolveOptions};
use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
pub use tree::{ImageFs, View};

/// Start of the source name of strata's mounts (`strata:/backups/mon.strata`).
const FSNAME_PREFIX: &str = "strata:";

/// FUSE worker threads: reads of different files (and readahead of one) run in parallel.
const WORKERS: usize = 4;
/// FUSE worker threads of a mount of an image in a bucket.
const REMOTE_WORKERS: usize = 16;

/// Readahead of the mount, in KiB. The kernel caps a FUSE mount's at its default (128 KiB)
/// whatever the daemon asks for, and that keeps one worker busy at a time on a sequential
/// read; 4 MiB keeps every worker decompressing a chunk (a 300 MiB file read at 1.5x the
/// speed). Only root may raise it.
const READAHEAD_KB: u32 = 4096;

/// What `strata mount` was asked for.
pub struct MountOptions {
    pub image: PathBuf,
    pub mountpoint: PathBuf,
    /// Only this partition (number as in `strata ls`), as the root.
    pub partition: Option<u32>,
    /// The disk and its partitions as files instead of their contents.
    pub raw: bool,
    pub foreground: bool,
    pub allow_other: bool,
    pub cache_bytes: u64,
    pub resolve: ResolveOptions,
}

/// Opens what the mount shows ([`crate::point::open_view`]) and the chain it reads.
fn open_view(o: &MountOptions) -> Result<(View, Arc<Chain>)> {
    crate::point::open_view(&o.image, &o.resolve, o.cache_bytes, o.partition, o.raw)
}

fn fuser_config(o: &MountOptions, remote: bool) -> fuser::Config {
    use fuser::MountOption as M;
    let mut c = fuser::Config::default();
    c.mount_options = vec![
        M::RO,
        M::NoDev,
        M::NoSuid,
        M::DefaultPermissions,
        // `mount` shows where a mount comes from; `unmount` recognises its own by it (a
        // mount made without fusermount3 carries no subtype).
        M::FSName(format!(
            "{FSNAME_PREFIX}{}",
            if crate::storage::is_remote(&o.image) {
                o.image.clone() // a URL, not a path to make absolute
            } else {
                std::path::absolute(&o.image).unwrap_or_else(|_| o.image.clone())
            }
            .display()
        )),
        M::Subtype("strata".into()),
    ];
    if o.allow_other {
        c.acl = fuser::SessionACL::All;
    }
    // The kernel keeps up to 12 reads (readahead) in the background: with an image in a
    // bucket they can all wait on slow requests, and more workers than that keep lookups
    // and listings answered meanwhile.
    c.n_threads = Some(if remote { REMOTE_WORKERS } else { WORKERS });
    c.clone_fd = true;
    c
}

fn log_stderr(msg: &str) {
    eprintln!("strata: {msg}");
}

fn log_syslog(msg: &str) {
    let Ok(c) = std::ffi::CString::new(msg.replace('\0', " ")) else {
        return;
    };
    // SAFETY: a constant format string and a NUL-terminated argument.
    unsafe { libc::syslog(libc::LOG_ERR, c"%s".as_ptr(), c.as_ptr()) };
}

/// Mounts the image; returns once it is unmounted (`--foreground`) or once it is ready
/// and served by a detached process.
pub fn mount(o: &MountOptions) -> Result<()> {
    let mp = &o.mountpoint;
    match std::fs::metadata(mp) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::Invalid(format!(
                "{}: mount point is not a directory",
                mp.display()
            )))
        }
        Err(e) => return Err(Error::io(mp, "cannot use as mount point", e)),
    }
    let (view, chain) = open_view(o)?;
    if o.foreground {
        block_signals();
        chain.enable_prefetch();
        let session = fuser::Session::new(
            ImageFs::new(view, log_stderr),
            mp,
            &fuser_config(o, chain.is_remote()),
        )
        .map_err(|e| Error::io(mp, "cannot mount", e))?;
        // After the session has answered the kernel's INIT, which would lower it again.
        let at = mp.to_path_buf();
        std::thread::spawn(move || raise_readahead(&at));
        return serve(session, mp);
    }
    background(o, view, chain)
}

/// Forks; the child mounts, reports through a pipe, detaches and serves.
fn background(o: &MountOptions, view: View, chain: Arc<Chain>) -> Result<()> {
    let mp = &o.mountpoint;
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io(
            mp,
            "cannot mount",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: pipe2 returned two new descriptors we own.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no thread has been started in this process (the CLI starts none before
    // `mount`), so the child is a complete copy.
    match unsafe { libc::fork() } {
        -1 => Err(Error::io(
            mp,
            "cannot mount",
            std::io::Error::last_os_error(),
        )),
        0 => {
            drop(rd);
            let code = child(o, view, &chain, wr);
            std::process::exit(code);
        }
        _ => {
            drop(wr);
            let mut msg = String::new();
            let _ = std::fs::File::from(rd).read_to_string(&mut msg);
            match msg.strip_prefix("ready") {
                Some(_) => {
                    raise_readahead(mp);
                    Ok(())
                }
                None if msg.is_empty() => Err(Error::Invalid(format!(
                    "{}: the mount process ended before the mount was ready",
                    mp.display()
                ))),
                None => Err(Error::Invalid(msg.trim_end().to_string())),
            }
        }
    }
}

fn child(o: &MountOptions, view: View, chain: &Chain, wr: OwnedFd) -> i32 {
    let mp = &o.mountpoint;
    let mut report = std::fs::File::from(wr);
    // SAFETY: plain system calls on our own process.
    unsafe { libc::setsid() };
    block_signals();
    // Threads start in the child: they would not survive the fork.
    chain.enable_prefetch();
    let session = match fuser::Session::new(
        ImageFs::new(view, log_syslog),
        mp,
        &fuser_config(o, chain.is_remote()),
    ) {
        Ok(s) => s,
        Err(e) => {
            let _ = write!(report, "{}", Error::io(mp, "cannot mount", e));
            return 1;
        }
    };
    // Detach from the terminal: stdio to /dev/null (errors go to syslog from now on).
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: duplicating an open descriptor over the standard ones.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let _ = std::env::set_current_dir("/");
    let _ = report.write_all(b"ready");
    drop(report);
    match serve(session, mp) {
        Ok(()) => 0,
        Err(e) => {
            log_syslog(&e.to_string());
            1
        }
    }
}

/// Raises the readahead of the mount at `mp` (see [`READAHEAD_KB`]). The stat waits for
/// the serving process to have answered INIT. Best effort: without root the default stays.
fn raise_readahead(mp: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(mp) else {
        return;
    };
    let dev = m.dev();
    let bdi = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    let _ = std::fs::write(bdi, READAHEAD_KB.to_string());
}

/// Blocks the termination signals in this thread (and the threads it starts), so that the
/// signal thread of [`serve`] alone receives them.
fn block_signals() {
    // SAFETY: a sigset on the stack, filled by sigemptyset/sigaddset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Serves until the mount goes away. A termination signal unmounts; when the mount is
/// busy it is detached (lazy unmount) and the process ends, so nothing hangs.
fn serve(session: fuser::Session<ImageFs>, mp: &Path) -> Result<()> {
    let target = std::path::absolute(mp).unwrap_or_else(|_| mp.to_path_buf());
    std::thread::spawn(move || {
        // SAFETY: as in block_signals; sigwait only reads the set.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe {
            libc::sigemptyset(&mut set);
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, s);
            }
        }
        let mut sig = 0;
        // SAFETY: valid set and output pointer.
        unsafe { libc::sigwait(&set, &mut sig) };
        match detach(&target) {
            Ok(false) => {} // unmounted: the session ends and `serve` returns
            Ok(true) | Err(_) => std::process::exit(0),
        }
    });
    session
        .run()
        .map_err(|e| Error::io(mp, "mount ended with an error", e))
}

/// Unmounts `mp`; a busy mount is detached instead (it goes away once the last open file
/// is closed). Returns true when it had to detach.
fn detach(mp: &Path) -> Result<bool> {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        let c = std::ffi::CString::new(mp.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::Invalid(format!("{}: bad path", mp.display())))?;
        // SAFETY: a NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
            return Ok(false);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(Error::io(mp, "cannot unmount", e));
        }
        // SAFETY: as above.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(true);
        }
        return Err(Error::io(
            mp,
            "cannot unmount",
            std::io::Error::last_os_error(),
        ));
    }
    let run = |lazy: bool| {
        let mut c = std::process::Command::new("fusermount3");
        c.arg(if lazy { "-uz" } else { "-u" }).arg("--").arg(mp);
        c.stdin(std::process::Stdio::null()).output()
    };
    let out = run(false).map_err(|e| {
        Error::io(
            mp,
            "cannot unmount: fusermount3 (package fuse3) failed to run",
            e,
        )
    })?;
    if out.status.success() {
        return Ok(false);
    }
    let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if why.contains("busy") {
        let out = run(true).map_err(|e| Error::io(mp, "cannot unmount", e))?;
        if out.status.success() {
            return Ok(true);
        }
    }
    Err(Error::Invalid(format!(
        "{}: cannot unmount: {why}",
        mp.display()
    )))
}

/// Decodes the octal escapes (`\040` for a space) of a /proc/self/mountinfo field.
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The filesystem type and source mounted at `mp`, if anything is.
fn mounted_at(mp: &Path) -> Option<(String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mp.as_os_str().as_encoded_bytes();
    // The last mount on a path is the visible one.
    info.lines().rev().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let point = left.split(' ').nth(4)?;
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or("").to_string();
        let source =
            String::from_utf8_lossy(&unescape_mountinfo(r.next().unwrap_or(""))).into_owned();
        (unescape_mountinfo(point) == want).then_some((fstype, source))
    })
}

/// `strata unmount`: unmounts a strata mount, detaching it if busy. Works on the mount of
/// a killed `strata` too.
pub fn unmount(mp: &Path) -> Result<()> {
    // Not canonicalize: the mount of a killed process cannot be stat'ed (ENOTCONN).
    let abs = std::path::absolute(mp).map_err(|e| Error::io(mp, "cannot unmount", e))?;
    let abs = match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir).map_or(abs.clone(), |d| d.join(name)),
        _ => abs,
    };
    match mounted_at(&abs) {
        Some((t, src)) if t.starts_with("fuse") && src.starts_with(FSNAME_PREFIX) => {}
        Some((t, _)) => {
            return Err(Error::Invalid(format!(
                "{}: is not a strata mount (it is {t})",
                mp.display()
            )))
        }
        None => {
            return Err(Error::Invalid(format!("{}: is not mounted", mp.display())));
        }
    }
    if detach(&abs)? {
        eprintln!(
            "strata: {}: busy; detached, it goes away when the last open file is closed",
            mp.display()
        );
    }
    Ok(())
}
