//! The part of the Dokan 2 API strata uses (dokan.h of Dokan 2.0.6), bound at run time.
//!
//! Why not the `dokan`/`dokan-sys` crates: dokan-sys links `dokan2.dll` at load time, so a
//! strata.exe built with it would not start at all on a machine without Dokan (not even
//! for `create` or `restore`), and its build script runs a Windows program it compiles,
//! which fails when cross-building from Linux as CI does. Loading the DLL when `mount`
//! runs keeps every other command independent of Dokan and turns a missing driver into a
//! clear message.

use crate::error::{Error, Result};
use std::ffi::c_void;
use windows_sys::Win32::Foundation::{FILETIME, HMODULE};
use windows_sys::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, WIN32_FIND_DATAW, WIN32_FIND_STREAM_DATA,
};
use windows_sys::Win32::System::LibraryLoader::{
    GetProcAddress, LoadLibraryExW, LOAD_LIBRARY_SEARCH_DEFAULT_DIRS,
};

/// The API version strata is written against (DOKAN_VERSION of 2.0.6).
pub const DOKAN_VERSION: u16 = 206;

pub const OPTION_ALT_STREAM: u32 = 1 << 2;
pub const OPTION_WRITE_PROTECT: u32 = 1 << 3;
pub const OPTION_CURRENT_SESSION: u32 = 1 << 7;

/// DokanCreateFileSystem results.
pub const DOKAN_SUCCESS: i32 = 0;

#[repr(C)]
pub struct DokanOptions {
    pub version: u16,
    pub single_thread: u8,
    pub options: u32,
    pub global_context: u64,
    pub mount_point: *const u16,
    pub unc_name: *const u16,
    pub timeout: u32,
    pub allocation_unit_size: u32,
    pub sector_size: u32,
    pub volume_security_descriptor_length: u32,
    pub volume_security_descriptor: [i8; 16 * 1024],
}

#[repr(C)]
pub struct DokanFileInfo {
    pub context: u64,
    pub dokan_context: u64,
    pub dokan_options: *mut DokanOptions,
    pub processing_context: *mut c_void,
    pub process_id: u32,
    pub is_directory: u8,
    pub delete_on_close: u8,
    pub paging_io: u8,
    pub synchronous_io: u8,
    pub nocache: u8,
    pub write_to_end_of_file: u8,
}

pub type Info = *mut DokanFileInfo;
pub type Name = *const u16;
pub type FillFindData = unsafe extern "system" fn(*mut WIN32_FIND_DATAW, Info) -> i32;
pub type FillFindStreamData =
    unsafe extern "system" fn(*mut WIN32_FIND_STREAM_DATA, *mut c_void) -> i32;

/// Callbacks strata does not need are declared with the argument count only: Dokan calls
/// them through the same table, and `None` makes it answer STATUS_NOT_IMPLEMENTED or use
/// its default.
type Unused = Option<unsafe extern "system" fn()>;

#[repr(C)]
pub struct DokanOperations {
    pub zw_create_file:
        Option<unsafe extern "system" fn(Name, *mut c_void, u32, u32, u32, u32, u32, Info) -> i32>,
    pub cleanup: Option<unsafe extern "system" fn(Name, Info)>,
    pub close_file: Option<unsafe extern "system" fn(Name, Info)>,
    pub read_file:
        Option<unsafe extern "system" fn(Name, *mut c_void, u32, *mut u32, i64, Info) -> i32>,
    pub write_file:
        Option<unsafe extern "system" fn(Name, *const c_void, u32, *mut u32, i64, Info) -> i32>,
    pub flush_file_buffers: Option<unsafe extern "system" fn(Name, Info) -> i32>,
    pub get_file_information:
        Option<unsafe extern "system" fn(Name, *mut BY_HANDLE_FILE_INFORMATION, Info) -> i32>,
    pub find_files: Option<unsafe extern "system" fn(Name, FillFindData, Info) -> i32>,
    pub find_files_with_pattern: Unused,
    pub set_file_attributes: Option<unsafe extern "system" fn(Name, u32, Info) -> i32>,
    pub set_file_time: Option<
        unsafe extern "system" fn(
            Name,
            *const FILETIME,
            *const FILETIME,
            *const FILETIME,
            Info,
        ) -> i32,
    >,
    pub delete_file: Option<unsafe extern "system" fn(Name, Info) -> i32>,
    pub delete_directory: Option<unsafe extern "system" fn(Name, Info) -> i32>,
    pub move_file: Option<unsafe extern "system" fn(Name, Name, i32, Info) -> i32>,
    pub set_end_of_file: Option<unsafe extern "system" fn(Name, i64, Info) -> i32>,
    pub set_allocation_size: Option<unsafe extern "system" fn(Name, i64, Info) -> i32>,
    pub lock_file: Unused,
    pub unlock_file: Unused,
    pub get_disk_free_space:
        Option<unsafe extern "system" fn(*mut u64, *mut u64, *mut u64, Info) -> i32>,
    pub get_volume_information: Option<
        unsafe extern "system" fn(
            *mut u16,
            u32,
            *mut u32,
            *mut u32,
            *mut u32,
            *mut u16,
            u32,
            Info,
        ) -> i32,
    >,
    pub mounted: Unused,
    pub unmounted: Unused,
    pub get_file_security: Unused,
    pub set_file_security:
        Option<unsafe extern "system" fn(Name, *mut u32, *mut c_void, u32, Info) -> i32>,
    pub find_streams:
        Option<unsafe extern "system" fn(Name, FillFindStreamData, *mut c_void, Info) -> i32>,
}

/// The functions of dokan2.dll strata calls.
pub struct Dokan {
    pub init: unsafe extern "system" fn(),
    pub shutdown: unsafe extern "system" fn(),
    pub create_file_system:
        unsafe extern "system" fn(*mut DokanOptions, *mut DokanOperations, *mut *mut c_void) -> i32,
    pub wait_for_file_system_closed: unsafe extern "system" fn(*mut c_void, u32) -> u32,
    pub close_handle: unsafe extern "system" fn(*mut c_void),
    pub remove_mount_point: unsafe extern "system" fn(*const u16) -> i32,
}

/// The message for a machine without Dokan 2.
pub const NOT_INSTALLED: &str = "Dokan 2 is not installed (dokan2.dll was not found): \
     install the Dokan 2 driver (DokanSetup.exe or Dokan_x64.msi from \
     https://github.com/dokan-dev/dokany/releases), then try again";

impl Dokan {
    /// Loads dokan2.dll from the application directory or System32 (never the current
    /// directory).
    pub fn load() -> Result<Dokan> {
        let name = super::names::wide("dokan2.dll");
        // SAFETY: `name` is a NUL-terminated UTF-16 string; no file handle is passed.
        let lib: HMODULE = unsafe {
            LoadLibraryExW(
                name.as_ptr(),
                std::ptr::null_mut(),
                LOAD_LIBRARY_SEARCH_DEFAULT_DIRS,
            )
        };
        if lib.is_null() {
            return Err(Error::Invalid(NOT_INSTALLED.into()));
        }
        // The library stays loaded for the life of the process (never freed), so the
        // function pointers below stay valid.
        let sym = |n: &[u8]| -> Result<RawFn> {
            // SAFETY: `lib` is a loaded module and `n` a NUL-terminated ASCII name.
            unsafe { GetProcAddress(lib, n.as_ptr()) }.ok_or_else(|| {
                Error::Invalid(format!(
                    "dokan2.dll has no {}: install Dokan 2.0.6 or newer",
                    String::from_utf8_lossy(&n[..n.len() - 1])
                ))
            })
        };
        // SAFETY: each symbol has the signature dokan.h declares for it, which the field
        // types repeat.
        unsafe {
            Ok(Dokan {
                init: cast(sym(b"DokanInit\0")?),
                shutdown: cast(sym(b"DokanShutdown\0")?),
                create_file_system: cast(sym(b"DokanCreateFileSystem\0")?),
                wait_for_file_system_closed: cast(sym(b"DokanWaitForFileSystemClosed\0")?),
                close_handle: cast(sym(b"DokanCloseHandle\0")?),
                remove_mount_point: cast(sym(b"DokanRemoveMountPoint\0")?),
            })
        }
    }
}

type RawFn = unsafe extern "system" fn() -> isize;

/// A symbol's address as the function pointer type `F`.
///
/// # Safety
/// `F` is a function pointer type with the symbol's real signature.
unsafe fn cast<F>(f: RawFn) -> F {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<RawFn>());
    // SAFETY: same size (checked), and the caller vouches for the signature.
    unsafe { std::mem::transmute_copy::<RawFn, F>(&f) }
}

/// Why DokanCreateFileSystem failed, in words (DokanMainResult codes).
pub fn mount_error(code: i32, mount_point: &str) -> String {
    match code {
        -2 => format!("{mount_point}: the drive letter is in use or not valid"),
        -3 => "the Dokan 2 driver is not installed or not running: install Dokan 2 \
               (DokanSetup.exe or Dokan_x64.msi from \
               https://github.com/dokan-dev/dokany/releases) and restart"
            .into(),
        -4 => "the Dokan driver could not start the file system (is the driver running?)".into(),
        -5 => format!("{mount_point}: cannot assign the drive letter"),
        -6 => format!(
            "{mount_point}: cannot mount there: a folder mount point must be an existing, \
             empty folder on an NTFS volume"
        ),
        -7 => "the installed Dokan is older than 2.0: install Dokan 2".into(),
        c => format!("the Dokan library failed to mount ({c})"),
    }
}
