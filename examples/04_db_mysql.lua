-- Example 04: create, read, update and delete rows in MySQL/MariaDB with
-- bound `?` parameters. Every statement runs on libuv's thread pool while
-- this coroutine waits; the program itself reads top to bottom.
--
--   build/release/lunet-run examples/04_db_mysql.lua
--
-- The server comes from the environment (defaults: the local test server):
--   LUNET_DB_HOST=127.0.0.1 LUNET_DB_PORT=3306 LUNET_DB_USER=root
--   LUNET_DB_PASS= LUNET_DB_NAME=test
-- The example works in a table of its own, named for this run, and drops it.
local lunet = require("lunet")
local mysql = require("lunet.mysql")

local config = {
  host = os.getenv("LUNET_DB_HOST") or "127.0.0.1",
  port = tonumber(os.getenv("LUNET_DB_PORT") or "") or 3306,
  user = os.getenv("LUNET_DB_USER") or "root",
  password = os.getenv("LUNET_DB_PASS") or "",
  database = os.getenv("LUNET_DB_NAME") or "test",
}
local function process_id()
  local f = io.open("/proc/self/stat")
  if not f then return math.random(1e6) end
  local n = f:read("*n")
  f:close()
  return n
end
local pid = process_id()
local users = ("example_users_%d_%d"):format(pid, os.time())

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
  local db, err = mysql.open(config)
  if not db then
    io.stderr:write("cannot connect to MySQL at ", config.host, ":", config.port, ": ", err, "\n")
    __lunet_exit_code = 1
    return
  end
  print(("connected to %s:%d, table %s"):format(config.host, config.port, users))
  -- The table is dropped at the end even if a step below fails.
  local ok, failure = pcall(function()
    check(db:exec(([[
      CREATE TABLE %s (
        id    INT AUTO_INCREMENT PRIMARY KEY,
        name  VARCHAR(100) NOT NULL,
        email VARCHAR(100) UNIQUE,
        age   INT
      ) CHARACTER SET utf8mb4
    ]]):format(users)))

    -- Create.
    local people = {
      { "Ada Lovelace", "ada@example.org", 36 },
      { "Miles O'Brien", "miles@example.org", 41 }, -- a quote, bound safely
      { "Grace Hopper", "grace@example.org", 85 },
      { "Nobody Known", nil, nil },                  -- nil binds as NULL
    }
    for _, p in ipairs(people) do
      local r = check(db:exec("INSERT INTO " .. users .. " (name, email, age) VALUES (?, ?, ?)", p[1], p[2], p[3]))
      print(("inserted %-16s id=%d"):format(p[1], r.last_insert_id))
    end

    -- Read.
    show("all users:", check(db:query("SELECT id, name, email, age FROM " .. users .. " ORDER BY id")))
    local found = check(db:query("SELECT id, name, email, age FROM " .. users .. " WHERE name = ?", "Miles O'Brien"))
    print(("lookup by name with a quote: %d row, email %s"):format(#found, found[1].email))

    -- Update, in a transaction.
    check(db:exec("START TRANSACTION"))
    local r = check(db:exec("UPDATE " .. users .. " SET age = age + ? WHERE age IS NOT NULL", 1))
    check(db:exec("COMMIT"))
    print(("birthday for everyone with an age: %d rows updated"):format(r.affected_rows))

    -- A change rolled back leaves no trace.
    check(db:exec("START TRANSACTION"))
    check(db:exec("DELETE FROM " .. users))
    check(db:exec("ROLLBACK"))
    print(("after a rolled-back delete: %d users"):format(check(db:query("SELECT COUNT(*) AS n FROM " .. users))[1].n))

    -- Delete.
    r = check(db:exec("DELETE FROM " .. users .. " WHERE email IS NULL"))
    print(("deleted users without email: %d"):format(r.affected_rows))

    show("after update and delete:", check(db:query("SELECT id, name, email, age FROM " .. users .. " ORDER BY id")))

    -- Errors are returned, not raised.
    local rows, qerr = db:query("SELECT * FROM missing_table_" .. pid)
    print("querying a missing table:", rows, (qerr:gsub("'[^']*%.missing", "'missing")))
    local dup
    dup, qerr = db:exec("INSERT INTO " .. users .. " (name, email) VALUES (?, ?)", "Ada again", "ada@example.org")
    print("a duplicate email:", dup, qerr)

    -- escape() is there for building literals by hand; prefer parameters.
    print("escaped:", db:escape("Miles O'Brien"))
  end)
  db:exec("DROP TABLE IF EXISTS " .. users)
  db:close()
  if not ok then error(failure, 0) end
  print("done")
end)

lunet.run()
