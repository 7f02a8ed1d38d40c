//! Zero-cost tracing: with the `trace` feature (debug builds made by
//! `make build-debug`) every coroutine reference taken and released around a
//! wait is counted and the stacks are checked around every resume; at shutdown
//! a summary is printed and the process aborts on any imbalance. Without the
//! feature every function here is an empty `#[inline(always)]` body.

#[cfg(feature = "trace")]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    pub static TAKEN: AtomicU64 = AtomicU64::new(0);
    pub static RELEASED: AtomicU64 = AtomicU64::new(0);
    pub static RESUMES: AtomicU64 = AtomicU64::new(0);
    pub static CHECKS: AtomicU64 = AtomicU64::new(0);

    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}

/// Whether this build carries tracing.
pub const ENABLED: bool = cfg!(feature = "trace");

#[inline(always)]
pub fn ref_taken() {
    #[cfg(feature = "trace")]
    imp::bump(&imp::TAKEN);
}

#[inline(always)]
pub fn ref_released() {
    #[cfg(feature = "trace")]
    imp::bump(&imp::RELEASED);
}

#[inline(always)]
pub fn resumed() {
    #[cfg(feature = "trace")]
    imp::bump(&imp::RESUMES);
}

/// A stack-balance check; `ok == false` is a bug in lunet and aborts.
#[inline(always)]
pub fn check(ok: bool, what: &str) {
    #[cfg(feature = "trace")]
    {
        imp::bump(&imp::CHECKS);
        if !ok {
            eprintln!("[lunet trace] stack imbalance: {what}");
            std::process::abort();
        }
    }
    #[cfg(not(feature = "trace"))]
    let _ = (ok, what);
}

/// (taken, released, resumes, checks); all zero without the feature.
pub fn counts() -> (u64, u64, u64, u64) {
    #[cfg(feature = "trace")]
    return (imp::get(&imp::TAKEN), imp::get(&imp::RELEASED), imp::get(&imp::RESUMES), imp::get(&imp::CHECKS));
    #[cfg(not(feature = "trace"))]
    (0, 0, 0, 0)
}

/// Prints the summary at shutdown, after every pending wait was released, and
/// aborts if the counts disagree.
pub fn summary() {
    #[cfg(feature = "trace")]
    {
        let (t, r, n, c) = counts();
        eprintln!("[lunet trace] coroutine refs taken={t} released={r} balance={} resumes={n} stack checks={c}", t as i64 - r as i64);
        if t != r {
            eprintln!("[lunet trace] FATAL: coroutine reference imbalance");
            std::process::abort();
        }
    }
}
