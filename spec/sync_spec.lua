-- Coordination between tasks: lunet.channel, lunet.semaphore,
-- lunet.waitgroup, lunet.wait_any and lunet.group. Every wait is a scheduler
-- wait: timeouts, deadlines and cancellation apply, wake-ups are FIFO, and
-- nothing handed over is lost or duplicated.
local H = require("spec.helper")
local lunet = H.lunet
local pack = H.pack

-- pcall(f, ...) must fail with an error containing `pattern` (plain).
local function raises(pattern, f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error containing: " .. pattern)
  assert.is_truthy(tostring(err):find(pattern, 1, true), tostring(err))
end

-- A function for lunet.spawn that parks in a recv and records what it got.
local function receiver(ch, got, ms)
  return function()
    local r = pack(ch:recv(ms))
    got[#got + 1] = r
  end
end

describe("lunet.channel", function()
  it("buffers up to its capacity, keeps order, and counts with # and len", function()
    H.run(function()
      local ch = lunet.channel(3)
      assert.matches("^lunet%.channel: 0x%x+ %(0/3%)$", tostring(ch))
      for i = 1, 3 do assert.is_true(ch:send(i)) end
      assert.equal(3, #ch)
      assert.equal(3, ch:len())
      -- Full: the fourth send waits until a value is taken.
      local sent
      local t = lunet.spawn(function() sent = pack(ch:send(4)) end)
      assert.equal("waiting", t:status())
      assert.equal(1, ch:recv())
      assert.is_nil(sent, "the sender runs on the next loop iteration")
      t:join()
      assert.same({ n = 1, true }, sent)
      assert.equal(3, #ch)
      for i = 2, 4 do assert.equal(i, ch:recv()) end
      assert.equal(0, #ch)
    end)
  end)

  it("with capacity 0 (the default) a send completes only when a receiver takes the value", function()
    H.run(function()
      local ch = lunet.channel()
      local log = {}
      local s = lunet.spawn(function()
        log[#log + 1] = "send"
        log[#log + 1] = tostring(ch:send("x"))
      end)
      lunet.sleep(1)
      assert.same({ "send" }, log)
      assert.equal(0, #ch)
      assert.equal("x", ch:recv())
      s:join()
      assert.same({ "send", "true" }, log)
      -- A receiver that waits first gets the value straight away.
      local got = {}
      local r = lunet.spawn(receiver(ch, got))
      assert.is_true(ch:send(false))
      r:join()
      assert.same({ pack(false) }, got)
    end)
  end)

  it("sends any value but nil, tables by reference", function()
    H.run(function()
      local ch = lunet.channel(4)
      local t, f = {}, function() end
      ch:send(t)
      ch:send(f)
      ch:send(0)
      ch:send("")
      assert.is_true(rawequal(t, ch:recv()))
      assert.is_true(rawequal(f, ch:recv()))
      assert.equal(0, ch:recv())
      assert.equal("", ch:recv())
      raises("channel:send: cannot send nil", ch.send, ch, nil)
      raises("channel:send: cannot send nil", ch.send, ch)
    end)
  end)

  it("wakes receivers and senders in the order they started waiting", function()
    H.run(function()
      local ch = lunet.channel()
      local order = {}
      local ts = {}
      for i = 1, 5 do
        ts[i] = lunet.spawn(function()
          local v = ch:recv()
          order[#order + 1] = i .. ":" .. v
        end)
      end
      for i = 1, 5 do ch:send(i * 10) end
      for i = 1, 5 do ts[i]:join() end
      assert.same({ "1:10", "2:20", "3:30", "4:40", "5:50" }, order)
      -- Senders: their values come out in the order they blocked.
      local b = lunet.channel(1)
      b:send(0)
      for i = 1, 4 do ts[i] = lunet.spawn(function() b:send(i) end) end
      local got = {}
      for _ = 1, 5 do got[#got + 1] = b:recv() end
      assert.same({ 0, 1, 2, 3, 4 }, got)
    end)
  end)

  it("runs a hand-off in the same loop iteration, but never starves other tasks", function()
    H.run(function()
      local ping, pong = lunet.channel(), lunet.channel()
      lunet.spawn(function()
        while true do
          local v = ping:recv()
          if v == nil then return end
          pong:send(v)
        end
      end)
      lunet.sleep(0) -- now inside the loop's ready-list batch
      local turns = 0
      lunet.spawn(function() lunet.sleep(0); turns = turns + 1 end)
      ping:send(1)
      assert.equal(1, pong:recv())
      assert.equal(0, turns, "the sleep(0) queued before the hand-offs has not come back yet")
      -- A long exchange lets the loop go round: the sleeper gets its turns.
      local spinner = lunet.spawn(function()
        while true do lunet.sleep(0); turns = turns + 1 end
      end)
      for i = 1, 100 do
        ping:send(i)
        assert.equal(i, pong:recv())
      end
      assert.is_true(turns >= 10, "sleep(0) turns during 100 round trips: " .. turns)
      spinner:cancel()
      ping:close()
    end)
  end)

  it("recv and send time out with nil, 'timeout' and leave nothing behind", function()
    H.run(function()
      local ch = lunet.channel()
      assert.same({ n = 2, nil, "timeout" }, pack(ch:recv(5)))
      assert.same({ n = 2, nil, "timeout" }, pack(ch:send("late", 5)))
      -- The timed-out send's value was not delivered.
      assert.same({ n = 2, nil, "timeout" }, pack(ch:recv(0)))
      local full = lunet.channel(1)
      full:send(1)
      assert.same({ n = 2, nil, "timeout" }, pack(full:send(2, 0)))
      assert.equal(1, #full)
      assert.equal(1, full:recv())
      assert.equal(0, #full)
    end)
  end)

  it("honours lunet.deadline", function()
    H.run(function()
      local ch = lunet.channel()
      local r = pack(lunet.deadline(5, function() return ch:recv() end))
      assert.same({ n = 2, nil, "timeout" }, r)
      r = pack(lunet.deadline(5, function() return ch:send(1, 60000) end))
      assert.same({ n = 2, nil, "timeout" }, r)
    end)
  end)

  describe("close", function()
    it("fails waiting receivers with nil, 'closed', in order", function()
      H.run(function()
        local ch = lunet.channel()
        local got = {}
        local ts = {}
        for i = 1, 3 do ts[i] = lunet.spawn(receiver(ch, got)) end
        ch:close()
        for i = 1, 3 do ts[i]:join() end
        assert.same({ pack(nil, "closed"), pack(nil, "closed"), pack(nil, "closed") }, got)
        assert.matches("closed%)$", tostring(ch))
      end)
    end)

    it("keeps buffered values receivable, then returns nil, 'closed'", function()
      H.run(function()
        local ch = lunet.channel(2)
        ch:send("a")
        ch:send("b")
        ch:close()
        ch:close() -- a second close does nothing
        assert.equal("a", ch:recv())
        assert.equal("b", ch:recv())
        assert.same({ n = 2, nil, "closed" }, pack(ch:recv()))
        assert.same({ n = 2, nil, "closed" }, pack(ch:recv(0)))
      end)
    end)

    it("makes send return nil, 'closed' (it does not raise), and fails blocked senders the same way", function()
      H.run(function()
        local ch = lunet.channel()
        local r
        local s = lunet.spawn(function() r = pack(ch:send("never")) end)
        ch:close()
        s:join()
        assert.same({ n = 2, nil, "closed" }, r)
        assert.same({ n = 2, nil, "closed" }, pack(ch:send(1)))
        -- The blocked sender's value was dropped, not buffered.
        assert.same({ n = 2, nil, "closed" }, pack(ch:recv()))
      end)
    end)

    it("works from the main chunk, as do len and #", function()
      local ch = lunet.channel(1)
      assert.equal(0, #ch)
      ch:close()
      raises("channel.send must be called from coroutine", ch.send, ch, 1)
      raises("channel.recv must be called from coroutine", ch.recv, ch)
    end)

    it("wakes 10,000 waiting receivers in the loop iteration after it", function()
      local n, woke, at_next = 10000, 0, nil
      H.run(function()
        local ch = lunet.channel()
        for _ = 1, n do
          lunet.spawn(function()
            local v, err = ch:recv()
            assert(v == nil and err == "closed")
            woke = woke + 1
          end)
        end
        assert.equal(0, woke)
        ch:close()
        -- sleep(0) resumes in the same ready-list batch, after the receivers
        -- woken by the close (they were queued first).
        lunet.sleep(0)
        at_next = woke
      end, 60000)
      assert.equal(n, at_next)
    end)
  end)

  describe("a task cancelled while it waits", function()
    it("in send leaves no value behind and the channel usable", function()
      H.run(function()
        local ch = lunet.channel()
        local s = lunet.spawn(function() ch:send("lost?") end)
        lunet.sleep(1)
        s:cancel()
        assert.same({ n = 2, false, "cancelled" }, pack(s:join()))
        assert.same({ n = 2, nil, "timeout" }, pack(ch:recv(1)))
        local t = lunet.spawn(function() ch:send("next") end)
        assert.equal("next", ch:recv())
        t:join()
        -- A full buffered channel: the cancelled sender's value never enters.
        local b = lunet.channel(1)
        b:send(1)
        local s1 = lunet.spawn(function() b:send(2) end)
        local s2 = lunet.spawn(function() b:send(3) end)
        s1:cancel()
        s1:join()
        assert.equal(1, b:recv())
        assert.equal(3, b:recv())
        s2:join()
        assert.equal(0, #b)
      end)
    end)

    it("in send after its value was taken still returns true: the value is delivered once", function()
      H.run(function()
        local ch = lunet.channel()
        local r
        local s = lunet.spawn(function()
          r = pack(ch:send("once"))
          lunet.sleep(0) -- the cancellation is raised here
          r.after = true
        end)
        assert.equal("once", ch:recv()) -- the sender is woken with true ...
        s:cancel() -- ... before it runs
        assert.same({ n = 2, false, "cancelled" }, pack(s:join()))
        assert.same({ n = 1, true }, r)
        assert.same({ n = 2, nil, "timeout" }, pack(ch:recv(1)))
      end)
    end)

    it("in recv after a value was handed to it still gets the value", function()
      H.run(function()
        local ch = lunet.channel()
        local got
        local r = lunet.spawn(function()
          got = ch:recv()
          lunet.sleep(0)
        end)
        ch:send("mine")
        r:cancel()
        assert.same({ n = 2, false, "cancelled" }, pack(r:join()))
        assert.equal("mine", got)
      end)
    end)

    it("in recv is taken out of the queue: the next value goes to the next receiver", function()
      H.run(function()
        local ch = lunet.channel()
        local got = {}
        local a = lunet.spawn(receiver(ch, got))
        local b = lunet.spawn(receiver(ch, got))
        a:cancel()
        ch:send("v")
        b:join()
        assert.same({ pack("v") }, got)
      end)
    end)
  end)

  it("delivers exactly the values whose send returned true, once each, under timeouts and cancellations", function()
    for _, cap in ipairs({ 0, 1, 4 }) do
      local seed = 12345 + cap
      local function rnd(n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n
      end
      local sent, failed, got = {}, {}, {}
      H.run(function()
        local ch = lunet.channel(cap)
        local tasks = {}
        for p = 1, 20 do
          tasks[#tasks + 1] = lunet.spawn(function()
            for i = 1, 20 do
              local v = p * 1000 + i
              local ms = rnd(3) == 0 and rnd(3) or nil
              -- A cancellation can land between the send and the next line:
              -- mark the value first, settle it after.
              failed[v] = "pending"
              local ok = ch:send(v, ms)
              failed[v] = nil
              if ok then sent[v] = true else failed[v] = true end
              if rnd(4) == 0 then lunet.sleep(rnd(2)) end
            end
          end)
        end
        for _ = 1, 8 do
          tasks[#tasks + 1] = lunet.spawn(function()
            while true do
              local v = ch:recv(rnd(2) == 0 and rnd(4) or nil)
              if v then
                assert(got[v] == nil, "value received twice: " .. v)
                got[v] = true
              end
              if rnd(5) == 0 then lunet.sleep(0) end
            end
          end)
        end
        for _ = 1, 30 do
          lunet.sleep(rnd(2))
          local t = tasks[rnd(#tasks) + 1]
          t:cancel()
        end
        lunet.sleep(10)
        for _, t in ipairs(tasks) do t:cancel() end
        for _, t in ipairs(tasks) do t:join() end
        -- Drain what is still buffered.
        while true do
          local v = ch:recv(0)
          if v == nil then break end
          assert(got[v] == nil, "value received twice: " .. v)
          got[v] = true
        end
      end)
      local n_sent, n_failed, n_cancelled = 0, 0, 0
      for v in pairs(sent) do
        assert(got[v], "value sent but never received: " .. v)
        n_sent = n_sent + 1
      end
      for v, how in pairs(failed) do
        -- Timed out, or cancelled in the send ("pending"): nothing delivered.
        assert(not got[v], "a failed send delivered its value: " .. v)
        if how == "pending" then n_cancelled = n_cancelled + 1 else n_failed = n_failed + 1 end
      end
      for v in pairs(got) do assert(sent[v], "received a value whose send did not succeed: " .. v) end
      -- The run exercised every path.
      assert(n_sent > 0 and n_failed > 0 and n_cancelled > 0,
        ("cap %d: %d sent, %d timed out, %d cancelled in send"):format(cap, n_sent, n_failed, n_cancelled))
    end
  end)

  it("raises for bad capacities, bad times and values that are not channels", function()
    raises("lunet.channel expects a whole number from 0", lunet.channel, -1)
    raises("lunet.channel expects a whole number from 0", lunet.channel, 1.5)
    raises("lunet.channel expects a whole number from 0", lunet.channel, 0 / 0)
    raises("lunet.channel expects a whole number (got string)", lunet.channel, "3")
    local ch = lunet.channel(1)
    raises("channel:len expects a channel (got number)", ch.len, 1)
    raises("channel:close expects a channel (got table)", ch.close, {})
    H.run(function()
      raises("channel:recv: time must be a number >= 0", ch.recv, ch, -1)
      raises("channel:send expects a time in milliseconds", ch.send, ch, 1, "x")
      raises("channel:recv expects a channel (got no value)", ch.recv)
    end)
  end)

  it("is freed with parked waiters that then time out", function()
    H.run(function()
      local r = pack(lunet.channel():recv(2))
      assert.same({ n = 2, nil, "timeout" }, r)
      collectgarbage()
      collectgarbage()
    end)
  end)
end)

describe("lunet.semaphore", function()
  it("lets n holders in and hands released permits over in FIFO order", function()
    H.run(function()
      local sem = lunet.semaphore(2)
      assert.is_true(sem:acquire())
      assert.is_true(sem:acquire())
      assert.equal(0, sem:available())
      local order = {}
      local ts = {}
      for i = 1, 3 do
        ts[i] = lunet.spawn(function()
          assert.is_true(sem:acquire())
          order[#order + 1] = i
        end)
      end
      sem:release()
      sem:release()
      -- A newcomer cannot overtake the waiters: the permits went to them.
      assert.same({ n = 2, nil, "timeout" }, pack(sem:acquire(0)))
      lunet.sleep(0)
      assert.same({ 1, 2 }, order)
      sem:release()
      ts[3]:join()
      assert.same({ 1, 2, 3 }, order)
      -- Two permits are held (by the last two waiters): two releases.
      sem:release()
      sem:release()
      assert.equal(2, sem:available())
      raises("no permit is held", sem.release, sem)
    end)
  end)

  it("raises on a release without a matching acquire", function()
    local sem = lunet.semaphore(1)
    raises("semaphore:release: no permit is held", sem.release, sem)
    H.run(function()
      sem:acquire()
      sem:release()
      raises("semaphore:release: no permit is held", sem.release, sem)
      assert.equal(1, sem:available())
    end)
  end)

  it("times out, honours deadlines, and a cancelled waiter takes no permit", function()
    H.run(function()
      local sem = lunet.semaphore(1)
      sem:acquire()
      assert.same({ n = 2, nil, "timeout" }, pack(sem:acquire(2)))
      assert.same({ n = 2, nil, "timeout" }, pack(lunet.deadline(2, function() return sem:acquire() end)))
      local w = lunet.spawn(function() sem:acquire() end)
      local got
      local w2 = lunet.spawn(function() got = sem:acquire() end)
      w:cancel()
      sem:release()
      w2:join()
      assert.is_true(got)
      assert.same({ n = 2, false, "cancelled" }, pack(w:join()))
      sem:release()
      assert.equal(1, sem:available())
    end)
  end)

  it("raises for bad counts", function()
    raises("lunet.semaphore expects a whole number from 1", lunet.semaphore, 0)
    raises("lunet.semaphore expects a whole number from 1", lunet.semaphore, -2)
    raises("lunet.semaphore expects a whole number (got no value)", lunet.semaphore)
    H.run(function()
      raises("semaphore:acquire expects a semaphore (got userdata)", lunet.semaphore(1).acquire, lunet.channel())
    end)
  end)
end)

describe("lunet.waitgroup", function()
  it("wakes every waiter when the counter reaches zero", function()
    H.run(function()
      local wg = lunet.waitgroup()
      assert.is_true(wg:wait()) -- zero: at once
      wg:add(3)
      local woke = {}
      local ts = {}
      for i = 1, 2 do
        ts[i] = lunet.spawn(function()
          local r = wg:wait()
          woke[#woke + 1] = i .. tostring(r)
        end)
      end
      for _ = 1, 3 do
        lunet.spawn(function() lunet.sleep(1); wg:done() end)
      end
      ts[1]:join()
      ts[2]:join()
      assert.same({ "1true", "2true" }, woke)
      assert.equal(0, wg:count())
      wg:add(2)
      wg:add(-2)
      assert.is_true(wg:wait())
    end)
  end)

  it("raises when the counter would go below zero", function()
    local wg = lunet.waitgroup()
    raises("waitgroup:done: the counter would go below zero", wg.done, wg)
    wg:add()
    raises("waitgroup:add: the counter would go below zero", wg.add, wg, -2)
    assert.equal(1, wg:count())
    raises("waitgroup:add expects a whole number", wg.add, wg, 0.5)
    wg:done()
  end)

  it("times out and is cancellable", function()
    H.run(function()
      local wg = lunet.waitgroup()
      wg:add(1)
      assert.same({ n = 2, nil, "timeout" }, pack(wg:wait(2)))
      assert.same({ n = 2, nil, "timeout" }, pack(lunet.deadline(2, function() return wg:wait() end)))
      local t = lunet.spawn(function() wg:wait() end)
      t:cancel()
      assert.same({ n = 2, false, "cancelled" }, pack(t:join()))
      wg:done()
    end)
  end)
end)

describe("lunet.wait_any", function()
  it("returns the index of the first ready item at once", function()
    H.run(function()
      local done = lunet.spawn(function() end)
      local live = lunet.spawn(function() lunet.sleep(60000) end)
      local empty, full = lunet.channel(1), lunet.channel(1)
      full:send(1)
      assert.equal(3, lunet.wait_any({ live, empty, done, full }))
      assert.equal(2, lunet.wait_any({ empty, full, done }))
      local closed = lunet.channel()
      closed:close()
      assert.equal(2, lunet.wait_any({ live, closed }))
      live:cancel()
    end)
  end)

  it("waits for a task to end or a channel to become ready", function()
    H.run(function()
      local ch = lunet.channel()
      local t = lunet.spawn(function() lunet.sleep(3) end)
      assert.equal(2, lunet.wait_any({ ch, t }))
      -- A sender parked on a rendezvous channel makes it ready.
      local other = lunet.channel(1)
      local s = lunet.spawn(function() lunet.sleep(1); ch:send("v") end)
      assert.equal(2, lunet.wait_any({ other, ch, ch }))
      assert.equal("v", ch:recv())
      s:join()
      lunet.spawn(function() lunet.sleep(1); other:send(1) end)
      assert.equal(1, lunet.wait_any({ other, ch }))
      assert.equal(1, other:recv())
    end)
  end)

  it("returns the channel's index when it is closed while waiting", function()
    H.run(function()
      local a, b = lunet.channel(), lunet.channel()
      lunet.spawn(function() lunet.sleep(1); b:close() end)
      assert.equal(2, lunet.wait_any({ a, b }))
      assert.same({ n = 2, nil, "closed" }, pack(b:recv()))
    end)
  end)

  it("times out, honours deadlines and cancellation, and leaves nothing watching", function()
    H.run(function()
      local ch = lunet.channel(1)
      local t = lunet.spawn(function() lunet.sleep(60000) end)
      assert.same({ n = 2, nil, "timeout" }, pack(lunet.wait_any({ ch, t }, 2)))
      assert.same({ n = 2, nil, "timeout" }, pack(lunet.deadline(2, function() return lunet.wait_any({ t }) end)))
      local w = lunet.spawn(function() lunet.wait_any({ ch, t }) end)
      w:cancel()
      assert.same({ n = 2, false, "cancelled" }, pack(w:join()))
      -- The ended waits watch nothing any more: these touch no freed wait.
      ch:send(1)
      t:cancel()
      t:join()
      assert.equal(1, ch:recv())
    end)
  end)

  it("does not count as a join: an unjoined task's error is still reported", function()
    local reported = {}
    lunet.on_error(function(err) reported[#reported + 1] = err end)
    H.run(function()
      local t = lunet.spawn(function() lunet.sleep(1); error("seen", 0) end)
      assert.equal(1, lunet.wait_any({ t }))
      assert.same({ n = 2, false, "seen" }, pack(t:join()))
    end)
    lunet.on_error(nil)
    assert.same({ "seen" }, reported)
  end)

  it("raises for an empty list and for items that are not tasks or channels", function()
    H.run(function()
      raises("lunet.wait_any expects a non-empty list", lunet.wait_any, {})
      raises("lunet.wait_any expects a list of tasks and channels (got no value)", lunet.wait_any)
      raises("lunet.wait_any: item 2 is not a task or a channel (got userdata)", lunet.wait_any,
        { lunet.channel(), lunet.semaphore(1) })
      raises("lunet.wait_any: item 1 is not a task or a channel (got number)", lunet.wait_any, { 1 })
      raises("lunet.wait_any: time must be a number >= 0", lunet.wait_any, { lunet.channel() }, -1)
    end)
  end)
end)

describe("lunet.group", function()
  it("waits for every child and returns true when all succeed", function()
    H.run(function()
      local g = lunet.group()
      local done = {}
      for i = 1, 5 do
        local t = g:spawn(function(x) lunet.sleep(x); done[#done + 1] = x; return x end, 6 - i)
        assert.equal("userdata", type(t))
      end
      assert.equal(5, g:size())
      assert.same({ n = 1, true }, pack(g:wait()))
      assert.equal(5, #done)
      assert.equal(0, g:size())
      assert.same({ n = 1, true }, pack(g:wait())) -- nothing left: at once
    end)
  end)

  it("returns the first failure and cancels the other children", function()
    local reported = 0
    lunet.on_error(function() reported = reported + 1 end)
    H.run(function()
      local g = lunet.group()
      local slow = g:spawn(function() lunet.sleep(60000) end)
      local bad = g:spawn(function() lunet.sleep(1); error("first", 0) end)
      local r = pack(g:wait())
      assert.equal(3, r.n)
      assert.is_false(r[1])
      assert.equal("first", r[2])
      assert.is_true(r[3] == bad)
      assert.equal("cancelled", slow:status())
      -- Cancelled by the failure: later spawns are refused.
      assert.same({ n = 2, nil, "cancelled" }, pack(g:spawn(function() end)))
    end)
    lunet.on_error(nil)
    assert.equal(0, reported, "a failure a waiter receives is not reported")
  end)

  it("g:cancel cancels every child; wait then returns false, 'cancelled'", function()
    H.run(function()
      local g = lunet.group()
      local a = g:spawn(function() lunet.sleep(60000) end)
      local b = g:spawn(function() lunet.sleep(60000) end)
      g:cancel()
      assert.same({ n = 2, false, "cancelled" }, pack(g:wait()))
      assert.equal("cancelled", a:status())
      assert.equal("cancelled", b:status())
    end)
  end)

  it("a wait that times out or is cancelled ends the group: no child outlives it", function()
    H.run(function()
      local g = lunet.group()
      local c = g:spawn(function() lunet.sleep(60000) end)
      assert.same({ n = 2, nil, "timeout" }, pack(g:wait(2)))
      c:join()
      assert.equal("cancelled", c:status())
      local gd = lunet.group()
      local cd = gd:spawn(function() lunet.sleep(60000) end)
      assert.same({ n = 2, nil, "timeout" }, pack(lunet.deadline(2, function() return gd:wait() end)))
      cd:join()
      assert.equal("cancelled", cd:status())
      local g2 = lunet.group()
      local c2 = g2:spawn(function() lunet.sleep(60000) end)
      local w = lunet.spawn(function() g2:wait() end)
      w:cancel()
      w:join()
      c2:join()
      assert.equal("cancelled", c2:status())
    end)
  end)

  it("the children of a group are cancelled when the task that created it ends", function()
    H.run(function()
      local child
      local owner = lunet.spawn(function()
        local g = lunet.group()
        child = g:spawn(function() lunet.sleep(60000) end)
        lunet.sleep(1)
        error("owner fails", 0)
      end)
      owner:join()
      child:join()
      assert.equal("cancelled", child:status())
    end)
  end)

  it("a child cannot wait for its own group", function()
    H.run(function()
      local g = lunet.group()
      local err
      g:spawn(function()
        local ok, e = pcall(g.wait, g)
        err = not ok and e
      end)
      g:wait()
      assert.matches("group:wait: a child cannot wait for its own group$", err)
    end)
  end)

  it("raises for bad arguments", function()
    local g = lunet.group()
    raises("group:spawn expects a function (got no value)", g.spawn, g)
    raises("group:spawn expects a group (got table)", g.spawn, {}, function() end)
    raises("group.wait must be called from coroutine", g.wait, g)
  end)
end)

describe("sync primitives and the registry", function()
  it("leave no wait and no reference behind", function()
    local pending, balance = lunet._pending(), H.trace_balance()
    H.run(function()
      local ch = lunet.channel(2)
      local sem = lunet.semaphore(1)
      local wg = lunet.waitgroup()
      local g = lunet.group()
      for i = 1, 50 do
        g:spawn(function()
          wg:add(1)
          local held = sem:acquire(5)
          ch:send(i, 2)
          ch:recv(1)
          lunet.wait_any({ ch }, 1)
          if held then sem:release() end
          wg:done()
        end)
      end
      g:wait()
      wg:wait(1)
      ch:close()
    end)
    collectgarbage()
    collectgarbage()
    assert.equal(pending, lunet._pending())
    if balance then assert.equal(balance, H.trace_balance()) end
  end)
end)
