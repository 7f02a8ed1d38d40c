-- Example 03: create, read, update and delete rows in SQLite with bound
-- parameters. Every statement runs on libuv's thread pool while this
-- coroutine waits; the program itself reads top to bottom.
--
--   build/release/lunet-run examples/03_db_sqlite3.lua [database-file]
--
-- Without an argument the database lives in memory.
local lunet = require("lunet")
local sqlite3 = require("lunet.sqlite3")

local path = arg and arg[1] or ":memory:"

-- Stops the program with a message when a call returned nil, err.
local function check(result, err)
  if result == nil then error(err, 2) end
  return result
end

local function show(title, rows)
  print(title)
  for _, u in ipairs(rows) do
    print(("  #%d  %-16s %-22s age %s"):format(u.id, u.name, u.email or "(no email)", u.age or "?"))
  end
end

lunet.spawn(function()
  local db = check(sqlite3.open({ path = path }))

  -- Create the table (a script of several statements would run in one exec too).
  check(db:exec([[
    CREATE TABLE IF NOT EXISTS users (
      id    INTEGER PRIMARY KEY,
      name  TEXT NOT NULL,
      email TEXT UNIQUE,
      age   INTEGER
    )
  ]]))
  -- With a database file, the rows of the previous run are still there.
  local before = check(db:query("SELECT count(*) AS n FROM users"))[1].n
  print(("users kept from an earlier run: %d"):format(before))
  check(db:exec("DELETE FROM users"))

  local people = {
    { "Ada Lovelace", "ada@example.org", 36 },
    { "Miles O'Brien", "miles@example.org", 41 }, -- a quote, bound safely
    { "Grace Hopper", "grace@example.org", 85 },
    { "Nobody Known", nil, nil },                  -- nil binds as NULL
  }
  for _, p in ipairs(people) do
    local r = check(db:exec("INSERT INTO users (name, email, age) VALUES (?, ?, ?)", p[1], p[2], p[3]))
    print(("inserted %-16s id=%d"):format(p[1], r.last_insert_id))
  end

  -- Read.
  show("all users:", check(db:query("SELECT id, name, email, age FROM users ORDER BY id")))
  local found = check(db:query("SELECT id, name, email, age FROM users WHERE name = ?", "Miles O'Brien"))
  print(("lookup by name with a quote: %d row, email %s"):format(#found, found[1].email))

  -- Update.
  local r = check(db:exec("UPDATE users SET age = age + ? WHERE age IS NOT NULL", 1))
  print(("birthday for everyone with an age: %d rows updated"):format(r.affected_rows))

  -- Delete.
  r = check(db:exec("DELETE FROM users WHERE email IS NULL"))
  print(("deleted users without email: %d"):format(r.affected_rows))

  show("after update and delete:", check(db:query("SELECT id, name, email, age FROM users ORDER BY id")))

  -- Errors are returned, not raised.
  local rows, err = db:query("SELECT * FROM missing_table")
  print("querying a missing table:", rows, err)

  -- escape() is there for building literals by hand; prefer parameters.
  print("escaped:", sqlite3.escape("Miles O'Brien"))

  db:close()
  print("done")
end)

lunet.run()
