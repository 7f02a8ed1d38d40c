//! One libpq connection: connecting, running statements and scripts, reading
//! results, the per-connection cache of prepared statements, and the honest
//! record of a connection that broke.
//!
//! Runs only on thread-pool threads, one call at a time per connection (the
//! caller holds the connection's lock), so libpq is never used by two
//! threads at once.

use std::ffi::{c_int, c_void, CStr, CString};
use std::ptr::NonNull;
use std::sync::Arc;

use lunet_db::{count_mismatch, CacheStats, DbError, Exec, Output, Param, Rows, Statement, StatementCache, StatementKind, Value};
use pq_sys::*;

use crate::decode::{decode, kind_of, Kind};
use crate::params::{count_placeholders, declared_type, encode, MAX_PARAMS};

/// Prepared statements kept per connection (by SQL text and declared types).
const STATEMENT_CACHE: usize = 128;

/// A failed command: libpq's full message and the SQLSTATE, if the server sent one.
#[derive(Debug)]
struct Failure {
    message: String,
    sqlstate: [u8; 5],
}

impl Failure {
    fn new(message: String) -> Failure {
        Failure { message, sqlstate: [0; 5] }
    }

    /// The error scripts see: the message and the SQLSTATE, if the server sent one.
    fn into_db(self) -> DbError {
        match std::str::from_utf8(&self.sqlstate) {
            Ok(code) if self.sqlstate != [0; 5] => DbError::new(self.message, code),
            _ => DbError::from(self.message),
        }
    }
}

/// One result, cleared when dropped.
struct Res(NonNull<PGresult>);

impl Res {
    fn ptr(&self) -> *mut PGresult {
        self.0.as_ptr()
    }

    fn status(&self) -> ExecStatusType {
        unsafe { PQresultStatus(self.ptr()) }
    }

    fn failure(&self, conn: *mut PGconn) -> Failure {
        let text = unsafe { cstr_text(PQresultErrorMessage(self.ptr())) };
        let message = if text.is_empty() { unsafe { cstr_text(PQerrorMessage(conn)) } } else { text };
        let mut sqlstate = [0u8; 5];
        let code = unsafe { PQresultErrorField(self.ptr(), b'C' as c_int) };
        if !code.is_null() {
            let code = unsafe { CStr::from_ptr(code) }.to_bytes();
            if code.len() == 5 {
                sqlstate.copy_from_slice(code);
            }
        }
        Failure { message, sqlstate }
    }

    /// The count in the command tag (`INSERT 0 3` → 3), 0 if it has none.
    fn affected(&self) -> u64 {
        let p = unsafe { PQcmdTuples(self.ptr()) };
        if p.is_null() {
            return 0;
        }
        std::str::from_utf8(unsafe { CStr::from_ptr(p) }.to_bytes()).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    fn tag(&self) -> &[u8] {
        let p = unsafe { PQcmdStatus(self.ptr()) };
        if p.is_null() {
            return b"";
        }
        unsafe { CStr::from_ptr(p) }.to_bytes()
    }

    fn field(&self, row: c_int, col: c_int) -> Option<&[u8]> {
        unsafe {
            if PQgetisnull(self.ptr(), row, col) != 0 {
                return None;
            }
            let p = PQgetvalue(self.ptr(), row, col);
            let len = PQgetlength(self.ptr(), row, col).max(0) as usize;
            Some(if p.is_null() { &[] } else { std::slice::from_raw_parts(p.cast::<u8>(), len) })
        }
    }

    /// Every row, each value typed by its column.
    fn rows(&self) -> Rows {
        let (nrows, ncols) = unsafe { (PQntuples(self.ptr()), PQnfields(self.ptr())) };
        let mut columns = Vec::with_capacity(ncols.max(0) as usize);
        let mut kinds = Vec::with_capacity(ncols.max(0) as usize);
        for c in 0..ncols {
            let name = unsafe { PQfname(self.ptr(), c) };
            columns.push(if name.is_null() {
                format!("column{}", c + 1).into_bytes()
            } else {
                unsafe { CStr::from_ptr(name) }.to_bytes().to_vec()
            });
            kinds.push(kind_of(unsafe { PQftype(self.ptr(), c) }));
        }
        let mut rows = Rows::new(columns);
        for r in 0..nrows {
            for (c, kind) in kinds.iter().enumerate() {
                rows.push(match self.field(r, c as c_int) {
                    None => Value::Null,
                    Some(text) => decode(*kind, text),
                });
            }
        }
        rows
    }

    /// `INSERT ... RETURNING id`: the integer in the first column of the
    /// last row, if the result has one.
    fn returned_id(&self) -> Option<i64> {
        unsafe {
            let n = PQntuples(self.ptr());
            if n == 0 || PQnfields(self.ptr()) == 0 || kind_of(PQftype(self.ptr(), 0)) != Kind::Int {
                return None;
            }
            match decode(Kind::Int, self.field(n - 1, 0)?) {
                Value::Int(id) => Some(id),
                _ => None,
            }
        }
    }
}

impl Drop for Res {
    fn drop(&mut self) {
        unsafe { PQclear(self.ptr()) }
    }
}

/// libpq's text, without the trailing newline it ends messages with.
unsafe fn cstr_text(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    String::from_utf8_lossy(CStr::from_ptr(p).to_bytes()).trim_end().to_string()
}

/// Notices (`NOTICE: table "x" does not exist, skipping`) are dropped
/// instead of being printed on stderr by libpq.
unsafe extern "C" fn ignore_notice(_: *mut c_void, _: *const PGresult) {}

/// A statement prepared on the server under `name`.
struct Stmt {
    name: CString,
    /// The parameter types the server settled on (asked only when a string
    /// is bound, to find out whether it goes to a bytea).
    types: Option<Vec<Oid>>,
}

/// Prepared statements by SQL text and declared parameter types, in the
/// shared LRU cache, and the names given to them on the server.
struct Cache {
    lru: StatementCache<Vec<u8>, Arc<Stmt>>,
    next_name: u64,
}

impl Default for Cache {
    fn default() -> Self {
        Cache { lru: StatementCache::new(STATEMENT_CACHE), next_name: 0 }
    }
}

/// The cache key: the declared types (4 bytes each), their count, the SQL.
fn key(sql: &[u8], declared: &[Oid]) -> Vec<u8> {
    let mut k = Vec::with_capacity(declared.len() * 4 + 4 + sql.len());
    for t in declared {
        k.extend_from_slice(&t.to_le_bytes());
    }
    k.extend_from_slice(&(declared.len() as u32).to_le_bytes());
    k.extend_from_slice(sql);
    k
}

impl Cache {
    /// Looks up (counting a hit or a miss).
    fn get(&mut self, sql: &[u8], declared: &[Oid]) -> Option<Arc<Stmt>> {
        self.lru.get(&key(sql, declared)).cloned()
    }

    /// Looks up without counting (deciding what can be pipelined).
    fn peek(&self, sql: &[u8], declared: &[Oid]) -> Option<Arc<Stmt>> {
        self.lru.peek(&key(sql, declared)).cloned()
    }

    /// Caches `stmt`; returns a statement that had to go to make room (to
    /// deallocate), never the one `stmt` replaced under the same name.
    fn put(&mut self, sql: &[u8], declared: &[Oid], stmt: Arc<Stmt>) -> Option<Arc<Stmt>> {
        let name = stmt.name.clone();
        match self.lru.insert(key(sql, declared), stmt) {
            Some((_, old)) if old.name != name => Some(old),
            _ => None,
        }
    }

    fn remove(&mut self, sql: &[u8], declared: &[Oid]) -> Option<Arc<Stmt>> {
        self.lru.remove(&key(sql, declared))
    }

    /// Removes the least recently used statement.
    fn evict(&mut self) -> Option<Arc<Stmt>> {
        self.lru.evict().map(|(_, s)| s)
    }

    /// Forgets every statement (the server already dropped them).
    fn clear(&mut self) {
        drop(self.lru.drain());
    }

    fn new_name(&mut self) -> CString {
        self.next_name += 1;
        CString::new(format!("lunet_stmt_{}", self.next_name)).expect("no NUL in a generated name")
    }
}

/// Most statements in one pipeline.
const PIPELINE_MAX: usize = 64;

/// Most parameter bytes sent in one pipeline before its results are read.
/// libpq runs in blocking mode here, and a pipeline that filled both socket
/// buffers while the server blocked on sending results would deadlock.
const PIPELINE_BYTES: usize = 64 * 1024;

/// A statement of a batch that can be pipelined.
struct Ready {
    index: usize,
    stmt: Arc<Stmt>,
    declared: Vec<Oid>,
    bytes: usize,
}

/// Gathers what a statement's results mean for `query` or `exec`.
#[derive(Default)]
struct Acc {
    rows: Option<Rows>,
    exec: Exec,
}

impl Acc {
    fn absorb(&mut self, kind: StatementKind, res: &Res) {
        match kind {
            StatementKind::Query => {
                if res.status() == ExecStatusType::PGRES_TUPLES_OK {
                    self.rows = Some(res.rows());
                }
            }
            StatementKind::Exec => {
                self.exec.affected_rows += res.affected();
                if let Some(id) = res.returned_id() {
                    self.exec.last_insert_id = id;
                }
            }
        }
    }

    fn output(self, kind: StatementKind) -> Output {
        match kind {
            StatementKind::Query => Output::Rows(self.rows.unwrap_or_default()),
            StatementKind::Exec => Output::Exec(self.exec),
        }
    }
}

/// Why a cached prepared statement failed without running.
#[derive(Clone, Copy, Debug)]
enum Stale {
    /// It no longer exists on the server (the user ran DEALLOCATE ALL or
    /// DISCARD ALL in a way we did not see).
    Gone,
    /// DDL changed the columns it returns.
    Replanned,
}

fn staleness(f: &Failure) -> Option<Stale> {
    if &f.sqlstate == b"26000" {
        Some(Stale::Gone)
    } else if &f.sqlstate == b"0A000" && f.message.contains("cached plan must not change result type") {
        Some(Stale::Replanned)
    } else {
        None
    }
}

/// A connection to a PostgreSQL server.
pub struct Pg {
    raw: NonNull<PGconn>,
    /// Set when the connection to the server was lost: the first error.
    /// Later calls fail at once with it; the connection is not reset behind
    /// the caller's back (that would silently lose its session state).
    broken: Option<String>,
    cache: Cache,
}

// SAFETY: a libpq connection may move between threads as long as only one
// uses it at a time, which the per-connection lock of lunet-db guarantees.
unsafe impl Send for Pg {}

impl Drop for Pg {
    fn drop(&mut self) {
        unsafe { PQfinish(self.raw.as_ptr()) }
    }
}

/// What is needed to cancel a connection's running statement from another
/// thread, without the connection (libpq's `PGcancel`: read-only, and
/// `PQcancel` may be called from any thread).
pub struct Canceller(Option<NonNull<PGcancel>>);

// SAFETY: libpq documents PQcancel as safe to call from any thread (even a
// signal handler) with a PGcancel object, which it never modifies.
unsafe impl Send for Canceller {}
unsafe impl Sync for Canceller {}

impl Canceller {
    /// Sends a cancel request for whatever the connection is running (a new
    /// short connection to the server). Failures are ignored: the statement
    /// then simply runs to its end.
    pub fn cancel(&self) {
        if let Some(c) = self.0 {
            let mut errbuf = [0 as std::ffi::c_char; 256];
            unsafe { PQcancel(c.as_ptr(), errbuf.as_mut_ptr(), errbuf.len() as c_int) };
        }
    }
}

impl Drop for Canceller {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            unsafe { PQfreeCancel(c.as_ptr()) }
        }
    }
}

/// A connection parameter: the name the Lua table used, libpq's keyword, the value.
pub type Setting = (&'static str, &'static CStr, Vec<u8>);

impl Pg {
    /// Connects with `settings` passed as keyword/value arrays (never
    /// through a connection string, so no character in a value can change
    /// the meaning of another).
    pub fn connect(settings: &[Setting]) -> Result<Pg, DbError> {
        let mut values = Vec::with_capacity(settings.len());
        for (field, _, v) in settings {
            values.push(
                CString::new(v.clone())
                    .map_err(|_| format!("postgres.open: field '{field}' contains a NUL byte"))?,
            );
        }
        let mut kp: Vec<*const std::ffi::c_char> = settings.iter().map(|(_, k, _)| k.as_ptr()).collect();
        let mut vp: Vec<*const std::ffi::c_char> = values.iter().map(|v| v.as_ptr()).collect();
        kp.push(std::ptr::null());
        vp.push(std::ptr::null());
        // expand_dbname = 0: the database name is only ever a name.
        let raw = unsafe { PQconnectdbParams(kp.as_ptr(), vp.as_ptr(), 0) };
        let raw = NonNull::new(raw).ok_or("postgres.open: out of memory")?;
        let mut pg = Pg { raw, broken: None, cache: Cache::default() };
        if unsafe { PQstatus(raw.as_ptr()) } != ConnStatusType::CONNECTION_OK {
            return Err(pg.conn_error().into()); // `pg` drops: PQfinish
        }
        unsafe { PQsetNoticeReceiver(raw.as_ptr(), Some(ignore_notice), std::ptr::null_mut()) };
        // Floats in results are read from their text form: make sure the
        // server prints every digit needed to read them back exactly, even
        // if its configuration lowered extra_float_digits.
        pg.internal(c"SET extra_float_digits = 3").map_err(Failure::into_db)?;
        Ok(pg)
    }

    fn conn(&self) -> *mut PGconn {
        self.raw.as_ptr()
    }

    /// The cancel handle of this connection.
    pub fn canceller(&self) -> Canceller {
        Canceller(NonNull::new(unsafe { PQgetCancel(self.conn()) }))
    }

    fn conn_error(&self) -> String {
        let msg = unsafe { cstr_text(PQerrorMessage(self.conn())) };
        if msg.is_empty() {
            "postgres: unknown libpq error".into()
        } else {
            msg
        }
    }

    fn idle(&self) -> bool {
        unsafe { PQtransactionStatus(self.conn()) == PGTransactionStatusType::PQTRANS_IDLE }
    }

    /// The statement cache's counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.lru.stats()
    }

    /// Whether a transaction is open (or failed and not yet rolled back).
    pub fn in_transaction(&self) -> bool {
        let s = unsafe { PQtransactionStatus(self.conn()) };
        self.broken.is_none()
            && (s == PGTransactionStatusType::PQTRANS_INTRANS || s == PGTransactionStatusType::PQTRANS_INERROR)
    }

    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    fn usable(&self) -> Result<(), DbError> {
        match &self.broken {
            Some(why) => Err(format!("connection is broken: {why}").into()),
            None => Ok(()),
        }
    }

    /// Reads every result of the command just sent (`sent`: what the
    /// `PQsend*` call returned), until libpq has none left, so the
    /// connection is ready for the next command whatever happened. `each`
    /// sees the successful results up to the first error, which is returned.
    /// With `watch`, a user's `DEALLOCATE` or `DISCARD ALL` drops the cache.
    fn collect(&mut self, sent: c_int, watch: bool, mut each: impl FnMut(&Res)) -> Result<(), Failure> {
        let conn = self.conn();
        let mut failure = if sent == 0 { Some(Failure::new(self.conn_error())) } else { None };
        let mut stale = false;
        if sent != 0 {
            loop {
                let Some(res) = NonNull::new(unsafe { PQgetResult(conn) }).map(Res) else { break };
                use ExecStatusType::*;
                match res.status() {
                    PGRES_COMMAND_OK | PGRES_TUPLES_OK | PGRES_EMPTY_QUERY | PGRES_SINGLE_TUPLE => {
                        if watch && (res.tag().starts_with(b"DEALLOCATE") || res.tag() == b"DISCARD ALL") {
                            stale = true;
                        }
                        if failure.is_none() {
                            each(&res);
                        }
                    }
                    PGRES_COPY_IN => {
                        // Ends the copy; the server then reports the COPY as failed.
                        unsafe { PQputCopyEnd(conn, c"lunet.postgres does not support COPY FROM STDIN".as_ptr()) };
                    }
                    PGRES_COPY_OUT => {
                        drain_copy_out(conn);
                        failure.get_or_insert_with(|| {
                            Failure::new("lunet.postgres does not support COPY TO STDOUT".into())
                        });
                    }
                    PGRES_COPY_BOTH => {
                        // Only replication connections get here, and we never ask for one.
                        failure.get_or_insert_with(|| Failure::new("lunet.postgres does not support COPY BOTH".into()));
                        self.broken.get_or_insert_with(|| "the server started a replication stream".into());
                        break;
                    }
                    PGRES_NONFATAL_ERROR | PGRES_PIPELINE_SYNC => {}
                    _ => {
                        let f = res.failure(conn);
                        failure.get_or_insert(f);
                    }
                }
                if unsafe { PQstatus(conn) } == ConnStatusType::CONNECTION_BAD {
                    // No more results can come; libpq may still hand out the error once.
                    while let Some(r) = NonNull::new(unsafe { PQgetResult(conn) }).map(Res) {
                        if failure.is_none() && r.status() == PGRES_FATAL_ERROR {
                            failure = Some(r.failure(conn));
                        }
                    }
                    break;
                }
            }
        }
        if stale {
            self.cache.clear();
        }
        if unsafe { PQstatus(conn) } == ConnStatusType::CONNECTION_BAD {
            let f = failure.get_or_insert_with(|| Failure::new(self.conn_error()));
            self.broken.get_or_insert_with(|| f.message.clone());
        }
        match failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Runs a statement of our own (no parameters, results ignored).
    fn internal(&mut self, sql: &CStr) -> Result<(), Failure> {
        let sent = unsafe { PQsendQuery(self.conn(), sql.as_ptr()) };
        self.collect(sent, false, |_| {})
    }

    /// The parameter types of a prepared statement, as the server settled them.
    fn describe(&mut self, name: &CStr) -> Result<Vec<Oid>, Failure> {
        let sent = unsafe { PQsendDescribePrepared(self.conn(), name.as_ptr()) };
        let mut types = Vec::new();
        self.collect(sent, false, |res| unsafe {
            let n = PQnparams(res.ptr());
            types = (0..n).map(|i| PQparamtype(res.ptr(), i)).collect();
        })?;
        Ok(types)
    }

    /// Frees a statement on the server. In a failed transaction the server
    /// would refuse, so the statement is left there (it goes with the session).
    fn deallocate(&mut self, stmt: &Stmt) {
        if unsafe { PQtransactionStatus(self.conn()) } == PGTransactionStatusType::PQTRANS_INERROR {
            return;
        }
        let sql = format!("DEALLOCATE \"{}\"", stmt.name.to_string_lossy());
        if let Ok(sql) = CString::new(sql) {
            let _ = self.internal(&sql);
        }
    }

    /// The prepared statement for `sql` with these declared types, preparing
    /// (and describing, with `want_types`) it on a cache miss.
    fn prepared(&mut self, csql: &CStr, sql: &[u8], declared: &[Oid], want_types: bool) -> Result<Arc<Stmt>, Failure> {
        if let Some(stmt) = self.cache.get(sql, declared) {
            if !want_types || stmt.types.is_some() {
                return Ok(stmt);
            }
            let types = self.describe(&stmt.name)?;
            let stmt = Arc::new(Stmt { name: stmt.name.clone(), types: Some(types) });
            if let Some(old) = self.cache.put(sql, declared, stmt.clone()) {
                self.deallocate(&old);
            }
            return Ok(stmt);
        }
        if self.cache.lru.is_full() {
            if let Some(old) = self.cache.evict() {
                self.deallocate(&old);
            }
        }
        let name = self.cache.new_name();
        let sent = unsafe {
            PQsendPrepare(self.conn(), name.as_ptr(), csql.as_ptr(), declared.len() as c_int, declared.as_ptr())
        };
        self.collect(sent, false, |_| {})?;
        let types = if want_types {
            match self.describe(&name) {
                Ok(t) => Some(t),
                Err(f) => {
                    self.deallocate(&Stmt { name, types: None });
                    return Err(f);
                }
            }
        } else {
            None
        };
        let stmt = Arc::new(Stmt { name, types });
        if let Some(old) = self.cache.put(sql, declared, stmt.clone()) {
            self.deallocate(&old);
        }
        Ok(stmt)
    }

    /// Runs one statement through the extended protocol: parameters bound
    /// natively, at most one statement. `each` sees its result.
    fn statement(&mut self, sql: &[u8], params: &[Param], mut each: impl FnMut(&Res)) -> Result<(), DbError> {
        self.usable()?;
        let csql = sql_text(sql)?;
        if params.is_empty() {
            let sent = unsafe {
                PQsendQueryParams(
                    self.conn(),
                    csql.as_ptr(),
                    0,
                    std::ptr::null(),
                    std::ptr::null(),
                    std::ptr::null(),
                    std::ptr::null(),
                    0,
                )
            };
            return self.collect(sent, true, each).map_err(|f| explain(f, sql, 0));
        }
        let expected = count_placeholders(sql);
        if expected != params.len() {
            return Err(count_mismatch(expected, params.len()).into());
        }
        if params.len() > MAX_PARAMS {
            return Err(format!("too many parameters: PostgreSQL takes at most {MAX_PARAMS}").into());
        }
        let declared: Vec<Oid> = params.iter().map(declared_type).collect();
        let want_types = params.iter().any(|p| matches!(p, Param::Bytes(_)));
        let mut retried = false;
        loop {
            let stmt = self.prepared(&csql, sql, &declared, want_types).map_err(|f| explain(f, sql, params.len()))?;
            if let Some(types) = &stmt.types {
                if types.len() != params.len() {
                    return Err(count_mismatch(types.len(), params.len()).into());
                }
            }
            let enc = encode(params, stmt.types.as_deref())?;
            let sent = unsafe {
                PQsendQueryPrepared(
                    self.conn(),
                    stmt.name.as_ptr(),
                    params.len() as c_int,
                    enc.values.as_ptr(),
                    enc.lengths.as_ptr(),
                    enc.formats.as_ptr(),
                    0,
                )
            };
            let f = match self.collect(sent, true, &mut each) {
                Ok(()) => return Ok(()),
                Err(f) => f,
            };
            let stale = staleness(&f);
            if let Some(stale) = stale {
                self.invalidate(stale, sql, &declared);
            }
            if stale.is_some() && !retried && self.broken.is_none() && self.idle() {
                retried = true;
                continue;
            }
            return Err(explain(f, sql, params.len()));
        }
    }

    /// Forgets a cached statement that went stale (see [`staleness`]).
    fn invalidate(&mut self, stale: Stale, sql: &[u8], declared: &[Oid]) {
        match stale {
            Stale::Gone => self.cache.clear(),
            Stale::Replanned => {
                if let Some(old) = self.cache.remove(sql, declared) {
                    self.deallocate(&old);
                }
            }
        }
    }

    /// `query`: the rows of one statement.
    pub fn query(&mut self, sql: &[u8], params: &[Param]) -> Result<Rows, DbError> {
        let mut acc = Acc::default();
        self.statement(sql, params, |res| acc.absorb(StatementKind::Query, res))?;
        Ok(acc.rows.unwrap_or_default())
    }

    /// `exec`: one statement with parameters, or a script without.
    pub fn exec(&mut self, sql: &[u8], params: &[Param]) -> Result<Exec, DbError> {
        let mut acc = Acc::default();
        let each = |res: &Res| acc.absorb(StatementKind::Exec, res);
        if params.is_empty() {
            self.script(sql, each)?;
        } else {
            self.statement(sql, params, each)?;
        }
        Ok(acc.exec)
    }

    fn run_one(&mut self, st: &Statement<'_>) -> Result<Output, DbError> {
        match st.kind {
            StatementKind::Query => self.query(st.sql, st.params).map(Output::Rows),
            StatementKind::Exec => self.exec(st.sql, st.params).map(Output::Exec),
        }
    }

    /// Statements queued on this connection by several coroutines. Runs of
    /// statements whose prepared statement is already cached are pipelined:
    /// all are sent, each followed by its own sync point (so each is its own
    /// implicit transaction and fails alone, exactly as when run one by
    /// one), then all results are read: one round trip for the lot. The
    /// others (first use of a statement, scripts, statements without
    /// parameters, large parameters) run one by one, in order.
    ///
    /// Statements whose caller stopped waiting are never sent. One abandoned
    /// after it was sent in a pipeline is cancelled when its results are
    /// next to be read (the server is then running it); with its own sync
    /// point it fails alone and the rest of the pipeline goes on. A cancel
    /// that reaches the server just as that statement ends hits the next
    /// statement of the pipeline instead, which then fails with "canceling
    /// statement due to user request".
    pub fn batch(&mut self, batch: &mut [Statement<'_>]) {
        let mut group: Vec<Ready> = Vec::new();
        let mut bytes = 0usize;
        for i in 0..batch.len() {
            if batch[i].closing() {
                // Closed by the script: what has not been sent is not started
                // (left without an outcome, it reports the closed connection).
                return;
            }
            if batch[i].abandoned() {
                continue; // its caller stopped waiting: never started
            }
            let mut ready = self.ready(i, &batch[i]);
            if let Some(r) = &ready {
                if !group.is_empty() && (group.len() >= PIPELINE_MAX || bytes + r.bytes > PIPELINE_BYTES) {
                    self.flush(batch, &mut group);
                    bytes = 0;
                    ready = self.ready(i, &batch[i]); // the flush may have changed the cache
                }
            }
            match ready {
                Some(r) => {
                    bytes += r.bytes;
                    group.push(r);
                }
                None => {
                    self.flush(batch, &mut group);
                    bytes = 0;
                    if batch[i].closing() {
                        return;
                    }
                    if batch[i].begin() {
                        batch[i].outcome = Some(self.run_one(&batch[i]));
                    }
                }
            }
        }
        self.flush(batch, &mut group);
    }

    /// Whether statement `i` can go in a pipeline: its prepared statement is
    /// cached (described, if it binds strings) and its parameters are small.
    fn ready(&mut self, i: usize, st: &Statement<'_>) -> Option<Ready> {
        if self.broken.is_some() || st.params.is_empty() || st.params.len() > MAX_PARAMS || st.sql.contains(&0) {
            return None;
        }
        if count_placeholders(st.sql) != st.params.len() {
            return None;
        }
        let declared: Vec<Oid> = st.params.iter().map(declared_type).collect();
        let stmt = self.cache.peek(st.sql, &declared)?;
        let want_types = st.params.iter().any(|p| matches!(p, Param::Bytes(_)));
        if want_types && !matches!(&stmt.types, Some(t) if t.len() == st.params.len()) {
            return None;
        }
        let bytes = 64 + st.params.iter().map(|p| if let Param::Bytes(b) = p { b.len() + 8 } else { 12 }).sum::<usize>();
        if bytes > PIPELINE_BYTES {
            return None;
        }
        Some(Ready { index: i, stmt, declared, bytes })
    }

    /// Runs the statements gathered in `group` (pipelined if more than one).
    fn flush(&mut self, batch: &mut [Statement<'_>], group: &mut Vec<Ready>) {
        match group.len() {
            0 => {}
            1 => {
                let i = group[0].index;
                if batch[i].begin() {
                    batch[i].outcome = Some(self.run_one(&batch[i]));
                }
            }
            _ => self.pipeline(batch, group),
        }
        group.clear();
    }

    fn pipeline(&mut self, batch: &mut [Statement<'_>], group: &[Ready]) {
        let conn = self.conn();
        if unsafe { PQenterPipelineMode(conn) } != 1 {
            for r in group {
                if batch[r.index].begin() {
                    batch[r.index].outcome = Some(self.run_one(&batch[r.index]));
                }
            }
            return;
        }
        // Send everything, held back by the kernel until the last sync point
        // so that the server gets the lot at once (one wake-up, one read).
        let cork = Cork::new(unsafe { PQsocket(conn) });
        let mut sent = Vec::with_capacity(group.len());
        for r in group {
            let st = &batch[r.index];
            if st.abandoned() {
                continue; // not sent: never started
            }
            let enc = match encode(st.params, r.stmt.types.as_deref()) {
                Ok(enc) => enc,
                Err(e) => {
                    batch[r.index].outcome = Some(Err(e.into()));
                    continue;
                }
            };
            let queued = unsafe {
                PQsendQueryPrepared(
                    conn,
                    r.stmt.name.as_ptr(),
                    st.params.len() as c_int,
                    enc.values.as_ptr(),
                    enc.lengths.as_ptr(),
                    enc.formats.as_ptr(),
                    0,
                )
            } == 1;
            if !queued {
                batch[r.index].outcome = Some(Err(self.conn_error().into()));
                break;
            }
            self.cache.get(st.sql, &r.declared); // counted as used (a hit)
            sent.push(r);
            if unsafe { PQpipelineSync(conn) } != 1 {
                break;
            }
        }
        drop(cork);
        // Read every result, in order: the statement's results, then its sync point.
        let mut retry = Vec::new();
        for r in sent {
            let st = &batch[r.index];
            if let Some(why) = &self.broken {
                batch[r.index].outcome = Some(Err(format!("connection is broken: {why}").into()));
                continue;
            }
            // From here on an interrupt for this statement may be sent (the
            // server runs the pipeline's statements in order, and the ones
            // before it have answered). Abandoned after it was sent: nobody
            // else will cancel it. A cancel fails only this statement (each
            // has its own sync point); one that arrives as it ends can hit
            // the next statement of the pipeline, as it could hit the next
            // statement on the connection when run alone.
            if !st.begin() {
                self.canceller().cancel();
            }
            let mut acc = Acc::default();
            let kind = st.kind;
            let mut got = self.collect(1, true, |res| acc.absorb(kind, res));
            if self.broken.is_none() {
                // The commit at the sync point can fail too (deferred constraints).
                if let (Err(f), Ok(())) = (self.end_of_sync(), &got) {
                    got = Err(f);
                }
            }
            batch[r.index].outcome = Some(match got {
                Ok(()) => Ok(acc.output(kind)),
                Err(f) => match staleness(&f) {
                    Some(stale) => {
                        retry.push((r, stale, f));
                        continue;
                    }
                    None => Err(explain(f, st.sql, st.params.len())),
                },
            });
        }
        if self.broken.is_none() && unsafe { PQexitPipelineMode(conn) } != 1 {
            self.broken = Some(format!("could not leave pipeline mode: {}", self.conn_error()));
        }
        // Stale cached statements: as when run alone, retried once outside a
        // transaction block (after the rest of the pipeline; they came from
        // other coroutines, so their relative order was not fixed anyway).
        for (r, stale, f) in retry {
            self.invalidate(stale, batch[r.index].sql, &r.declared);
            let out = if self.broken.is_none() && self.idle() {
                if !batch[r.index].begin() {
                    continue; // abandoned: not run again
                }
                self.run_one(&batch[r.index])
            } else {
                Err(explain(f, batch[r.index].sql, batch[r.index].params.len()))
            };
            batch[r.index].outcome = Some(out);
        }
        for r in group {
            if batch[r.index].outcome.is_none() && !batch[r.index].abandoned() {
                let why = self.broken.clone().unwrap_or_else(|| self.conn_error());
                batch[r.index].outcome = Some(Err(why.into()));
            }
        }
    }

    /// Reads up to the result that marks a sync point in pipeline mode, and
    /// returns the error the server reported on the way, if any: ending the
    /// implicit transaction there commits it, and the commit can fail
    /// (a deferred constraint) after the statement itself succeeded.
    fn end_of_sync(&mut self) -> Result<(), Failure> {
        let conn = self.conn();
        let mut failure = None;
        let mut nulls = 0;
        loop {
            let Some(res) = NonNull::new(unsafe { PQgetResult(conn) }).map(Res) else {
                // A null only separates an error's results from the sync; never two in a row.
                nulls += 1;
                if nulls > 1 || unsafe { PQstatus(conn) } == ConnStatusType::CONNECTION_BAD {
                    break;
                }
                continue;
            };
            nulls = 0;
            match res.status() {
                ExecStatusType::PGRES_PIPELINE_SYNC => break,
                ExecStatusType::PGRES_FATAL_ERROR | ExecStatusType::PGRES_BAD_RESPONSE => {
                    failure.get_or_insert_with(|| res.failure(conn));
                }
                _ => {}
            }
        }
        if unsafe { PQstatus(conn) } == ConnStatusType::CONNECTION_BAD {
            let f = failure.get_or_insert_with(|| Failure::new(self.conn_error()));
            self.broken.get_or_insert_with(|| f.message.clone());
        }
        failure.map_or(Ok(()), Err)
    }

    /// Runs every statement of `sql` (the simple query protocol).
    fn script(&mut self, sql: &[u8], each: impl FnMut(&Res)) -> Result<(), DbError> {
        self.usable()?;
        let csql = sql_text(sql)?;
        let sent = unsafe { PQsendQuery(self.conn(), csql.as_ptr()) };
        self.collect(sent, true, each).map_err(|f| explain(f, sql, 0))
    }
}

/// Holds a TCP socket's output back (Linux `TCP_CORK`) while it lives;
/// dropping it sends what was held. Does nothing where the option does not
/// apply (Unix-domain sockets, other systems).
struct Cork(c_int);

#[cfg(target_os = "linux")]
mod sockopt {
    use std::ffi::{c_int, c_void};
    pub const IPPROTO_TCP: c_int = 6;
    pub const TCP_CORK: c_int = 3;
    extern "C" {
        pub fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: u32) -> c_int;
    }
}

impl Cork {
    fn set(fd: c_int, on: bool) -> bool {
        #[cfg(target_os = "linux")]
        {
            let v: c_int = on as c_int;
            let len = std::mem::size_of::<c_int>() as u32;
            unsafe { sockopt::setsockopt(fd, sockopt::IPPROTO_TCP, sockopt::TCP_CORK, (&v as *const c_int).cast(), len) == 0 }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (fd, on);
            false
        }
    }

    fn new(fd: c_int) -> Cork {
        if fd >= 0 && Cork::set(fd, true) {
            Cork(fd)
        } else {
            Cork(-1)
        }
    }
}

impl Drop for Cork {
    fn drop(&mut self) {
        if self.0 >= 0 {
            Cork::set(self.0, false);
        }
    }
}

/// Reads and drops the data of a `COPY ... TO STDOUT`.
fn drain_copy_out(conn: *mut PGconn) {
    loop {
        let mut buf = std::ptr::null_mut();
        let n = unsafe { PQgetCopyData(conn, &mut buf, 0) };
        if !buf.is_null() {
            unsafe { PQfreemem(buf.cast()) };
        }
        if n < 0 {
            return;
        }
    }
}

/// The message for a failure; a statement that uses `$n` without being
/// given parameters is reported as the count mismatch it is (the server
/// says "there is no parameter $1" in a script, and "bind message supplies
/// 0 parameters" for a single statement).
fn explain(f: Failure, sql: &[u8], given: usize) -> DbError {
    let undefined = &f.sqlstate == b"42P02" && f.message.contains("there is no parameter $");
    let unbound = &f.sqlstate == b"08P01" && f.message.contains("bind message supplies 0 parameters");
    if given == 0 && (undefined || unbound) {
        return count_mismatch(count_placeholders(sql).max(1), 0).into();
    }
    f.into_db()
}

/// The SQL as a C string. libpq would stop at a NUL byte and run only the
/// part before it, so one is refused.
fn sql_text(sql: &[u8]) -> Result<CString, String> {
    CString::new(sql).map_err(|_| "SQL text contains a NUL byte (pass binary data as a parameter)".to_string())
}
