-- lunet.supervisor: the supervisor process of `lunet-run --workers N`.
--
-- Written with lunet itself: lunet.process starts the workers (each a fresh
-- `luajit lunet-run script.lua` with its identity in the environment, see
-- worker.rs) and waits for their exits and readiness; lunet.signal receives
-- the operator's signals. The supervisor opens no socket and runs no user
-- code, so it has nothing to crash on or to drain.
--
--   SIGHUP       new generation: start N workers, wait until each is ready
--                (its loop started: the main chunk ran, its listeners are
--                open), then send
--                SIGTERM to the old ones, which close their listeners first
--                and drain. If a new worker fails before it is ready, the new
--                generation is stopped and the old one keeps serving.
--   SIGTERM/INT  drain every worker and exit; a second one kills them (KILL)
--                and exits at once.
--   crash        a worker that ends with a failure (status != 0 or a
--                signal) is restarted after 100 ms, doubling for each
--                consecutive failure within 1 s of its start (max 5 s); after
--                5 such failures in a row the supervisor gives up: it stops
--                every worker and exits with status 1. A worker that ends
--                with status 0 is not restarted; when none is left the
--                supervisor exits with status 0.
-- A worker still running `drain_ms` + 2 s after its SIGTERM is killed.
local lunet = require("lunet")
local process = require("lunet.process")
local signal = require("lunet.signal")

local M = {}

M.MAX_WORKERS = 1024
M.QUICK_MS = 1000 -- a failure this soon after the start counts as immediate
M.GIVE_UP = 5 -- immediate failures in a row before giving up
M.READY_MS = 60000 -- how long a reload waits for each new worker
M.KILL_GRACE_MS = 2000

local function log(fmt, ...)
  io.stderr:write(("[lunet-run] " .. fmt .. "\n"):format(...))
  io.stderr:flush()
end
M.log = log

--- M.count(text, cpus) -> n, warning | nil, err: the value of --workers.
function M.count(text, cpus)
  if text == "auto" then return cpus end
  local n = tonumber(text)
  if type(text) ~= "string" or not text:match("^%s*[-+]?%d+%s*$") or not n then
    return nil, ("--workers expects a number of processes or 'auto' (got '%s')"):format(tostring(text))
  end
  if n < 1 then
    return nil, ("--workers must be at least 1 (got %d)"):format(n)
  end
  if n > M.MAX_WORKERS then
    return nil, ("--workers must be at most %d (got %s)"):format(M.MAX_WORKERS, text)
  end
  if n > cpus then
    return n, ("--workers %d is more than the %d CPUs of this machine: workers will share cores"):format(n, cpus)
  end
  return n
end

--- M.seconds(text) -> ms | nil, err: the value of --drain-timeout (seconds).
function M.seconds(text)
  local n = tonumber(text)
  if not n or n ~= n or n < 0 or n > 86400 then
    return nil, ("--drain-timeout expects seconds from 0 to 86400 (got '%s')"):format(tostring(text))
  end
  return math.floor(n * 1000 + 0.5)
end

--- M.backoff(failures) -> ms: the delay before restart number `failures`.
function M.backoff(failures)
  return math.min(100 * 2 ^ (failures - 1), 5000)
end

local function describe(status, sig)
  if sig ~= 0 then return ("killed by signal %d"):format(sig) end
  return ("exited with status %d"):format(status)
end

--- M.run(opts) never returns: runs the supervisor and exits the process.
-- opts: command (array: the program, then its arguments up to the script
-- and its arguments), workers, drain_ms.
function M.run(opts)
  local count, drain_ms = opts.workers, opts.drain_ms
  local file, args = opts.command[1], { unpack(opts.command, 2) }
  local me = process.pid()
  local generation = 1
  local slots = {} -- slots[id] = the current generation's worker
  local live = {} -- pid -> worker, every process not yet reaped
  local stopping, reloading, status = false, false, 0

  local function finish()
    io.stderr:flush()
    os.exit(status, true)
  end

  local function all_gone()
    return next(live) == nil
  end

  local start -- forward

  local function retire(w, why)
    if w.retired or w.exited then return end
    w.retired = true
    process.kill(w.pid, "TERM")
    w.killer = lunet.spawn(function()
      lunet.sleep(drain_ms + M.KILL_GRACE_MS)
      if not w.exited then
        log("worker %d (pid %d) still running %d ms after SIGTERM (%s): killing it", w.id, w.pid, drain_ms, why)
        process.kill(w.pid, "KILL")
      end
    end)
  end

  local function stop(why, code)
    if stopping then return end
    stopping = true
    status = code or status
    log("%s: draining %d worker(s) (up to %d ms)", why, (function()
      local n = 0
      for _ in pairs(live) do n = n + 1 end
      return n
    end)(), drain_ms)
    for _, w in pairs(live) do retire(w, why) end
    if all_gone() then finish() end
  end

  local function watch(w)
    local st, sig = process.wait(w.pid)
    live[w.pid] = nil
    w.exited = true
    if w.killer then w.killer:cancel() end
    local crashed = st ~= 0 or sig ~= 0
    if stopping or w.retired then
      if crashed and not w.retired then log("worker %d (pid %d) %s", w.id, w.pid, describe(st, sig)) end
      if stopping and all_gone() then finish() end
      return
    end
    if slots[w.id] ~= w then
      -- A worker of a generation being started that failed before it was
      -- ready: the reload deals with it.
      if crashed then log("worker %d (pid %d, generation %d) %s", w.id, w.pid, w.generation, describe(st, sig)) end
      return
    end
    if not crashed then
      log("worker %d (pid %d) finished", w.id, w.pid)
      slots[w.id] = nil
      if next(slots) == nil and not reloading then finish() end
      return
    end
    local quick = lunet.now() - w.started < M.QUICK_MS
    local failures = quick and w.failures + 1 or 1
    if quick and failures >= M.GIVE_UP then
      log("worker %d (pid %d) %s; %d failures in a row within %d ms of starting: giving up",
        w.id, w.pid, describe(st, sig), failures, M.QUICK_MS)
      slots[w.id] = nil
      stop("giving up", 1)
      return
    end
    local delay = M.backoff(failures)
    log("worker %d (pid %d) %s; restarting in %d ms", w.id, w.pid, describe(st, sig), delay)
    lunet.sleep(delay)
    if stopping or slots[w.id] ~= w then return end
    local nw = start(w.id, w.generation, failures)
    if nw then
      slots[w.id] = nw
    else
      slots[w.id] = nil
      stop("cannot restart a worker", 1)
    end
  end

  function start(id, gen, failures)
    local pid, err = process.spawn(file, args, {
      detached = true, -- terminal signals reach the supervisor only
      ready = true,
      env = {
        LUNET_WORKER_ID = tostring(id),
        LUNET_WORKER_COUNT = tostring(count),
        LUNET_WORKER_GENERATION = tostring(gen),
        LUNET_DRAIN_TIMEOUT = tostring(drain_ms),
        LUNET_SUPERVISOR_PID = tostring(me),
      },
    })
    if not pid then
      log("cannot start worker %d: %s", id, err)
      return nil, err
    end
    local w = { id = id, pid = pid, generation = gen, started = lunet.now(), failures = failures or 0 }
    live[pid] = w
    lunet.spawn(watch, w)
    return w
  end

  local function reload()
    if reloading or stopping then
      log("SIGHUP ignored: %s in progress", reloading and "a reload" or "the shutdown")
      return
    end
    reloading = true
    local gen = generation + 1
    log("SIGHUP: starting generation %d", gen)
    local fresh, ok = {}, true
    for id = 1, count do
      fresh[id] = start(id, gen)
      if not fresh[id] then ok = false end
    end
    for id = 1, count do
      local w = fresh[id]
      if ok and w then
        local r, err = process.ready(w.pid, M.READY_MS)
        if not r then
          ok = false
          log("reload: worker %d of generation %d not ready (%s)", id, gen, err)
        end
      end
    end
    if ok and not stopping then
      generation = gen
      local old = slots
      slots = fresh
      for _, w in pairs(old) do retire(w, "reload") end
      log("generation %d serving; generation %d draining", gen, gen - 1)
    else
      for _, w in pairs(fresh) do retire(w, "failed reload") end
      if not stopping then log("reload failed: generation %d keeps serving", generation) end
    end
    reloading = false
    if not stopping and next(slots) == nil then finish() end
  end

  -- Each signal has a task that waits again as soon as it is woken (the
  -- handler runs in a task of its own), so the signal never finds nobody
  -- waiting, which would give it its default action back.
  for _, name in ipairs({ "TERM", "INT" }) do
    lunet.spawn(function()
      while true do
        signal.wait(name)
        if stopping then
          log("SIG%s again: killing every worker", name)
          for pid in pairs(live) do process.kill(pid, "KILL") end
          io.stderr:flush()
          os.exit(1, true)
        end
        lunet.spawn(stop, "SIG" .. name)
      end
    end)
  end
  lunet.spawn(function()
    while true do
      signal.wait("HUP")
      lunet.spawn(reload)
    end
  end)

  log("supervisor pid %d: starting %d worker(s) of %s (drain timeout %d ms)", me, count,
    tostring(opts.script), drain_ms)
  for id = 1, count do
    slots[id] = start(id, generation)
    if not slots[id] then
      stop("cannot start the workers", 1)
      break
    end
  end
  lunet.run()
  finish()
end

--- M.main(o): lunet-run's --workers entry: checks the options, then runs
-- the supervisor (never returns). o: workers, drain_timeout (texts or nil),
-- launcher (real path of lunet-run), arg (the launcher's arg table),
-- skip_loopback, script, script_args.
function M.main(o)
  local function fail(msg)
    io.stderr:write("Error: ", msg, "\n")
    os.exit(1)
  end
  if not o.workers then fail("--drain-timeout applies to --workers only") end
  local f = io.open(o.script, "r")
  if not f then fail("cannot open " .. tostring(o.script)) end
  f:close()
  local cpus = process.cpus()
  local n, warning = M.count(o.workers, cpus)
  if not n then fail(warning) end
  local drain_ms, err = M.seconds(o.drain_timeout or "30")
  if not drain_ms then fail(err) end
  if warning then log("warning: %s", warning) end
  -- Each worker runs the launcher again the way this process was started:
  -- the interpreter and its options (the negative indexes of arg; a
  -- luarocks wrapper sets package paths with -e there), then the launcher.
  local k = 0
  while o.arg[k - 1] ~= nil do k = k - 1 end
  local command = {}
  for j = k, -1 do command[#command + 1] = o.arg[j] end
  if #command == 0 then command[1] = "luajit" end
  command[#command + 1] = o.launcher
  if o.skip_loopback then command[#command + 1] = "--dangerously-skip-loopback-restriction" end
  command[#command + 1] = "--"
  command[#command + 1] = o.script
  for _, a in ipairs(o.script_args) do command[#command + 1] = a end
  local migrate = io.open("/proc/sys/net/ipv4/tcp_migrate_req")
  if migrate then
    if migrate:read("*l") == "0" then
      log("note: net.ipv4.tcp_migrate_req is 0: a connection that reaches a retiring worker's listener as it closes is reset; set it to 1 for reloads that lose none")
    end
    migrate:close()
  end
  M.run({ command = command, workers = n, drain_ms = drain_ms, script = o.script })
end

return M
