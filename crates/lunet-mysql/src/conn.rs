//! A connection: the `MYSQL` handle, its prepared-statement cache, what
//! `escape` needs without the connection's lock, and its broken state.
//!
//! Reconnecting is off: when the server drops the connection (restart,
//! `KILL`, network failure), the statement that notices gets the library's
//! or server's message, the handle is closed at once, and every later call
//! on it returns `connection is broken: <that message>`. Nothing is silently
//! reopened, so session state (transactions, variables, temporary tables)
//! is never lost without the script being told. Open a new connection.

use std::ffi::{c_uint, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lunet_db::{CacheStats, DbError, Exec, Param, Rows};
use mysqlclient_sys as my;
use my::mysql_option as opt;

use crate::escape::EscapeInfo;
use crate::rows::{read_text_result, skip_text_result};
use crate::stmt::StmtCache;

/// `CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS | CLIENT_PS_MULTI_RESULTS`:
/// scripts without parameters, several result sets (also from `CALL`).
const CLIENT_FLAGS: std::ffi::c_ulong = (1 << 16) | (1 << 17) | (1 << 18);
/// The largest packet the client accepts (a 1 GiB value is the protocol's
/// own limit); the server's `max_allowed_packet` still applies on its side.
const CLIENT_MAX_PACKET: usize = 1 << 30;
const SERVER_STATUS_NO_BACKSLASH_ESCAPES: c_uint = 512;
/// Server status flag: a transaction is open.
const SERVER_STATUS_IN_TRANS: c_uint = 1;
/// Seconds `open` waits for the server when `connect_timeout` is absent or 0
/// (Connector/C would take 0 as "no limit" and could wait forever).
pub const DEFAULT_CONNECT_TIMEOUT: u32 = 10;

/// What `open` asked for. Strings are bytes: a NUL is refused when
/// connecting (a C string would silently cut it).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub host: Option<Vec<u8>>,
    pub port: u32,
    pub user: Option<Vec<u8>>,
    pub password: Option<Vec<u8>>,
    pub database: Option<Vec<u8>>,
    pub charset: Vec<u8>,
    pub socket: Option<Vec<u8>>,
    /// Seconds; 0 means the default (see [`Config::connect_timeout_secs`]).
    pub connect_timeout: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: Some(b"127.0.0.1".to_vec()),
            port: 3306,
            user: None,
            password: None,
            database: None,
            charset: b"utf8mb4".to_vec(),
            socket: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl Config {
    /// `connect_timeout` in seconds; 0 means the default, never "no limit".
    pub fn connect_timeout_secs(&self) -> c_uint {
        if self.connect_timeout == 0 {
            DEFAULT_CONNECT_TIMEOUT
        } else {
            self.connect_timeout
        }
    }
}

/// An option set on every new handle, holding its argument in exactly the C
/// type that Connector/C's `mysql_optionsv` reads through the pointer it is
/// given. A narrower value read as a wider type takes in whatever bytes lie
/// next to it: a one-byte `my_bool` 0 read as the `unsigned int` of
/// `MYSQL_OPT_LOCAL_INFILE` let stack garbage turn LOAD DATA LOCAL on.
#[derive(Debug)]
pub(crate) enum Opt<'a> {
    /// `MYSQL_OPT_CONNECT_TIMEOUT`, `unsigned int` seconds. While connecting
    /// the library also uses it as the read and write timeout, so it bounds
    /// the wait for the server's greeting and the authentication exchange,
    /// not only the TCP connect. (Once connected, reads have no time limit:
    /// a statement may legitimately run for long.)
    ConnectTimeout(c_uint),
    /// `MYSQL_SET_CHARSET_NAME`, `const char *`.
    Charset(&'a CStr),
    /// `MYSQL_OPT_RECONNECT`, `my_bool`.
    Reconnect(my::my_bool),
    /// `MYSQL_OPT_LOCAL_INFILE`, `unsigned int` (0: refuse LOAD DATA LOCAL).
    LocalInfile(c_uint),
    /// `MYSQL_REPORT_DATA_TRUNCATION`, `my_bool`.
    ReportDataTruncation(my::my_bool),
    /// `MYSQL_OPT_MAX_ALLOWED_PACKET`, `size_t`.
    MaxAllowedPacket(usize),
}

impl Opt<'_> {
    /// Sets the option on `m` (a handle from `mysql_init`, not connected).
    pub(crate) unsafe fn apply(&self, m: *mut my::MYSQL) -> Result<(), String> {
        fn to<T>(v: &T) -> *const c_void {
            (v as *const T).cast()
        }
        let (o, arg) = match self {
            Opt::ConnectTimeout(v) => (opt::MYSQL_OPT_CONNECT_TIMEOUT, to::<c_uint>(v)),
            Opt::Charset(s) => (opt::MYSQL_SET_CHARSET_NAME, s.as_ptr().cast()),
            Opt::Reconnect(v) => (opt::MYSQL_OPT_RECONNECT, to::<my::my_bool>(v)),
            Opt::LocalInfile(v) => (opt::MYSQL_OPT_LOCAL_INFILE, to::<c_uint>(v)),
            Opt::ReportDataTruncation(v) => (opt::MYSQL_REPORT_DATA_TRUNCATION, to::<my::my_bool>(v)),
            Opt::MaxAllowedPacket(v) => (opt::MYSQL_OPT_MAX_ALLOWED_PACKET, to::<usize>(v)),
        };
        if my::mysql_options(m, o, arg) != 0 {
            return Err(format!("mysql.open: cannot set option {o:?}: {}", conn_fail(m).msg));
        }
        Ok(())
    }
}

/// The options every connection gets.
pub(crate) fn options<'a>(cfg: &Config, charset: &'a CStr) -> [Opt<'a>; 6] {
    [
        Opt::ConnectTimeout(cfg.connect_timeout_secs()),
        Opt::Charset(charset),
        // No silent reconnect: it would lose session state unnoticed.
        Opt::Reconnect(0),
        // LOAD DATA LOCAL would let the server read client files.
        Opt::LocalInfile(0),
        Opt::ReportDataTruncation(1),
        Opt::MaxAllowedPacket(CLIENT_MAX_PACKET),
    ]
}

/// Facts about a connection readable without its lock: what `escape`
/// needs, and how to stop its running statement.
pub struct Info {
    pub escape: Arc<EscapeInfo>,
    pub killer: Killer,
}

/// Seconds the side connection of [`Killer::kill_query`] may take to
/// connect, and then to get its answer (at most the connection's own
/// `connect_timeout`).
const KILL_TIMEOUT: u32 = 5;

/// What is needed to run `KILL QUERY <thread id>` for a connection over a
/// short-lived side connection with the same address and credentials.
/// MariaDB/MySQL then stop the statement, which fails with
/// ER_QUERY_INTERRUPTED (1317) while its connection stays usable; a session
/// that is idle by then ignores the kill (its next statement runs normally).
pub struct Killer {
    host: Option<CString>,
    user: Option<CString>,
    password: Option<CString>,
    socket: Option<CString>,
    port: u32,
    timeout: c_uint,
    thread_id: u64,
}

impl Killer {
    /// Stops the statement the connection is running, if it can: failures
    /// (server unreachable, no privilege to kill) are ignored, and the
    /// statement then runs to its end. Blocks for at most about
    /// 2 × [`KILL_TIMEOUT`] seconds.
    pub fn kill_query(&self) {
        unsafe {
            let m = my::mysql_init(std::ptr::null_mut());
            if m.is_null() {
                return;
            }
            let t = self.timeout;
            let opts = [
                (opt::MYSQL_OPT_CONNECT_TIMEOUT, &t as *const c_uint as *const c_void),
                (opt::MYSQL_OPT_READ_TIMEOUT, &t as *const c_uint as *const c_void),
                (opt::MYSQL_OPT_WRITE_TIMEOUT, &t as *const c_uint as *const c_void),
            ];
            let mut ok = opts.iter().all(|&(o, v)| my::mysql_options(m, o, v) == 0);
            ok = ok
                && Opt::Reconnect(0).apply(m).is_ok()
                && Opt::LocalInfile(0).apply(m).is_ok()
                && !my::mysql_real_connect(
                    m,
                    ptr(&self.host),
                    ptr(&self.user),
                    ptr(&self.password),
                    std::ptr::null(),
                    if self.port == 0 { 3306 } else { self.port },
                    ptr(&self.socket),
                    0,
                )
                .is_null();
            if ok {
                let sql = format!("KILL QUERY {}", self.thread_id);
                my::mysql_real_query(m, sql.as_ptr().cast(), sql.len() as _);
            }
            my::mysql_close(m);
        }
    }
}

/// A MySQL error: the client or server error number (0 for our own checks),
/// the SQLSTATE and the full message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fail {
    pub code: u32,
    pub sqlstate: String,
    pub msg: String,
}

impl Fail {
    pub fn ours(msg: impl Into<String>) -> Fail {
        Fail { code: 0, sqlstate: String::new(), msg: msg.into() }
    }

    /// The error scripts see: the message and `"<errno>/<SQLSTATE>"`.
    pub fn to_db(&self) -> DbError {
        match self.code {
            0 => DbError::from(self.msg.clone()),
            n => DbError::new(self.msg.clone(), format!("{n}/{}", self.sqlstate)),
        }
    }

    /// Whether the connection is gone after this error.
    fn is_fatal(&self) -> bool {
        matches!(
            self.code,
            2006 // CR_SERVER_GONE_ERROR
            | 2013 // CR_SERVER_LOST
            | 2055 // CR_SERVER_LOST_EXTENDED
            | 2014 // CR_COMMANDS_OUT_OF_SYNC: state unknown, never reuse
            | 2027 // CR_MALFORMED_PACKET
            | 1927 // ER_CONNECTION_KILLED
            | 1053 // ER_SERVER_SHUTDOWN
            | 1153 // ER_NET_PACKET_TOO_LARGE: the server hangs up after it
            | 4031 // ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8: idle too long)
        )
    }
}

/// The pointer to give Connector/C for SQL passed with its length. The
/// library takes a length of 0 to mean "a C string: measure it" and calls
/// `strlen` on the pointer, while an empty slice's pointer dangles; so empty
/// SQL points at a real NUL byte instead, and the server answers it as it
/// answers blank SQL: "Query was empty".
pub(crate) fn sql_ptr(sql: &[u8]) -> *const std::ffi::c_char {
    if sql.is_empty() {
        c"".as_ptr()
    } else {
        sql.as_ptr().cast()
    }
}

pub(crate) unsafe fn text(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// The last error of a `MYSQL` handle.
pub(crate) unsafe fn conn_fail(m: *mut my::MYSQL) -> Fail {
    let code = my::mysql_errno(m);
    let mut msg = text(my::mysql_error(m));
    if msg.is_empty() {
        msg = format!("MySQL error {code}");
    }
    Fail { code, sqlstate: sqlstate(my::mysql_sqlstate(m)), msg }
}

/// A SQLSTATE as the library gives it ("HY000" when it has none).
pub(crate) unsafe fn sqlstate(p: *const std::ffi::c_char) -> String {
    match text(p) {
        s if s.len() == 5 => s,
        _ => "HY000".into(),
    }
}

pub struct Conn {
    /// Null once the connection is broken (closed right away).
    mysql: *mut my::MYSQL,
    /// The error that broke the connection.
    broken: Option<DbError>,
    stmts: StmtCache,
    escape: Arc<EscapeInfo>,
    /// Whether a transaction was open after the last statement.
    in_trans: bool,
}

// SAFETY: a MYSQL handle may move between threads as long as one thread at a
// time uses it; lunet-db's per-connection lock guarantees that.
unsafe impl Send for Conn {}

/// A C string for `field`, or the error for a NUL inside it.
fn c_string(field: &str, v: &Option<Vec<u8>>) -> Result<Option<CString>, String> {
    match v {
        None => Ok(None),
        Some(b) => CString::new(b.clone())
            .map(Some)
            .map_err(|_| format!("mysql.open: field '{field}' contains a NUL byte")),
    }
}

fn ptr(c: &Option<CString>) -> *const std::ffi::c_char {
    c.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
}

impl Conn {
    /// Connects (blocking; on a pool thread).
    pub fn connect(cfg: &Config) -> Result<(Conn, Info), DbError> {
        let host = c_string("host", &cfg.host)?;
        let user = c_string("user", &cfg.user)?;
        let password = c_string("password", &cfg.password)?;
        let database = c_string("database", &cfg.database)?;
        let socket = c_string("socket", &cfg.socket)?;
        let charset =
            CString::new(cfg.charset.clone()).map_err(|_| "mysql.open: field 'charset' contains a NUL byte")?;
        unsafe {
            let m = my::mysql_init(std::ptr::null_mut());
            if m.is_null() {
                return Err("mysql.open: out of memory".into());
            }
            for o in options(cfg, &charset) {
                if let Err(e) = o.apply(m) {
                    my::mysql_close(m);
                    return Err(e.into());
                }
            }
            let connected = my::mysql_real_connect(
                m,
                ptr(&host),
                ptr(&user),
                ptr(&password),
                ptr(&database),
                if cfg.port == 0 { 3306 } else { cfg.port },
                ptr(&socket),
                CLIENT_FLAGS,
            );
            if connected.is_null() {
                let f = conn_fail(m);
                my::mysql_close(m);
                return Err(f.to_db());
            }
            let escape = Arc::new(EscapeInfo::of(m));
            let killer = Killer {
                host,
                user,
                password,
                socket,
                port: cfg.port,
                timeout: cfg.connect_timeout_secs().min(KILL_TIMEOUT),
                thread_id: my::mysql_thread_id(m) as u64,
            };
            let mut conn = Conn { mysql: m, broken: None, stmts: StmtCache::default(), escape: escape.clone(), in_trans: false };
            conn.note_status();
            Ok((conn, Info { escape, killer }))
        }
    }

    /// The live handle, or the error of a broken connection.
    fn live(&self) -> Result<*mut my::MYSQL, DbError> {
        match &self.broken {
            Some(why) => Err(DbError { message: format!("connection is broken: {}", why.message), code: why.code.clone() }),
            None => Ok(self.mysql),
        }
    }

    /// Records what `escape` needs from the last statement's status.
    fn note_status(&mut self) {
        if self.mysql.is_null() {
            return;
        }
        let mut status: c_uint = 0;
        let failed = unsafe {
            my::mariadb_get_infov(
                self.mysql,
                my::mariadb_value::MARIADB_CONNECTION_SERVER_STATUS,
                (&mut status as *mut c_uint).cast(),
            )
        };
        if failed == 0 {
            self.in_trans = status & SERVER_STATUS_IN_TRANS != 0;
            self.escape
                .no_backslash_escapes
                .store(status & SERVER_STATUS_NO_BACKSLASH_ESCAPES != 0, Ordering::Relaxed);
        }
    }

    /// Turns an outcome into the driver's result: a fatal error breaks the
    /// connection (closing the handle now).
    fn settle<T>(&mut self, r: Result<T, Fail>) -> Result<T, DbError> {
        match r {
            Ok(v) => {
                self.note_status();
                Ok(v)
            }
            Err(f) => {
                if f.is_fatal() {
                    self.break_with(f.to_db());
                } else {
                    self.note_status();
                }
                Err(f.to_db())
            }
        }
    }

    fn break_with(&mut self, why: DbError) {
        self.broken = Some(why);
        self.shut();
    }

    /// Closes the statements and the handle.
    fn shut(&mut self) {
        self.stmts.clear();
        if !self.mysql.is_null() {
            unsafe { my::mysql_close(self.mysql) };
            self.mysql = std::ptr::null_mut();
        }
    }

    /// The statement cache's counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.stmts.stats()
    }

    pub fn query(&mut self, sql: &[u8], params: &[Param]) -> Result<Rows, DbError> {
        let m = self.live()?;
        let r = if params.is_empty() {
            unsafe { text_query(m, sql, true).map(|(rows, _)| rows.unwrap_or_default()) }
        } else {
            unsafe { self.stmts.run(m, sql, params, true).map(|(rows, _)| rows.unwrap_or_default()) }
        };
        self.settle(r)
    }

    pub fn exec(&mut self, sql: &[u8], params: &[Param]) -> Result<Exec, DbError> {
        let m = self.live()?;
        let r = if params.is_empty() {
            unsafe { text_query(m, sql, false).map(|(_, e)| e) }
        } else {
            unsafe { self.stmts.run(m, sql, params, false).map(|(_, e)| e) }
        };
        self.settle(r)
    }

    /// The server's id for this connection (for tests).
    #[cfg(test)]
    pub fn thread_id(&self) -> u64 {
        unsafe { my::mysql_thread_id(self.mysql) as u64 }
    }

    /// The library's own escaping on this connection (to compare with ours).
    #[cfg(test)]
    pub fn real_escape(&self, s: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 2 * s.len() + 1];
        let n = unsafe { my::mysql_real_escape_string(self.mysql, out.as_mut_ptr().cast(), s.as_ptr().cast(), s.len() as _) };
        out.truncate(n as usize);
        out
    }

    #[cfg(test)]
    pub fn escape_info(&self) -> Arc<EscapeInfo> {
        self.escape.clone()
    }

    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// Whether a transaction was open after the last statement.
    pub fn in_transaction(&self) -> bool {
        self.in_trans && self.broken.is_none()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Usually on a pool thread; a connection nobody closed may be dropped
        // on whichever thread releases it last.
        crate::thread_ready();
        self.shut();
    }
}

/// Adds one statement's counts to `e` (`affected_rows` is all ones for
/// statements that do not change rows, e.g. a SELECT).
pub(crate) fn count(e: &mut Exec, affected: u64, insert_id: u64) {
    if affected != u64::MAX {
        e.affected_rows += affected;
    }
    if insert_id != 0 {
        e.last_insert_id = insert_id as i64;
    }
}

/// Runs SQL with the text protocol: every statement of a script, every
/// result set drained. Returns the rows of the first result set that has
/// columns (when `want_rows`), and the summed counts.
unsafe fn text_query(m: *mut my::MYSQL, sql: &[u8], want_rows: bool) -> Result<(Option<Rows>, Exec), Fail> {
    if my::mysql_real_query(m, sql_ptr(sql), sql.len() as _) != 0 {
        return Err(conn_fail(m));
    }
    let mut rows = None;
    let mut exec = Exec::default();
    loop {
        if my::mysql_field_count(m) > 0 {
            let res = my::mysql_use_result(m);
            if res.is_null() {
                return Err(conn_fail(m));
            }
            let r = if want_rows && rows.is_none() {
                read_text_result(m, res).map(|r| rows = Some(r))
            } else {
                skip_text_result(m, res)
            };
            my::mysql_free_result(res);
            r?;
        } else {
            count(&mut exec, my::mysql_affected_rows(m), my::mysql_insert_id(m));
        }
        match my::mysql_next_result(m) {
            0 => continue,
            -1 => break,
            _ => return Err(conn_fail(m)),
        }
    }
    Ok((rows, exec))
}

impl EscapeInfo {
    /// The connection's character set (the one `mysql_real_escape_string`
    /// would use: it is fixed at connect time, `SET NAMES` does not change it).
    unsafe fn of(m: *mut my::MYSQL) -> EscapeInfo {
        let mut cs: my::MY_CHARSET_INFO = std::mem::zeroed();
        my::mysql_get_character_set_info(m, &mut cs);
        EscapeInfo::new(my::mariadb_get_charset_by_nr(cs.number), AtomicBool::new(false))
    }
}
