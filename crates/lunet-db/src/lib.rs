//! Shared scaffolding of the lunet database drivers (`lunet.sqlite3`,
//! `lunet.mysql`, `lunet.postgres`).
//!
//! A driver crate implements [`Driver`] — how to read `open`'s argument, how to
//! connect, run a query, run a statement or script, and escape a literal — and
//! calls [`open_module`] from its `luaopen_*` function. Everything else lives
//! here, once:
//!
//! - the Lua API (`open`, `query`, `exec`, `query_params`, `exec_params`,
//!   `escape`, `close`), its argument checks and its error contract
//!   (programmer errors raise, runtime failures return `nil, err`);
//! - connection handles: full userdata with a string-named metatable (mlua
//!   userdata cannot cross cdylibs), methods, `__tostring` and a finaliser;
//! - the pool job: every open, statement and close runs on libuv's thread pool
//!   through the core's ABI table (drivers never link libuv) while the calling
//!   coroutine yields; statements on one connection are serialised by a
//!   per-connection mutex, different connections run in parallel; a
//!   statement whose wait ends early (timeout, cancellation) is dropped
//!   from its connection's queue or interrupted ([`Driver::interrupt`]);
//! - Lua arguments to bound parameters ([`Param`]) on the loop thread, and
//!   result rows ([`Rows`]) back to Lua tables on the loop thread.
//!
//! This crate is compiled into each driver separately, so it holds no state
//! shared between drivers; its only static is a per-driver connection count.

#![allow(non_snake_case)] // `L` is the Lua state, as everywhere in the Lua C API.
#![allow(clippy::missing_safety_doc)]

mod cache;
mod handle;
mod job;
mod lua_api;
mod values;

pub use cache::{CacheStats, StatementCache};
pub use lua_api::open_module;
pub use values::{count_mismatch, double_quotes, DbError, Exec, Output, Param, Rows, Statement, StatementKind, Value};

use std::ffi::{c_int, CStr};

use lunet_abi::ffi::lua_State;
use lunet_abi::lua::Raise;

/// What a pool needs to know about a connection after a statement.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub in_transaction: bool,
    pub broken: bool,
}

/// What a database driver provides. Every method except [`Driver::config`]
/// runs on a thread-pool thread, one at a time per connection (the caller
/// holds the connection's mutex), and must not touch Lua.
pub trait Driver: Sized + 'static {
    /// The module's user-facing name, used in error messages and guard
    /// errors: `"sqlite3"` gives `sqlite3.query must be called from coroutine`.
    const NAME: &'static str;
    /// Name of the connection metatable in the Lua registry. Unique per driver
    /// so that a connection of one driver is never taken for another's.
    const METATABLE: &'static CStr;

    /// What `open` needs, read from the Lua argument on the loop thread.
    type Config: Send + 'static;
    /// A live connection.
    type Conn: Send + 'static;
    /// Facts about a connection that are needed without taking its lock
    /// (e.g. the character set, for `escape(conn, s)`). `()` if none.
    type Info: Send + Sync + 'static;

    /// Reads `open`'s argument at stack index `idx` (it may be absent or nil).
    /// Runs on the loop thread; returns `Err` for wrong types (it is raised).
    /// Must not raise Lua errors itself, nor run Lua code that could: read a
    /// table's fields with [`lunet_abi::lua::raw_field`], never through its
    /// metatable (an `__index` that raises or yields would abort the process).
    ///
    /// # Safety
    /// `L` is the state of the running `open` call.
    unsafe fn config(L: *mut lua_State, idx: c_int) -> Result<Self::Config, Raise>;

    /// Opens a connection. The error is the library's full message, with
    /// the database's code when it gave one.
    fn connect(config: Self::Config) -> Result<(Self::Conn, Self::Info), DbError>;

    /// Runs one statement and returns its rows. `params` bind its placeholders
    /// in order; on a count mismatch return [`count_mismatch`]'s message.
    fn query(conn: &mut Self::Conn, sql: &[u8], params: &[Param]) -> Result<Rows, DbError>;

    /// Runs a statement and reports what it changed. With no `params`, `sql`
    /// may be a script of several statements (all are run); with `params`, it
    /// must be exactly one statement.
    fn exec(conn: &mut Self::Conn, sql: &[u8], params: &[Param]) -> Result<Exec, DbError>;

    /// Runs statements that were queued on one connection, in queue order,
    /// setting each one's `outcome`. Called instead of [`Driver::query`] /
    /// [`Driver::exec`] when several statements (from different coroutines)
    /// are waiting for the connection at once, so that a driver whose
    /// protocol can pipeline them (send them all, then read all the results)
    /// saves a round trip per statement. Each statement must behave exactly
    /// as if it had been run alone, in that order. Once a statement's
    /// `closing()` is true the script has closed the connection: statements
    /// not yet started are left without an outcome (they report "connection
    /// is closed"). Call each statement's [`Statement::begin`] right before
    /// starting it and skip it (no outcome) when that returns false: its
    /// caller stopped waiting for it. An interrupt for one statement must
    /// not make the others fail (run them as separate transactions, as when
    /// run alone). The default runs them one by one, each with its own
    /// panic guard.
    fn batch(conn: &mut Self::Conn, batch: &mut [Statement<'_>]) {
        for s in batch.iter_mut() {
            if s.closing() {
                break;
            }
            if !s.begin() {
                continue; // abandoned: never started
            }
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.run_alone::<Self>(conn)));
            s.outcome = Some(run.unwrap_or_else(|p| {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|m| m.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(format!("{} internal error: {what}", Self::NAME).into())
            }));
        }
    }

    /// Asks the server or library to stop the statement running on a
    /// connection right now (libpq's cancel request, MySQL's `KILL QUERY`,
    /// `sqlite3_interrupt`), from another thread and without the
    /// connection's lock: only `info` is available. Called
    ///
    /// - when the coroutine waiting for a statement stops waiting (its wait
    ///   timed out or its task was cancelled) while the statement runs; the
    ///   call is made only while that statement is still the one running
    ///   on the connection, and the connection does not start its next
    ///   statement until the call returned;
    /// - when the connection is closed while a statement runs on it, so
    ///   that the close does not wait for a long statement to finish.
    ///
    /// It runs on a pool thread and may block briefly, unless
    /// [`Driver::INTERRUPT_IS_QUICK`]. The interrupted statement must fail
    /// and leave the connection usable, or mark the connection broken (its
    /// later statements then fail with a clear message). If the statement
    /// has just ended, the interrupt must not affect the next one (libpq's
    /// cancel and `KILL QUERY` are ignored by an idle server session;
    /// SQLite clears the flag when the next statement starts). The default
    /// does nothing: the statement runs to its end.
    fn interrupt(info: &Self::Info) {
        let _ = info;
    }

    /// Whether [`Driver::interrupt`] never blocks (it only sets a flag, as
    /// `sqlite3_interrupt` does): it is then called on the loop thread as
    /// soon as the wait ends, instead of on a pool thread, which could be
    /// busy (every pool thread waiting for a statement).
    const INTERRUPT_IS_QUICK: bool = false;

    /// The counters of the connection's statement cache (see
    /// [`StatementCache`]), copied after every statement so that
    /// `conn:stats()` can read them without the connection's lock.
    fn cache_stats(conn: &Self::Conn) -> CacheStats {
        let _ = conn;
        CacheStats::default()
    }

    /// Whether the connection is inside a transaction (a pool resets it with
    /// `ROLLBACK` before handing it on) and whether it is broken (a pool
    /// closes it). Read after every statement, like [`Driver::cache_stats`].
    fn session(conn: &Self::Conn) -> Session {
        let _ = conn;
        Session::default()
    }

    /// Closes a connection (the default drops it). May block: it runs on the pool.
    fn close(conn: Self::Conn) {
        drop(conn);
    }

    /// The contents of a quoted SQL literal for `s` (without the quotes).
    /// `info` is given for `escape(conn, s)`, also for a closed connection.
    fn escape(info: Option<&Self::Info>, s: &[u8]) -> Vec<u8> {
        let _ = info;
        double_quotes(s)
    }
}
