//! Room for a long chain's open images: every layer of a chain keeps its image file open,
//! so three years of daily points need more than the usual soft limit of 1,024 open files.

/// Descriptors reserved up front: a chain of this many layers opens without the table
/// growing again.
#[cfg(target_os = "linux")]
const RESERVED: i32 = 4096;

/// Raises the soft limit on open files to the hard limit and, on Linux, grows the process's
/// descriptor table once. Called first thing, while the process has a single thread: the
/// kernel grows the table of a process with several threads only after an RCU grace period
/// (several milliseconds), which each doubling from 64 to 1,024 descriptors would otherwise
/// pay while a 1,000-point chain opens (27 ms of its 45).
pub fn prepare() {
    // Not fatal: a short chain needs no more than the default limit.
    #[cfg(unix)]
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    #[cfg(target_os = "linux")]
    {
        let top = RESERVED.min(i32::try_from(limit).unwrap_or(i32::MAX)) - 1;
        if top > 64 {
            for fd in [2, 1, 0] {
                // SAFETY: duplicates a descriptor this process holds (or fails with EBADF)
                // and closes only the duplicate it was given.
                let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, top) };
                if dup >= 0 {
                    unsafe { libc::close(dup) };
                    break;
                }
            }
        }
    }
}
