//! The Dokan callbacks over a [`Tree`], and mounting in the foreground.

use super::ffi::{self, Dokan, DokanOperations, DokanOptions, Info, Name};
use super::names::{self, status, OpenRequest};
use super::tree::{Place, Tree};
use crate::error::{Error, Result};
use crate::vfs::{Metadata, NodeKind};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use windows_sys::Win32::Foundation::FILETIME;
use windows_sys::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, WIN32_FIND_DATAW, WIN32_FIND_STREAM_DATA,
};

/// One open file or directory: what the path led to, kept until CloseFile.
struct Open {
    place: Place,
    stream: String,
    meta: Metadata,
}

/// The mounted volume, reached from every callback through DOKAN_OPTIONS.GlobalContext.
struct Volume {
    tree: Tree,
    serial: u32,
}

/// The path Dokan passed, as Rust text (unpaired surrogates replaced).
///
/// # Safety
/// `name` is a NUL-terminated UTF-16 string.
unsafe fn path_of(name: Name) -> String {
    let mut n = 0;
    // SAFETY: the string is NUL-terminated (caller).
    while unsafe { *name.add(n) } != 0 {
        n += 1;
    }
    // SAFETY: `n` units were just read.
    String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(name, n) })
}

/// The volume of a request.
///
/// # Safety
/// `info` is the DOKAN_FILE_INFO Dokan passed, whose options carry a `Volume` pointer
/// that outlives the mount.
unsafe fn volume<'a>(info: Info) -> &'a Volume {
    // SAFETY: see above.
    unsafe { &*((*(*info).dokan_options).global_context as *const Volume) }
}

/// The open file of a request, if CreateFile succeeded for it.
///
/// # Safety
/// As [`volume`]; `context` is 0 or a `Box<Open>` made by `create_file`.
unsafe fn opened<'a>(info: Info) -> Option<&'a Open> {
    // SAFETY: see above.
    let ctx = unsafe { (*info).context };
    // SAFETY: see above.
    (ctx != 0).then(|| unsafe { &*(ctx as *const Open) })
}

/// Runs a callback body, turning a panic into STATUS_INTERNAL_ERROR (no unwinding into
/// the Dokan library).
fn guard(f: impl FnOnce() -> i32) -> i32 {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(status::INTERNAL_ERROR)
}

fn filetime(t: u64) -> FILETIME {
    FILETIME {
        dwLowDateTime: t as u32,
        dwHighDateTime: (t >> 32) as u32,
    }
}

/// Resolves a Dokan path to an open file, or the NTSTATUS and whether the directory
/// holding the missing name exists.
fn resolve(vol: &Volume, path: &str) -> std::result::Result<Open, (i32, bool)> {
    let wp = names::parse_path(path).map_err(|s| (s, false))?;
    let place = match vol.tree.resolve(&wp) {
        Ok(place) => place,
        Err((e, parent_found)) => return Err((names::status_of(&e), parent_found)),
    };
    let meta = vol
        .tree
        .metadata(place)
        .map_err(|e| (names::status_of(&e), true))?;
    let mut stream = wp.stream;
    if !stream.is_empty() {
        // Stream names compare ignoring case, as NTFS compares them.
        stream = meta
            .streams
            .iter()
            .find(|s| names::same_name(&s.name, &stream))
            .map(|s| s.name.clone())
            .ok_or((status::OBJECT_NAME_NOT_FOUND, true))?;
    }
    Ok(Open {
        place,
        stream,
        meta,
    })
}

unsafe extern "system" fn create_file(
    name: Name,
    _security: *mut c_void,
    desired_access: u32,
    _attributes: u32,
    _share: u32,
    disposition: u32,
    options: u32,
    info: Info,
) -> i32 {
    guard(|| {
        // SAFETY: Dokan passes a valid name and file info.
        let (vol, path) = unsafe { (volume(info), path_of(name)) };
        let req = OpenRequest {
            desired_access,
            disposition,
            options,
        };
        let open = match resolve(vol, &path) {
            Ok(o) => o,
            Err((status::OBJECT_NAME_NOT_FOUND, parent_found)) => {
                return names::decide_open(req, None, parent_found)
                    .err()
                    .unwrap_or(status::OBJECT_NAME_NOT_FOUND)
            }
            Err((s, _)) => return s,
        };
        let is_dir = open.meta.kind == NodeKind::Dir && open.stream.is_empty();
        if let Err(s) = names::decide_open(req, Some(is_dir), true) {
            return s;
        }
        // SAFETY: `info` is valid for the call; the Box is freed in close_file.
        unsafe {
            (*info).is_directory = u8::from(is_dir);
            (*info).context = Box::into_raw(Box::new(open)) as u64;
        }
        status::SUCCESS
    })
}

unsafe extern "system" fn cleanup(_name: Name, _info: Info) {}

unsafe extern "system" fn close_file(_name: Name, info: Info) {
    // SAFETY: the context is 0 or the Box made by create_file, freed exactly once here.
    unsafe {
        let ctx = std::mem::replace(&mut (*info).context, 0);
        if ctx != 0 {
            drop(Box::from_raw(ctx as *mut Open));
        }
    }
}

unsafe extern "system" fn read_file(
    _name: Name,
    buffer: *mut c_void,
    len: u32,
    read: *mut u32,
    offset: i64,
    info: Info,
) -> i32 {
    guard(|| {
        // SAFETY: Dokan passes a buffer of `len` bytes and a valid file info.
        let (vol, open, buf) = unsafe {
            (
                volume(info),
                opened(info),
                std::slice::from_raw_parts_mut(buffer.cast::<u8>(), len as usize),
            )
        };
        let Some(open) = open else {
            return status::INVALID_PARAMETER;
        };
        let Ok(offset) = u64::try_from(offset) else {
            return status::INVALID_PARAMETER;
        };
        let mut done = 0;
        // A filesystem may return fewer bytes than asked before the end: fill the buffer.
        while done < buf.len() {
            match vol.tree.read(
                open.place,
                &open.stream,
                offset + done as u64,
                &mut buf[done..],
            ) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) => return names::status_of(&e),
            }
        }
        // SAFETY: `read` points to a DWORD.
        unsafe { *read = done as u32 };
        // At or past the end: success with 0 bytes, as ReadFile reports it.
        status::SUCCESS
    })
}

unsafe extern "system" fn write_file(
    _n: Name,
    _b: *const c_void,
    _l: u32,
    _w: *mut u32,
    _o: i64,
    _i: Info,
) -> i32 {
    status::MEDIA_WRITE_PROTECTED
}

unsafe extern "system" fn flush(_n: Name, _i: Info) -> i32 {
    status::SUCCESS
}

unsafe extern "system" fn refuse_name(_n: Name, _i: Info) -> i32 {
    status::MEDIA_WRITE_PROTECTED
}

unsafe extern "system" fn refuse_u32(_n: Name, _a: u32, _i: Info) -> i32 {
    status::MEDIA_WRITE_PROTECTED
}

unsafe extern "system" fn refuse_i64(_n: Name, _a: i64, _i: Info) -> i32 {
    status::MEDIA_WRITE_PROTECTED
}

unsafe extern "system" fn refuse_times(
    _n: Name,
    _c: *const FILETIME,
    _a: *const FILETIME,
    _w: *const FILETIME,
    _i: Info,
) -> i32 {
    status::MEDIA_WRITE_PROTECTED
}

unsafe extern "system" fn refuse_move(_n: Name, _to: Name, _r: i32, _i: Info) -> i32 {
    status::MEDIA_WRITE_PROTECTED
}

unsafe extern "system" fn refuse_security(
    _n: Name,
    _s: *mut u32,
    _d: *mut c_void,
    _l: u32,
    _i: Info,
) -> i32 {
    status::MEDIA_WRITE_PROTECTED
}

/// Size of the data a node shows: a stream's own size for a named stream.
fn shown_size(open: &Open) -> u64 {
    if open.stream.is_empty() {
        if open.meta.kind == NodeKind::Dir {
            0
        } else {
            open.meta.size
        }
    } else {
        open.meta
            .streams
            .iter()
            .find(|s| s.name == open.stream)
            .map_or(0, |s| s.size)
    }
}

unsafe extern "system" fn get_file_information(
    _name: Name,
    out: *mut BY_HANDLE_FILE_INFORMATION,
    info: Info,
) -> i32 {
    guard(|| {
        // SAFETY: valid file info and output structure from Dokan.
        let (vol, open, out) = unsafe { (volume(info), opened(info), &mut *out) };
        let Some(open) = open else {
            return status::INVALID_PARAMETER;
        };
        let m = &open.meta;
        let (c, a, w) = names::times(m);
        let size = shown_size(open);
        let index = match open.place {
            Place::Node { mount, node } => node ^ ((mount as u64) << 56),
            Place::Top => 0,
            Place::Raw(i) => 1 + i as u64,
        };
        out.dwFileAttributes = names::attributes(m);
        out.ftCreationTime = filetime(c);
        out.ftLastAccessTime = filetime(a);
        out.ftLastWriteTime = filetime(w);
        out.dwVolumeSerialNumber = vol.serial;
        out.nFileSizeHigh = (size >> 32) as u32;
        out.nFileSizeLow = size as u32;
        out.nNumberOfLinks = m.nlink.unwrap_or(1);
        out.nFileIndexHigh = (index >> 32) as u32;
        out.nFileIndexLow = index as u32;
        status::SUCCESS
    })
}

fn find_data(name: &str, m: &Metadata) -> WIN32_FIND_DATAW {
    // SAFETY: WIN32_FIND_DATAW is plain data; all zeros is valid.
    let mut d: WIN32_FIND_DATAW = unsafe { std::mem::zeroed() };
    let (c, a, w) = names::times(m);
    let size = if m.kind == NodeKind::Dir { 0 } else { m.size };
    d.dwFileAttributes = names::attributes(m);
    d.ftCreationTime = filetime(c);
    d.ftLastAccessTime = filetime(a);
    d.ftLastWriteTime = filetime(w);
    d.nFileSizeHigh = (size >> 32) as u32;
    d.nFileSizeLow = size as u32;
    d.dwReserved0 = names::reparse_tag(m);
    names::copy_wide(name, &mut d.cFileName);
    d
}

unsafe extern "system" fn find_files(_name: Name, fill: ffi::FillFindData, info: Info) -> i32 {
    guard(|| {
        // SAFETY: valid file info from Dokan.
        let (vol, open) = unsafe { (volume(info), opened(info)) };
        let Some(open) = open else {
            return status::INVALID_PARAMETER;
        };
        let entries = match vol.tree.list(open.place) {
            Ok(e) => e,
            Err(e) => return names::status_of(&e),
        };
        // Below the root, `.` and `..` come first, as NTFS lists them.
        let dots = match vol.tree.root() {
            Ok(root) if root != open.place => vec![".", ".."],
            _ => vec![],
        };
        let dots = dots.into_iter().map(|n| (n.to_string(), open.meta.clone()));
        let named = entries.into_iter().map(|e| (e.name, e.meta));
        for (name, meta) in dots.chain(named) {
            let mut d = find_data(&name, &meta);
            // SAFETY: `fill` is Dokan's callback for this request.
            if unsafe { fill(&mut d, info) } != 0 {
                return status::BUFFER_OVERFLOW;
            }
        }
        status::SUCCESS
    })
}

unsafe extern "system" fn find_streams(
    _name: Name,
    fill: ffi::FillFindStreamData,
    ctx: *mut c_void,
    info: Info,
) -> i32 {
    guard(|| {
        // SAFETY: valid file info from Dokan.
        let Some(open) = (unsafe { opened(info) }) else {
            return status::INVALID_PARAMETER;
        };
        let m = &open.meta;
        let main = (m.kind != NodeKind::Dir).then(|| (String::new(), m.size));
        let named = m.streams.iter().map(|s| (s.name.clone(), s.size));
        for (stream, size) in main.into_iter().chain(named) {
            // SAFETY: plain data; all zeros is valid.
            let mut d: WIN32_FIND_STREAM_DATA = unsafe { std::mem::zeroed() };
            d.StreamSize = size as i64;
            names::copy_wide(&names::stream_entry_name(&stream), &mut d.cStreamName);
            // SAFETY: `fill` and `ctx` are Dokan's for this request.
            if unsafe { fill(&mut d, ctx) } == 0 {
                return status::BUFFER_OVERFLOW;
            }
        }
        status::SUCCESS
    })
}

unsafe extern "system" fn get_disk_free_space(
    free: *mut u64,
    total: *mut u64,
    total_free: *mut u64,
    info: Info,
) -> i32 {
    guard(|| {
        // SAFETY: valid pointers from Dokan (each may be null).
        unsafe {
            let vol = volume(info);
            for (p, v) in [(free, 0), (total, vol.tree.capacity()), (total_free, 0)] {
                if !p.is_null() {
                    *p = v;
                }
            }
        }
        status::SUCCESS
    })
}

/// FILE_CASE_PRESERVED_NAMES | FILE_UNICODE_ON_DISK | FILE_NAMED_STREAMS |
/// FILE_READ_ONLY_VOLUME.
const VOLUME_FLAGS: u32 = 0x2 | 0x4 | 0x4_0000 | 0x8_0000;

unsafe extern "system" fn get_volume_information(
    label: *mut u16,
    label_len: u32,
    serial: *mut u32,
    max_component: *mut u32,
    flags: *mut u32,
    fs_name: *mut u16,
    fs_name_len: u32,
    info: Info,
) -> i32 {
    guard(|| {
        // SAFETY: buffers of the given lengths and DWORD pointers from Dokan.
        unsafe {
            let vol = volume(info);
            names::copy_wide(
                &vol.tree.label(),
                std::slice::from_raw_parts_mut(label, label_len as usize),
            );
            names::copy_wide(
                "strata",
                std::slice::from_raw_parts_mut(fs_name, fs_name_len as usize),
            );
            *serial = vol.serial;
            *max_component = 255;
            *flags = VOLUME_FLAGS;
        }
        status::SUCCESS
    })
}

fn operations() -> DokanOperations {
    DokanOperations {
        zw_create_file: Some(create_file),
        cleanup: Some(cleanup),
        close_file: Some(close_file),
        read_file: Some(read_file),
        write_file: Some(write_file),
        flush_file_buffers: Some(flush),
        get_file_information: Some(get_file_information),
        find_files: Some(find_files),
        find_files_with_pattern: None,
        set_file_attributes: Some(refuse_u32),
        set_file_time: Some(refuse_times),
        delete_file: Some(refuse_name),
        delete_directory: Some(refuse_name),
        move_file: Some(refuse_move),
        set_end_of_file: Some(refuse_i64),
        set_allocation_size: Some(refuse_i64),
        lock_file: None,
        unlock_file: None,
        get_disk_free_space: Some(get_disk_free_space),
        get_volume_information: Some(get_volume_information),
        mounted: None,
        unmounted: None,
        get_file_security: None,
        set_file_security: Some(refuse_security),
        find_streams: Some(find_streams),
    }
}

/// How to mount.
pub struct MountOptions {
    /// `X:\` or a folder path ([`names::mount_point`]).
    pub mount_point: String,
    /// Visible to every session of the machine, not only the current one.
    pub allow_other: bool,
    /// What to print once mounted (the image and where).
    pub announce: String,
}

/// Fails with a message saying how to install Dokan 2 when it is missing (checked before
/// an image is opened, which can take a while for a long chain).
pub fn check_installed() -> Result<()> {
    Dokan::load().map(|_| ())
}

/// Mounts `tree` read-only and serves it until the volume is unmounted (`strata unmount`,
/// Ctrl-C, or Windows' own eject).
pub fn mount(tree: Tree, opts: &MountOptions) -> Result<()> {
    let dokan = Dokan::load()?;
    let serial = {
        let label = tree.label();
        let h = blake3::hash(format!("{}{label}", tree.capacity()).as_bytes());
        u32::from_le_bytes(h.as_bytes()[..4].try_into().expect("4 bytes"))
    };
    let volume = Box::new(Volume { tree, serial });
    let mount_point = names::wide(&opts.mount_point);
    let mut options = Box::new(DokanOptions {
        version: ffi::DOKAN_VERSION,
        single_thread: 0,
        // No mount manager: with it, Dokan would quietly take another drive letter when
        // the one asked for is busy.
        options: ffi::OPTION_WRITE_PROTECT
            | ffi::OPTION_ALT_STREAM
            | if opts.allow_other {
                0
            } else {
                ffi::OPTION_CURRENT_SESSION
            },
        global_context: &*volume as *const Volume as u64,
        mount_point: mount_point.as_ptr(),
        unc_name: std::ptr::null(),
        timeout: 0,
        allocation_unit_size: 4096,
        sector_size: 512,
        volume_security_descriptor_length: 0,
        volume_security_descriptor: [0; 16 * 1024],
    });
    let mut ops = Box::new(operations());
    let mut handle: *mut c_void = std::ptr::null_mut();
    // SAFETY: DokanInit takes no arguments; the options, operations and the volume they
    // point to live until after DokanWaitForFileSystemClosed returns below.
    let rc = unsafe {
        (dokan.init)();
        (dokan.create_file_system)(&mut *options, &mut *ops, &mut handle)
    };
    if rc != ffi::DOKAN_SUCCESS {
        // SAFETY: balances DokanInit.
        unsafe { (dokan.shutdown)() };
        return Err(Error::Invalid(ffi::mount_error(rc, &opts.mount_point)));
    }
    eprintln!(
        "{}\nstrata: serving until `strata unmount {}` or Ctrl-C",
        opts.announce,
        opts.mount_point.trim_end_matches('\\')
    );
    // Ctrl-C sets the flag the progress module keeps; a watcher turns it into an unmount.
    let remove = dokan.remove_mount_point;
    let point = mount_point.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if crate::progress::check_interrupt().is_err() {
            // SAFETY: `point` is a NUL-terminated UTF-16 string.
            unsafe { remove(point.as_ptr()) };
            return;
        }
    });
    // SAFETY: `handle` came from DokanCreateFileSystem and is closed once, after the
    // volume is gone; INFINITE waits for the unmount.
    unsafe {
        (dokan.wait_for_file_system_closed)(handle, u32::MAX);
        (dokan.close_handle)(handle);
        (dokan.shutdown)();
    }
    drop((ops, options, volume));
    Ok(())
}

/// Unmounts a Dokan volume mounted by strata (or any Dokan volume) at `mount_point`.
pub fn unmount(mount_point: &str) -> Result<()> {
    let point = names::mount_point(mount_point).map_err(Error::Invalid)?;
    let dokan = Dokan::load()?;
    let w = names::wide(&point);
    // SAFETY: `w` is a NUL-terminated UTF-16 string.
    if unsafe { (dokan.remove_mount_point)(w.as_ptr()) } == 0 {
        return Err(Error::Invalid(format!(
            "{mount_point}: no Dokan volume is mounted there"
        )));
    }
    Ok(())
}
