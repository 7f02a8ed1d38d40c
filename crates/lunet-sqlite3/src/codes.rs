//! SQLite result codes by name: the third value of a failure
//! (`nil, message, "SQLITE_CONSTRAINT_UNIQUE"`), from the extended result
//! code rusqlite reports (it turns extended codes on for every connection).

/// Primary result codes, by number.
const PRIMARY: [&str; 29] = [
    "SQLITE_OK",
    "SQLITE_ERROR",
    "SQLITE_INTERNAL",
    "SQLITE_PERM",
    "SQLITE_ABORT",
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_NOMEM",
    "SQLITE_READONLY",
    "SQLITE_INTERRUPT",
    "SQLITE_IOERR",
    "SQLITE_CORRUPT",
    "SQLITE_NOTFOUND",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
    "SQLITE_PROTOCOL",
    "SQLITE_EMPTY",
    "SQLITE_SCHEMA",
    "SQLITE_TOOBIG",
    "SQLITE_CONSTRAINT",
    "SQLITE_MISMATCH",
    "SQLITE_MISUSE",
    "SQLITE_NOLFS",
    "SQLITE_AUTH",
    "SQLITE_FORMAT",
    "SQLITE_RANGE",
    "SQLITE_NOTADB",
    "SQLITE_NOTICE",
    "SQLITE_WARNING",
];

/// Extended codes: (primary, n) for `primary | n << 8`, and the name's suffix.
const EXTENDED: &[(i32, i32, &str)] = &[
    (1, 1, "MISSING_COLLSEQ"),
    (1, 2, "RETRY"),
    (1, 3, "SNAPSHOT"),
    (4, 2, "ROLLBACK"),
    (5, 1, "RECOVERY"),
    (5, 2, "SNAPSHOT"),
    (5, 3, "TIMEOUT"),
    (6, 1, "SHAREDCACHE"),
    (6, 2, "VTAB"),
    (8, 1, "RECOVERY"),
    (8, 2, "CANTLOCK"),
    (8, 3, "ROLLBACK"),
    (8, 4, "DBMOVED"),
    (8, 5, "CANTINIT"),
    (8, 6, "DIRECTORY"),
    (10, 1, "READ"),
    (10, 2, "SHORT_READ"),
    (10, 3, "WRITE"),
    (10, 4, "FSYNC"),
    (10, 5, "DIR_FSYNC"),
    (10, 6, "TRUNCATE"),
    (10, 7, "FSTAT"),
    (10, 8, "UNLOCK"),
    (10, 9, "RDLOCK"),
    (10, 10, "DELETE"),
    (10, 11, "BLOCKED"),
    (10, 12, "NOMEM"),
    (10, 13, "ACCESS"),
    (10, 14, "CHECKRESERVEDLOCK"),
    (10, 15, "LOCK"),
    (10, 16, "CLOSE"),
    (10, 17, "DIR_CLOSE"),
    (10, 18, "SHMOPEN"),
    (10, 19, "SHMSIZE"),
    (10, 20, "SHMLOCK"),
    (10, 21, "SHMMAP"),
    (10, 22, "SEEK"),
    (10, 23, "DELETE_NOENT"),
    (10, 24, "MMAP"),
    (10, 25, "GETTEMPPATH"),
    (10, 26, "CONVPATH"),
    (10, 27, "VNODE"),
    (10, 28, "AUTH"),
    (10, 29, "BEGIN_ATOMIC"),
    (10, 30, "COMMIT_ATOMIC"),
    (10, 31, "ROLLBACK_ATOMIC"),
    (10, 32, "DATA"),
    (10, 33, "CORRUPTFS"),
    (10, 34, "IN_PAGE"),
    (11, 1, "VTAB"),
    (11, 2, "SEQUENCE"),
    (11, 3, "INDEX"),
    (14, 1, "NOTEMPDIR"),
    (14, 2, "ISDIR"),
    (14, 3, "FULLPATH"),
    (14, 4, "CONVPATH"),
    (14, 5, "DIRTYWAL"),
    (14, 6, "SYMLINK"),
    (19, 1, "CHECK"),
    (19, 2, "COMMITHOOK"),
    (19, 3, "FOREIGNKEY"),
    (19, 4, "FUNCTION"),
    (19, 5, "NOTNULL"),
    (19, 6, "PRIMARYKEY"),
    (19, 7, "TRIGGER"),
    (19, 8, "UNIQUE"),
    (19, 9, "VTAB"),
    (19, 10, "ROWID"),
    (19, 11, "PINNED"),
    (19, 12, "DATATYPE"),
    (23, 1, "USER"),
    (27, 1, "RECOVER_WAL"),
    (27, 2, "RECOVER_ROLLBACK"),
    (28, 1, "AUTOINDEX"),
];

/// The name of an (extended) result code: `"SQLITE_BUSY_SNAPSHOT"`; an
/// extended code this table does not know is named by its primary code,
/// and an unknown primary code by its number.
pub fn name(code: i32) -> String {
    let primary = code & 0xff;
    let n = code >> 8;
    let Some(base) = PRIMARY.get(primary as usize) else {
        return match code {
            100 => "SQLITE_ROW".into(),
            101 => "SQLITE_DONE".into(),
            _ => format!("SQLITE_{code}"),
        };
    };
    match EXTENDED.iter().find(|&&(p, e, _)| p == primary && e == n) {
        Some((_, _, suffix)) if n != 0 => format!("{base}_{suffix}"),
        _ => base.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::name;
    use rusqlite::ffi;

    #[test]
    fn names_match_the_library_constants() {
        assert_eq!(name(ffi::SQLITE_BUSY), "SQLITE_BUSY");
        assert_eq!(name(ffi::SQLITE_CONSTRAINT_UNIQUE), "SQLITE_CONSTRAINT_UNIQUE");
        assert_eq!(name(ffi::SQLITE_CONSTRAINT_NOTNULL), "SQLITE_CONSTRAINT_NOTNULL");
        assert_eq!(name(ffi::SQLITE_CONSTRAINT_FOREIGNKEY), "SQLITE_CONSTRAINT_FOREIGNKEY");
        assert_eq!(name(ffi::SQLITE_CONSTRAINT_PRIMARYKEY), "SQLITE_CONSTRAINT_PRIMARYKEY");
        assert_eq!(name(ffi::SQLITE_CONSTRAINT_ROWID), "SQLITE_CONSTRAINT_ROWID");
        assert_eq!(name(ffi::SQLITE_BUSY_SNAPSHOT), "SQLITE_BUSY_SNAPSHOT");
        assert_eq!(name(ffi::SQLITE_IOERR_SHMMAP), "SQLITE_IOERR_SHMMAP");
        assert_eq!(name(ffi::SQLITE_IOERR_AUTH), "SQLITE_IOERR_AUTH");
        assert_eq!(name(ffi::SQLITE_CANTOPEN_ISDIR), "SQLITE_CANTOPEN_ISDIR");
        assert_eq!(name(ffi::SQLITE_READONLY_DBMOVED), "SQLITE_READONLY_DBMOVED");
        assert_eq!(name(ffi::SQLITE_ABORT_ROLLBACK), "SQLITE_ABORT_ROLLBACK");
        assert_eq!(name(ffi::SQLITE_LOCKED_SHAREDCACHE), "SQLITE_LOCKED_SHAREDCACHE");
        assert_eq!(name(ffi::SQLITE_WARNING_AUTOINDEX), "SQLITE_WARNING_AUTOINDEX");
        assert_eq!(name(ffi::SQLITE_INTERRUPT), "SQLITE_INTERRUPT");
        assert_eq!(name(ffi::SQLITE_ERROR | (99 << 8)), "SQLITE_ERROR");
        assert_eq!(name(4242), "SQLITE_4242");
    }
}
