-- Signal handling shared by the lunet benchmark servers (bench/net.sh):
-- SIGUSR1 prints the Lua heap after a full collection (the idle-connection
-- memory measurement reads it), SIGTERM exits.
--   require("bench.server_signals")()      (lunet-run from the repository root)
local lunet = require("lunet")
local signal = require("lunet.signal")

return function()
  lunet.spawn(function()
    while signal.wait("USR1") do
      collectgarbage("collect")
      print(("lua heap KiB %.1f"):format(collectgarbage("count")))
      io.stdout:flush()
    end
  end)
  lunet.spawn(function()
    signal.wait("TERM")
    os.exit(0, true)
  end)
end
