#!/usr/bin/env bash
# Runs every example as a test against a build folder (default build/release)
# and checks its output.
set -euo pipefail
build=${1:-build/release}
pass=0 fail=0

check() { # name, command, expected-substring...
  local name=$1 cmd=$2; shift 2
  local out
  if ! out=$(timeout 60 bash -c "$cmd" 2>&1); then
    echo "FAIL $name: exit status $?"; echo "$out" | sed 's/^/    /'; fail=$((fail+1)); return
  fi
  for want in "$@"; do
    if ! grep -qF -- "$want" <<<"$out"; then
      echo "FAIL $name: output lacks '$want'"; echo "$out" | sed 's/^/    /'; fail=$((fail+1)); return
    fi
  done
  echo "ok   $name"; pass=$((pass+1))
}

check hello "$build/lunet-run examples/hello.lua" \
  "main chunk finished" "fast   tick 3 (every 10 ms)" "medium done" "slow   done"

check 03_db_sqlite3 "$build/lunet-run examples/03_db_sqlite3.lua" \
  "users kept from an earlier run: 0" "inserted Miles O'Brien    id=2" "lookup by name with a quote: 1 row, email miles@example.org" \
  "3 rows updated" "deleted users without email: 1" "#2  Miles O'Brien    miles@example.org      age 42" \
  "no such table: missing_table" "escaped:	Miles O''Brien" "done"
dbfile=$(mktemp -u /tmp/lunet-example-XXXXXX.db)
# Twice on one file: the second run finds the first run's rows.
check 03_db_sqlite3_file "$build/lunet-run examples/03_db_sqlite3.lua $dbfile >/dev/null && $build/lunet-run examples/03_db_sqlite3.lua $dbfile" \
  "users kept from an earlier run: 3" "done"
rm -f "$dbfile"

# Against the PostgreSQL server of LUNET_DB_* (default: the local test server);
# the example works in a table named for its run and drops it.
check 05_db_postgres "$build/lunet-run examples/05_db_postgres.lua" \
  "inserted Miles O'Brien    id=2" "avatar stored and read back: 16 bytes, identical: true" \
  "lookup by name with a quote: 1 row, email miles@example.org, active true" \
  "3 rows updated" "after a rolled-back DELETE: 4 users" "deleted users without email: 1" \
  "#2  Miles O'Brien    miles@example.org      age 42" 'relation "missing_table" does not exist' \
  "duplicate key value violates unique constraint" "escaped:	Miles O''Brien" "dropped: true" "done"

echo "examples: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
