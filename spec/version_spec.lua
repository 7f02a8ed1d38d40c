-- The release version lives in one place, the Cargo workspace (Cargo.toml's
-- [workspace.package]); everything else that names it is generated from it or
-- checked here.
local H = require("spec.helper")
local gen = dofile("scripts/gen-rockspecs.lua")

local VERSION = gen.version()
local read = gen.read

describe("the version", function()
  it("is a release number in Cargo.toml", function()
    assert.matches("^%d+%.%d+%.%d+$", VERSION)
  end)

  it("is every module's _VERSION", function()
    local modules = { "lunet", "lunet.socket", "lunet.udp", "lunet.fs", "lunet.signal", "lunet.test", "lunet.process" }
    for _, d in ipairs({ "sqlite3", "mysql", "postgres" }) do
      if io.open(H.build .. "/lunet/" .. d .. ".so") then modules[#modules + 1] = "lunet." .. d end
    end
    -- Every submodule lunet.so exports is in the list above.
    local rc, out = H.sh("nm -D --defined-only " .. H.shquote(H.build .. "/lunet.so"))
    assert.equal(0, rc)
    local listed = {}
    for _, m in ipairs(modules) do listed[m] = true end
    for sym in out:gmatch("luaopen_(lunet[%w_]*)") do
      local m = sym:gsub("^lunet_", "lunet.")
      assert.is_true(listed[m] ~= nil, m .. " is not checked here")
    end
    for _, m in ipairs(modules) do
      assert.equal(VERSION, require(m)._VERSION, m)
    end
  end)

  it("is what lunet-run --version prints", function()
    for _, opt in ipairs({ "--version", "-v" }) do
      local rc, out, err = H.sh(H.build .. "/lunet-run " .. opt)
      assert.equal(0, rc, err)
      assert.equal("lunet-run " .. VERSION .. "\n", out)
    end
  end)

  it("has the first entry of CHANGELOG.md", function()
    local first = read("CHANGELOG.md"):match("\n## ([^\n]+)")
    assert.is_not_nil(first, "CHANGELOG.md has no ## entry")
    assert.equal(VERSION, first:match("^(%S+)"))
  end)

  it("has a versioned rockspec for every scm-1 rockspec, generated from it", function()
    local n = 0
    for scm, versioned in pairs(gen.files(".", VERSION)) do
      n = n + 1
      local f = io.open(versioned, "rb")
      assert.is_not_nil(f, versioned .. " is missing (make rockspecs)")
      local have = f:read("*a")
      f:close()
      assert.equal(gen.generate(read(scm), VERSION), have, versioned .. " is stale (make rockspecs)")
    end
    assert.equal(5, n) -- lunet, the three drivers, lunet-http
  end)

  it("is the one the README names", function()
    local readme, n = read("README.md"), 0
    for _, pattern in ipairs({ "lunet%-[%a%d]*%-?(%d+%.%d+%.%d+)%-1%.linux[%w_%-]*%.rock", "lunet%-(%d+%.%d+%.%d+)%-1%.rockspec",
        "%-(%d+%.%d+%.%d+)%-1%.rockspec", '_VERSION == "(%d+%.%d+%.%d+)"', "lunet%-run (%d+%.%d+%.%d+)",
        "rocks%-5%.1/lunet/(%d+%.%d+%.%d+)%-1/" }) do
      for v in readme:gmatch(pattern) do
        n = n + 1
        assert.equal(VERSION, v, "README.md names version " .. v .. " (" .. pattern .. ")")
      end
    end
    assert.is_true(n >= 8, "README.md names the version only " .. n .. " times")
  end)

  it("pins the versioned rockspecs' source and the drivers' core", function()
    local spec = gen.generate(read("rockspecs/lunet-sqlite3-scm-1.rockspec"), "9.8.7")
    assert.matches('\nversion = "9.8.7%-1"\n', spec)
    assert.matches('\n  tag = "v9.8.7",\n', spec)
    assert.matches('\n  "lunet == 9.8.7",\n', spec)
    assert.is_nil(spec:find("scm", 1, true))
  end)
end)
