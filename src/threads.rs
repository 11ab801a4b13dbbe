//! Scoped worker threads: joined one by one, and work split into one contiguous part per
//! core.

/// Joins scoped threads in order and returns what each returned. The scope's own wait
/// ends when their closures return, before their thread-local destructors have run; a
/// join waits for the threads to exit, so that nothing of theirs is left when the caller
/// goes on (a leak checker counting allocations at that point would otherwise report
/// their thread-locals). A panic in a thread goes on in the caller, as the scope would
/// have it.
pub fn join_all<T>(workers: Vec<std::thread::ScopedJoinHandle<'_, T>>) -> Vec<T> {
    workers.into_iter().map(join).collect()
}

/// Joins one scoped thread (see [`join_all`]).
pub fn join<T>(worker: std::thread::ScopedJoinHandle<'_, T>) -> T {
    worker
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Runs `f` on `items` cut into one contiguous part per core, each part on its own
/// thread; returns the parts' results in order. Contiguous parts keep each thread's work
/// together (files in walk order, images in name order).
pub fn map_parts<I: Sync, T: Send>(items: &[I], f: impl Fn(&[I]) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|s| {
        join_all(
            items
                .chunks(per)
                .map(|part| s.spawn(move || f(part)))
                .collect(),
        )
    })
}
