-- The misuse fuzzer's driver, run with plain luajit from the repository root:
--
--   luajit scripts/fuzz.lua [--profile release|debug]... [--seconds TOTAL]
--                           [--child-seconds S] [--jobs N] [--seed N]
--
-- Runs children (scripts/fuzz/child.lua under build/<profile>/lunet-run, each
-- in an empty temporary folder) for TOTAL seconds of wall time, several at a
-- time: first a fixed set of seeds, then seeds derived from the clock, on
-- every profile. A child fails the run if it dies by a signal, outlives its
-- time limit (a hang: it is killed, after a gdb backtrace if gdb is there),
-- exits otherwise than cleanly, or (debug builds) leaves the coroutine
-- references unbalanced. For each failure it prints the seed, the last calls
-- the child logged, the end of its stderr and the commands that reproduce it;
-- the child's files are kept in .tmp/fuzz/.
--
-- Environment: FUZZ_SECONDS (TOTAL, default 60), FUZZ_CHILD_SECONDS (default
-- 8), FUZZ_JOBS (default: the number of CPUs), FUZZ_PROFILES (default
-- "release debug"), FUZZ_SEED (run only this seed), FUZZ_ALLOW_FAIL=1 (report
-- failures but exit 0: for local runs only), FUZZ_DISABLE (passed to the
-- children: actions to leave out, for triage), CI=true (the database servers
-- must be reachable; otherwise the children leave MySQL/PostgreSQL out).

local function getenv_num(name, default) return tonumber(os.getenv(name) or "") or default end

local function shquote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function tail(s, n)
  local lines = {}
  for line in (s or ""):gmatch("[^\n]*") do if line ~= "" then lines[#lines + 1] = line end end
  return { unpack(lines, math.max(1, #lines - n + 1)) }
end

local function now() return tonumber(sh("date +%s.%N")) end

------------------------------------------------------------------ options
local root = sh("pwd"):gsub("%s+$", "")
local opts = {
  seconds = getenv_num("FUZZ_SECONDS", 60),
  child = getenv_num("FUZZ_CHILD_SECONDS", 8),
  jobs = getenv_num("FUZZ_JOBS", tonumber(sh("nproc 2>/dev/null")) or 2),
  seed = tonumber(os.getenv("FUZZ_SEED") or ""),
  profiles = {},
}
do
  local i = 1
  while arg[i] do
    local a, v = arg[i], arg[i + 1]
    if a == "--profile" then opts.profiles[#opts.profiles + 1] = v
    elseif a == "--seconds" then opts.seconds = tonumber(v)
    elseif a == "--child-seconds" then opts.child = tonumber(v)
    elseif a == "--jobs" then opts.jobs = tonumber(v)
    elseif a == "--seed" then opts.seed = tonumber(v)
    else io.stderr:write("fuzz: unknown option ", a, "\n") os.exit(2) end
    i = i + 2
  end
  if #opts.profiles == 0 then
    for p in (os.getenv("FUZZ_PROFILES") or "release debug"):gmatch("%S+") do opts.profiles[#opts.profiles + 1] = p end
  end
end
local CHILD = root .. "/scripts/fuzz/child.lua"
local KEEP = root .. "/.tmp/fuzz"
-- A child may take this long beyond its fuzzing time (closing, the debug
-- build's slower exit) before it counts as hung.
local MARGIN = 20

for _, p in ipairs(opts.profiles) do
  if not io.open(("%s/build/%s/lunet-run"):format(root, p)) then
    io.stderr:write(("fuzz: build/%s/lunet-run is missing (make build build-debug)\n"):format(p))
    os.exit(2)
  end
end

------------------------------------------------------------------ databases
-- Can the children reach the test servers? Asked through lunet itself.
local function probe_databases()
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write([[
local lunet = require("lunet")
for _, d in ipairs({ "mysql", "postgres" }) do
  lunet.spawn(function()
    local ok, db = pcall(require, "lunet." .. d)
    local c, err = nil, db
    if ok then
      c, err = db.open({ host = os.getenv("LUNET_DB_HOST") or "127.0.0.1", port = d == "mysql" and 3306 or 5432,
        user = os.getenv("LUNET_DB_USER") or (d == "mysql" and "root" or "postgres"),
        password = os.getenv("LUNET_DB_PASS") or (d == "mysql" and "" or nil),
        database = os.getenv("LUNET_DB_NAME") or "test" })
    end
    print(d, c and "ok" or tostring(err))
    if c then db.close(c) end
  end)
end
]])
  f:close()
  local out = sh(("timeout 60 %s/build/%s/lunet-run %s 2>&1"):format(root, opts.profiles[1], script))
  os.remove(script)
  local env, problems = {}, {}
  for _, d in ipairs({ "mysql", "postgres" }) do
    local status = out:match(d .. "\t([^\n]*)")
    if status == "ok" then
      env[#env + 1] = ("FUZZ_%s=1"):format(d:upper())
    else
      problems[#problems + 1] = ("%s: %s"):format(d, status or out)
    end
  end
  if #problems > 0 then
    local msg = "fuzz: database server unreachable (" .. table.concat(problems, "; ") .. ")"
    if os.getenv("CI") == "true" then
      io.stderr:write(msg, "\n")
      os.exit(1)
    end
    io.stderr:write(msg, ": left out of this run\n")
  end
  return table.concat(env, " ")
end

------------------------------------------------------------------ children
local SIGNALS = { [1] = "SIGHUP", [2] = "SIGINT", [3] = "SIGQUIT", [4] = "SIGILL", [5] = "SIGTRAP",
  [6] = "SIGABRT", [7] = "SIGBUS", [8] = "SIGFPE", [9] = "SIGKILL", [11] = "SIGSEGV", [13] = "SIGPIPE",
  [14] = "SIGALRM", [15] = "SIGTERM" }

local db_env
local has_gdb = sh("command -v gdb 2>/dev/null") ~= "" and os.getenv("FUZZ_GDB") ~= "0"

local function child_command(job, dir)
  return ("FUZZ_DISABLE=%s %s %s/build/%s/lunet-run %s %d %g %s"):format(
    shquote(os.getenv("FUZZ_DISABLE") or ""), db_env, root, job.profile, CHILD, job.seed, opts.child, dir)
end

local function start(job)
  job.dir = sh("mktemp -d /tmp/lunet-fuzz.XXXXXX"):gsub("%s+$", "")
  os.execute(("mkdir %s/work"):format(job.dir))
  local d = job.dir
  -- The child's pid goes to a file (to kill a hung child), its exit status to another.
  local f = assert(io.open(d .. "/run.sh", "w"))
  f:write(("cd %s/work || exit 99\necho $$ > %s/pid\nulimit -c unlimited 2>/dev/null\nexec env %s >%s/out 2>%s/err </dev/null\n"):format(
    d, d, child_command(job, d .. "/calls.log"), d, d))
  f:close()
  os.execute(("(sh %s/run.sh; echo $? >%s/rc.tmp; mv %s/rc.tmp %s/rc) >/dev/null 2>&1 &"):format(d, d, d, d))
  job.started = now()
end

local function finish_hung(job)
  local pid = slurp(job.dir .. "/pid")
  pid = pid and pid:match("%d+")
  if not pid then return end
  if has_gdb then
    os.execute(("timeout 60 gdb -p %s -batch -ex 'thread apply all bt' >%s/backtrace 2>&1"):format(pid, job.dir))
  end
  os.execute("kill -KILL " .. pid .. " 2>/dev/null")
end

-- The backtrace of a crashed child from its core file (if gdb is there).
local function core_backtrace(job)
  local core = sh(("ls %s/work/core* 2>/dev/null | head -1"):format(job.dir)):gsub("%s+$", "")
  if core == "" then return end
  if has_gdb then
    os.execute(("timeout 60 gdb -batch -ex 'bt 40' %s %s >%s/backtrace 2>&1"):format(
      sh("command -v luajit"):gsub("%s+$", ""), core, job.dir))
  end
  os.remove(core)
end

-- What went wrong with a finished child, or nil.
local function verdict(job)
  local rc = tonumber(slurp(job.dir .. "/rc") or "")
  local out, err = slurp(job.dir .. "/out") or "", slurp(job.dir .. "/err") or ""
  if job.hung then return ("hang: still running after %d s (killed)"):format(opts.child + MARGIN) end
  if rc and rc > 128 then
    core_backtrace(job)
    return ("crash: killed by %s"):format(SIGNALS[rc - 128] or ("signal " .. rc - 128))
  end
  if err:find("[lunet trace] FATAL", 1, true) or err:find("stack imbalance", 1, true) then
    return "leak: unbalanced trace summary"
  end
  if rc ~= 0 then return ("exit status %s"):format(tostring(rc)) end
  if not out:find("FUZZ-CHILD-DONE", 1, true) then return "the child did not finish (no FUZZ-CHILD-DONE)" end
  if job.profile == "debug" and not err:find("balance=0", 1, true) then return "no trace summary with balance=0" end
  return nil
end

-- A short name for a failure, to group repeats: the verdict, the message
-- lunet or Rust printed, the innermost lunet function on the crashed stack
-- and the last call logged.
local function signature(job, why)
  local calls = tail(slurp(job.dir .. "/calls.log"), 1)[1] or ""
  local fn = calls:match("^%d+ %S+ ([^(]+)%(") or calls:match("^%d+ %S+ (.*)$") or calls
  local err = slurp(job.dir .. "/err") or ""
  local msg = err:match("panicked at [^\n]*\n([^\n]*)") or err:match("fatal runtime error: ([^\n]*)")
    or err:match("%[lunet trace%] ([^\n]*FATAL[^\n]*)") or err:match("%[lunet trace%] (stack[^\n]*)") or "-"
  local bt = (slurp(job.dir .. "/backtrace") or "") .. "\n" .. err
  local frame = (bt:match("in (lunet[%w_]*::[%w_:<>]+)") or bt:match("%d+: (lunet[%w_]*::[%w_:<>]+)") or "-"):gsub("::h%x+$", "")
  return ("%s | %s | at %s"):format(why:gsub(" %(killed%)", ""):gsub(" after %d+ s", ""), msg, frame), fn
end

-- Copies a failed child's files (its call log, output, backtrace) to KEEP.
local function keep_files(job)
  local keep = ("%s/%s-seed%d"):format(KEEP, job.profile, job.seed)
  os.execute(("rm -rf %s && mkdir -p %s && cp -r %s/. %s && rm -rf %s/work"):format(keep, KEEP, job.dir, keep, keep))
  return keep
end

local function report(job, why)
  local keep = keep_files(job)
  local p = print
  p(("FAIL %s seed %d: %s"):format(job.profile, job.seed, why))
  p("  last calls (of " .. keep .. "/calls.log):")
  local prev = slurp(job.dir .. "/calls.log.1")
  local lines = tail((prev or "") .. "\n" .. (slurp(job.dir .. "/calls.log") or ""), 12)
  for _, l in ipairs(lines) do p("    " .. l:sub(1, 300)) end
  p("  end of stderr:")
  for _, l in ipairs(tail(slurp(job.dir .. "/err"), 8)) do p("    " .. l:sub(1, 300)) end
  local bt = slurp(job.dir .. "/backtrace")
  if bt then p("  backtrace: " .. keep .. "/backtrace") end
  p("  reproduce:")
  p(("    luajit scripts/fuzz.lua --profile %s --seed %d --child-seconds %g"):format(job.profile, job.seed, opts.child))
  p(("    d=$(mktemp -d) && cd $d && %s $d/calls.log"):format(
    child_command(job, ""):gsub(" $", ""):gsub("%s+$", "")))
end

------------------------------------------------------------------ schedule
local FIXED = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 }
local base = os.time()
local seeds = {}
if opts.seed then
  seeds = { opts.seed }
else
  -- The first fixed seed, then one from the clock, then the rest, then more
  -- from the clock for as long as time remains.
  seeds[1] = FIXED[1]
  seeds[2] = base
  for i = 2, #FIXED do seeds[#seeds + 1] = FIXED[i] end
  for i = 1, 10000 do seeds[#seeds + 1] = base + i end
end

local queue = {}
for _, s in ipairs(seeds) do
  for _, p in ipairs(opts.profiles) do queue[#queue + 1] = { profile = p, seed = s } end
end

db_env = probe_databases()
print(("fuzz: %g s on %s, %g s per child, %d at a time; fixed seeds %s, clock seeds from %d; databases: %s"):format(
  opts.seconds, table.concat(opts.profiles, "+"), opts.child, opts.jobs,
  opts.seed and "-" or (FIXED[1] .. ".." .. FIXED[#FIXED]), base, db_env == "" and "none" or db_env))

local t0 = now()
local running, failures, done, next_job = {}, {}, 0, 1
local reported = {}
while true do
  local elapsed = now() - t0
  -- Start a child if one fits in the time left (a single seed always runs).
  while #running < opts.jobs and queue[next_job]
    and (opts.seed or elapsed + opts.child <= opts.seconds) do
    local job = queue[next_job]
    next_job = next_job + 1
    start(job)
    running[#running + 1] = job
  end
  if #running == 0 then break end
  os.execute("sleep 0.2")
  for i = #running, 1, -1 do
    local job = running[i]
    if io.open(job.dir .. "/rc") then
      table.remove(running, i)
      done = done + 1
      local why = verdict(job)
      if why then
        local sig, last = signature(job, why)
        failures[#failures + 1] = { job = job, why = why, sig = sig, last = last }
        if reported[sig] then -- the details of a repeat are in its folder
          print(("FAIL %s seed %d: %s (again; last call %s)"):format(job.profile, job.seed, sig, last))
          keep_files(job)
        else
          reported[sig] = true
          report(job, why)
        end
      else
        print(("ok   %s seed %d (%s)"):format(job.profile, job.seed,
          ((slurp(job.dir .. "/out") or ""):match("calls=%d+") or "?")))
      end
      os.execute("rm -rf " .. job.dir)
    elseif not job.hung and now() - job.started > opts.child + MARGIN then
      job.hung = true
      finish_hung(job)
    end
  end
end

print(("fuzz: %d children in %.0f s, %d failed"):format(done, now() - t0, #failures))
if #failures > 0 then
  local groups, order = {}, {}
  for _, f in ipairs(failures) do
    if not groups[f.sig] then groups[f.sig] = {}; order[#order + 1] = f.sig end
    table.insert(groups[f.sig], ("%s:%d (last call %s)"):format(f.job.profile, f.job.seed, f.last))
  end
  print("distinct failures:")
  for _, s in ipairs(order) do print(("  %s\n      %s"):format(s, table.concat(groups[s], "\n      "))) end
  if os.getenv("FUZZ_ALLOW_FAIL") == "1" then
    print("fuzz: FUZZ_ALLOW_FAIL=1: not failing the run")
    os.exit(0)
  end
  os.exit(1)
end
