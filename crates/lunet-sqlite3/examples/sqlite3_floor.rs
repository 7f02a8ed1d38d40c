//! The synchronous floor for `bench/sqlite3.lua`: the benchmark's statements
//! run straight through rusqlite on one thread, no event loop, no thread pool.
//!
//!   sqlite3_floor <database-file> <preloaded-rows> <statements>
//!
//! Prints `select_per_s <n>` and `insert_per_s <n>`. Uses the same schema,
//! pragmas and statements as the Lua benchmark.

use std::time::Instant;

use rusqlite::Connection;

fn main() -> rusqlite::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: {} <database-file> <preloaded-rows> <statements>", args[0]);
        std::process::exit(2);
    }
    let path = &args[1];
    let rows: i64 = args[2].parse().expect("preloaded-rows must be a number");
    let n: i64 = args[3].parse().expect("statements must be a number");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }

    let conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER NOT NULL);",
    )?;
    {
        let tx = conn.unchecked_transaction()?;
        let mut ins = tx.prepare("INSERT INTO items(name, score) VALUES (?, ?)")?;
        for i in 1..=rows {
            ins.execute((format!("item {i}"), i * 3))?;
        }
        drop(ins);
        tx.commit()?;
    }

    // Point SELECT by primary key, reading every column of the row.
    let mut checksum = 0i64;
    let t = Instant::now();
    for i in 0..n {
        let id = (i * 7919) % rows + 1;
        let mut stmt = conn.prepare_cached("SELECT id, name, score FROM items WHERE id = ?")?;
        let (got, name, score): (i64, String, i64) = stmt.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        checksum += got + score + name.len() as i64;
    }
    let select_s = t.elapsed().as_secs_f64();

    // Single-row INSERT, each its own (autocommit) transaction.
    let t = Instant::now();
    for i in 0..n {
        let mut stmt = conn.prepare_cached("INSERT INTO items(name, score) VALUES (?, ?)")?;
        stmt.execute(("new item", i))?;
    }
    let insert_s = t.elapsed().as_secs_f64();

    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    println!("select_per_s {:.0}", n as f64 / select_s);
    println!("insert_per_s {:.0}", n as f64 / insert_s);
    println!("checksum {checksum}");
    Ok(())
}
