-- Example 05: create, read, update and delete rows in PostgreSQL with `$n`
-- parameters. Every statement runs on libuv's thread pool while this
-- coroutine waits; the program itself reads top to bottom.
--
--   build/release/lunet-run examples/05_db_postgres.lua
--
-- The server comes from the environment, defaulting to the local test server:
--   LUNET_DB_HOST (127.0.0.1)  LUNET_DB_PORT (5432)  LUNET_DB_USER (postgres)
--   LUNET_DB_PASS (none)       LUNET_DB_NAME (test)
-- The example works in a table of its own, named for this run, and drops it
-- at the end.
local lunet = require("lunet")
local postgres = require("lunet.postgres")

local server = {
  host = os.getenv("LUNET_DB_HOST") or "127.0.0.1",
  port = tonumber(os.getenv("LUNET_DB_PORT") or "") or 5432,
  user = os.getenv("LUNET_DB_USER") or "postgres",
  password = os.getenv("LUNET_DB_PASS"),
  database = os.getenv("LUNET_DB_NAME") or "test",
}
-- Unique per run, so two runs (or a run and a test suite) never collide.
local function process_id()
  local f = io.open("/proc/self/stat")
  if not f then return "0" end
  local id = f:read("*l"):match("^%d+")
  f:close()
  return id or "0"
end
local pid = process_id()
local users = ("lunet_example_users_%s_%d"):format(pid, os.time())

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

local function crud(db)
  check(db:exec(([[
    CREATE TABLE %s (
      id     serial PRIMARY KEY,
      name   text NOT NULL,
      email  text UNIQUE,
      age    int,
      active boolean NOT NULL DEFAULT true,
      avatar bytea
    )
  ]]):format(users)))

  -- Create. RETURNING hands back the new id (also as last_insert_id).
  local people = {
    { "Ada Lovelace", "ada@example.org", 36 },
    { "Miles O'Brien", "miles@example.org", 41 }, -- a quote, bound safely
    { "Grace Hopper", "grace@example.org", 85 },
    { "Nobody Known", nil, nil },                  -- nil binds as NULL
  }
  for _, p in ipairs(people) do
    local r = check(db:exec(("INSERT INTO %s (name, email, age) VALUES ($1, $2, $3) RETURNING id"):format(users),
      p[1], p[2], p[3]))
    print(("inserted %-16s id=%d"):format(p[1], r.last_insert_id))
  end

  -- Binary data goes to a bytea column byte for byte, NULs included.
  local png_header = "\137PNG\r\n\26\n\0\0\0\rIHDR"
  check(db:exec(("UPDATE %s SET avatar = $1 WHERE name = $2"):format(users), png_header, "Ada Lovelace"))
  local ada = check(db:query(("SELECT avatar FROM %s WHERE name = $1"):format(users), "Ada Lovelace"))[1]
  print(("avatar stored and read back: %d bytes, identical: %s"):format(#ada.avatar, tostring(ada.avatar == png_header)))

  -- Read.
  show("all users:", check(db:query(("SELECT id, name, email, age FROM %s ORDER BY id"):format(users))))
  local found = check(db:query(("SELECT id, name, email, age, active FROM %s WHERE name = $1"):format(users), "Miles O'Brien"))
  print(("lookup by name with a quote: %d row, email %s, active %s"):format(#found, found[1].email, tostring(found[1].active)))

  -- Update.
  local r = check(db:exec(("UPDATE %s SET age = age + $1 WHERE age IS NOT NULL"):format(users), 1))
  print(("birthday for everyone with an age: %d rows updated"):format(r.affected_rows))

  -- A transaction that is rolled back leaves nothing behind.
  check(db:exec("BEGIN"))
  check(db:exec(("DELETE FROM %s"):format(users)))
  check(db:exec("ROLLBACK"))
  local n = check(db:query(("SELECT count(*) AS n FROM %s"):format(users)))[1].n
  print(("after a rolled-back DELETE: %d users"):format(n))

  -- Delete.
  r = check(db:exec(("DELETE FROM %s WHERE email IS NULL"):format(users)))
  print(("deleted users without email: %d"):format(r.affected_rows))

  show("after update and delete:", check(db:query(("SELECT id, name, email, age FROM %s ORDER BY id"):format(users))))

  -- Errors are returned, not raised, with the server's whole message.
  local rows, err = db:query("SELECT * FROM missing_table")
  print("querying a missing table:", rows, (err:gsub("\n.*", "")))
  rows, err = db:exec(("INSERT INTO %s (name, email) VALUES ($1, $2)"):format(users), "Ada again", "ada@example.org")
  print("a duplicate email:", rows, (err:gsub("\n.*", "")))

  -- escape() is there for building literals by hand; prefer parameters.
  print("escaped:", postgres.escape("Miles O'Brien"))
end

lunet.spawn(function()
  local db, open_err = postgres.open(server)
  if not db then
    io.stderr:write("cannot connect: ", open_err, "\n")
    __lunet_exit_code = 1
    return
  end
  local ok, err = pcall(crud, db)
  -- Clean up whatever happened.
  check(db:exec(("DROP TABLE IF EXISTS %s"):format(users)))
  local gone = check(db:query("SELECT to_regclass($1) IS NULL AS gone", users))[1].gone
  print(("cleaned up: table %s dropped: %s"):format(users, tostring(gone)))
  db:close()
  if not ok then
    io.stderr:write("example failed: ", tostring(err), "\n")
    __lunet_exit_code = 1
    return
  end
  print("done")
end)

lunet.run()
