-- Waits that end early leave nothing behind, in bulk: 10,000 timed-out
-- reads on one connection and 10,000 cancelled tasks keep the descriptor
-- count flat, the Lua heap within a small margin, and (tracing build) the
-- coroutine reference balance at zero. Each runs in a child process, whose
-- trace summary the tracing build prints at exit.
local H = require("spec.helper")

-- Lua source run as a child: `body` (a function that does one round of
-- `n` early-ended waits) is measured after a warm-up round.
local function measure(body_src)
  return [[
    local lunet = require("lunet")
    local socket = require("lunet.socket")
    local fs = require("lunet.fs")
    local function fds() return #assert(fs.scandir("/proc/self/fd")) end
    local function heap() collectgarbage(); collectgarbage(); return collectgarbage("count") end
    local round = ]] .. body_src .. [[
    lunet.spawn(function()
      local ctx = {}
      local ok, err = pcall(function()
        round(ctx, 1000)
        local f0, h0, p0 = fds(), heap(), lunet._pending()
        round(ctx, 10000)
        local f1, h1, p1 = fds(), heap(), lunet._pending()
        print(("fds %d %d"):format(f0, f1))
        print(("heap_kb %.1f"):format(h1 - h0))
        print(("pending %d %d"):format(p0, p1))
      end)
      if not ok then print("FAILED: " .. tostring(err)) end
      if ctx.close then ctx.close() end
      -- The loop may stay busy until the cancelled sleeps' times (see
      -- timeout_spec "does not keep lunet.run going"): end it here.
      lunet.stop()
    end)
  ]]
end

local function check(rc, out, err)
  assert.equal(0, rc, err)
  assert.is_nil(out:match("FAILED: [^\n]*"))
  local f0, f1 = out:match("fds (%d+) (%d+)")
  assert.is_not_nil(f0, out .. err)
  assert.equal(f0, f1, "descriptors leaked")
  local kb = tonumber(out:match("heap_kb (%S+)"))
  assert.is_true(kb < 64, ("the Lua heap grew by %.1f KB"):format(kb))
  local p0, p1 = out:match("pending (%d+) (%d+)")
  assert.equal(p0, p1, "waits left registered")
  if H.build:match("debug") then assert.matches("balance=0", err) end
end

describe("bulk early ends", function()
  it("10,000 timed-out reads on one connection leave nothing behind", function()
    check(H.lunet_run(measure([[function(ctx, n)
      if not ctx.s then
        local l = assert(socket.listen("tcp", "127.0.0.1", 0))
        local _, port = l:getsockname()
        local t = lunet.spawn(socket.accept, l)
        ctx.c = assert(socket.connect("127.0.0.1", port))
        ctx.s = select(2, t:join())
        l:close()
        ctx.close = function() ctx.s:close(); ctx.c:close() end
      end
      for i = 1, n do
        local d, err
        if i % 2 == 0 then
          socket.settimeout(ctx.s, i % 100 == 0 and 1 or 0)
          d, err = socket.read(ctx.s)
        else
          socket.settimeout(ctx.s, nil)
          d, err = lunet.deadline(0, socket.read, ctx.s)
        end
        assert(d == nil and err == "timeout", tostring(err))
      end
      -- Nothing received was lost, and the connection still reads.
      socket.settimeout(ctx.s, nil)
      ctx.c:write("still here")
      assert(socket.read(ctx.s) == "still here")
    end]]), nil, 30))
  end)

  it("10,000 cancelled tasks leave nothing behind", function()
    check(H.lunet_run(measure([[function(ctx, n)
      if not ctx.long then
        ctx.long = lunet.spawn(lunet.sleep, 60000)
        ctx.close = function() ctx.long:cancel() end
      end
      local batch = {}
      for i = 1, n do
        local t
        if i % 3 == 0 then
          t = lunet.spawn(function() pcall(lunet.sleep, 60000); lunet.sleep(60000) end)
        elseif i % 3 == 1 then
          t = lunet.spawn(ctx.long.join, ctx.long)
        else
          t = lunet.spawn(require("lunet.signal").wait, "USR2")
        end
        batch[#batch + 1] = t
        if #batch == 100 then
          for j = #batch, 1, -1 do batch[j]:cancel() end
          for j = 1, #batch do
            local ok, err = batch[j]:join()
            assert(ok == false and err == "cancelled", tostring(err))
          end
          batch = {}
        end
      end
    end]]), nil, 30))
  end)
end)
