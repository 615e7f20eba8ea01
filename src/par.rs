//! Running independent parts of a stage at once, on the standard library's
//! scoped threads (a run is short, so no pool is kept). Results come back in
//! input order, so output and diagnostics never depend on timing.

use std::sync::{Mutex, OnceLock};

/// Stack size of the threads [`map`] starts: the main thread's usual 8 MiB
/// rather than the standard library's 2 MiB default, so work that recurses
/// (the KDL parser, one level per nested block, capped at
/// `load`'s nesting limit) has the same room on every thread, debug builds
/// included.
pub const WORKER_STACK: usize = 8 << 20;

/// How many threads are worth using: the machine's available parallelism.
pub fn threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// How many parts to cut a stage's work into: a few per thread, so that
/// [`map`] can even out parts of unequal cost.
pub fn parts() -> usize {
    threads() * 4
}

/// `f` on every input, on up to [`threads`] threads (this one and others):
/// each thread takes the next input not yet taken, so parts of unequal cost
/// even out. Results are in input order; a panic in `f` is passed on.
pub fn map<I: Send, R: Send>(inputs: Vec<I>, f: impl Fn(I) -> R + Sync) -> Vec<R> {
    let workers = threads().min(inputs.len());
    if workers <= 1 {
        return inputs.into_iter().map(f).collect();
    }
    let queue = Mutex::new(inputs.into_iter().enumerate());
    let work = || {
        let mut done = Vec::new();
        loop {
            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
            let Some((k, x)) = next else {
                return done;
            };
            done.push((k, f(x)));
        }
    };
    let work = &work;
    let mut all: Vec<(usize, R)> = std::thread::scope(|s| {
        // A thread that cannot be started leaves its share to the others.
        let others: Vec<_> = (1..workers)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .stack_size(WORKER_STACK)
                    .spawn_scoped(s, work)
                    .ok()
            })
            .collect();
        let mut all = work();
        for h in others {
            all.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        all
    });
    all.sort_unstable_by_key(|(k, _)| *k);
    all.into_iter().map(|(_, r)| r).collect()
}

/// `f` on a thread of its own with a stack of `bytes`, waited for: for work
/// whose recursion depth the input sets (knuffel's parser), with a stack
/// sized for that input. When no thread can be started, `f` runs here.
pub fn with_stack<R: Send>(bytes: usize, f: impl FnOnce() -> R + Send) -> R {
    let slot = Mutex::new(Some(f));
    let take = || slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    let spawned = std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .stack_size(bytes)
            .spawn_scoped(s, || take().map(|f| f()))
            .ok()?;
        Some(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    });
    match spawned.flatten() {
        Some(r) => r,
        None => take().map(|f| f()).expect("the closure runs once"),
    }
}

/// `0..len` cut into at most `parts` consecutive ranges of similar size,
/// none shorter than `min` (so at least one range, possibly empty).
pub fn ranges(len: usize, parts: usize, min: usize) -> Vec<std::ops::Range<usize>> {
    let n = parts.min(len / min.max(1)).max(1);
    (0..n).map(|k| len * k / n..len * (k + 1) / n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_order() {
        let out = map((0..8).collect(), |i: u32| {
            std::thread::sleep(std::time::Duration::from_millis(u64::from(8 - i)));
            i * 10
        });
        assert_eq!(out, (0..8).map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(map(Vec::<u8>::new(), |x| x), Vec::<u8>::new());
    }

    #[test]
    fn ranges_cover_everything() {
        assert_eq!(ranges(10, 2, 1), vec![0..5, 5..10]);
        assert_eq!(ranges(10, 4, 5), vec![0..5, 5..10]);
        assert_eq!(ranges(3, 2, 5), vec![0..3]);
        assert_eq!(ranges(0, 2, 5), vec![0..0]);
        assert_eq!(ranges(7, 3, 1), vec![0..2, 2..4, 4..7]);
    }
}
