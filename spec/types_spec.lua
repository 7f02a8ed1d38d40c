-- The LuaLS annotations in types/ against the real modules, and docs/API.md
-- against the annotations.
--
-- For every module the build provides (found by the `luaopen_*` entry points
-- in its libraries), the annotations must name exactly the public functions
-- (not starting with `_`) the loaded module exports, mark as async exactly
-- the ones that yield, and name only methods its handles really have. A
-- module with an annotation file whose library is not in this build (a
-- driver that was not built) is reported as pending, by name. A module in the
-- build without an annotation file fails.
local H = require("spec.helper")
local gen = dofile("scripts/gen-docs.lua")

-- The core wraps every function that may yield in a Lua closure made by its
-- yield guard (lunet-abi's GUARD_LUA, loaded under this chunk name); nothing
-- else in lunet is a Lua function, so this tells which functions yield.
local GUARD_SOURCE = "=lunet.guard"

-- Guarded C functions yield, and so do the functions of lunet.socket's Lua
-- side (TLS connects and starttls wait for a handshake).
local function yields(f)
  local src = debug.getinfo(f, "S").source
  return src == GUARD_SOURCE or src == "=lunet.socket"
end

local function is_public(name)
  return type(name) == "string" and name:sub(1, 1) ~= "_"
end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- The modules the build at `build` provides: one per `luaopen_lunet*` symbol
-- in its libraries (`lunet.so`, `lunet/*.so`); `luaopen_lunet_x` is `lunet.x`.
local function built_modules(build)
  local set = {}
  local rc, out = H.sh(("ls -1 %s/*.so %s/lunet/*.so 2>/dev/null"):format(H.shquote(build), H.shquote(build)))
  assert(rc ~= nil, "cannot list " .. build)
  for path in out:gmatch("[^\n]+") do
    local bytes = assert(read_all(path), path)
    -- Symbol names are NUL-terminated strings in the dynamic string table.
    for sym in bytes:gmatch("%z(luaopen_lunet[%w_]*)") do
      local rest = sym:match("^luaopen_lunet_(.+)$")
      set[rest and ("lunet." .. rest) or "lunet"] = path
    end
  end
  return set
end

--- The method tables of a loaded module's handles: registry metatables whose
-- `__index` is the module itself (`whole`: every function is a method), or a
-- table holding only the module's own functions, or a table of functions of
-- the handle's own under a metatable named `<module>.<kind>` that is not
-- itself a module (`modules`: set of module names), such as the core's
-- `lunet.task`.
local function method_tables(mod, name, modules)
  local found = {}
  for key, mt in pairs(debug.getregistry()) do
    if type(key) == "string" and type(mt) == "table" then
      local idx = rawget(mt, "__index")
      if idx == mod then
        found[#found + 1] = { name = key, methods = mod, whole = true }
      elseif type(idx) == "table" then
        local n, same, funcs = 0, true, true
        for k, v in pairs(idx) do
          n = n + 1
          if type(v) ~= "function" then funcs = false end
          if type(v) ~= "function" or rawget(mod, k) ~= v then same = false end
        end
        local kind = name and key:sub(1, #name + 1) == name .. "." and key:sub(#name + 2)
        if n > 0 and same then
          found[#found + 1] = { name = key, methods = idx, whole = false }
        elseif n > 0 and funcs and kind and kind:match("^[%w_]+$") and not (modules and modules[key]) then
          found[#found + 1] = { name = key, methods = idx, whole = false }
        end
      end
    end
  end
  table.sort(found, function(a, b) return a.name < b.name end)
  return found
end

--- Compares one module's annotations (`unit` of `model`) with the loaded
-- module `mod` and its handles' method tables. Returns the problems found.
local function compare(model, unit, mod, tables)
  local problems = {}
  local function add(fmt, ...) problems[#problems + 1] = fmt:format(...) end
  local name_of = unit.module

  local annotated = {}
  for _, fn in ipairs(gen.members(model, unit.class, false)) do annotated[fn.name] = fn end
  local fields = {}
  for _, f in ipairs(unit.class.fields) do fields[f.name] = f end

  for name, v in pairs(mod) do
    if is_public(name) then
      if type(v) == "function" then
        local fn = annotated[name]
        if not fn then
          add("%s.%s is exported but not annotated", name_of, name)
        elseif fn.async ~= yields(v) then
          add("%s.%s %s, but its annotation %s ---@async (%s:%d)", name_of, name,
            yields(v) and "yields" or "does not yield", fn.async and "has" or "lacks", fn.file, fn.line)
        end
      elseif not fields[name] then
        add("%s.%s (a %s) is exported but not annotated as a ---@field", name_of, name, type(v))
      end
    end
  end
  for name, fn in pairs(annotated) do
    if not is_public(name) then
      add("%s.%s is internal and must not be annotated (%s:%d)", name_of, name, fn.file, fn.line)
    elseif type(rawget(mod, name)) ~= "function" then
      add("%s.%s is annotated (%s:%d) but the module has no such function", name_of, name, fn.file, fn.line)
    end
  end
  for name in pairs(fields) do
    local v = rawget(mod, name)
    if v == nil or type(v) == "function" then
      add("%s.%s is annotated as a field but the module has no such value", name_of, name)
    end
  end

  -- Methods of the module's handle types.
  local methods, method_names = {}, {}
  for _, class in ipairs(gen.handle_classes(model, unit)) do
    for _, fn in ipairs(gen.members(model, class, true)) do
      methods[#methods + 1] = { class = class, fn = fn }
      method_names[fn.name] = true
    end
  end
  if #methods > 0 and #tables == 0 then
    add("%s annotates handle methods but no handle metatable of the module was found", name_of)
  end
  for _, m in ipairs(methods) do
    local f
    for _, t in ipairs(tables) do
      -- The handle type's own table first (several types may share a name).
      if t.name == m.class.name:lower() then f = rawget(t.methods, m.fn.name) end
    end
    for _, t in ipairs(tables) do
      f = f or rawget(t.methods, m.fn.name)
    end
    if #tables > 0 and type(f) ~= "function" then
      add("%s:%s is annotated (%s:%d) but %s handles have no such method", m.class.name, m.fn.name, m.fn.file, m.fn.line, name_of)
    elseif f and m.fn.async ~= yields(f) then
      add("%s:%s %s, but its annotation %s ---@async (%s:%d)", m.class.name, m.fn.name,
        yields(f) and "yields" or "does not yield", m.fn.async and "has" or "lacks", m.fn.file, m.fn.line)
    end
  end
  -- A separate method table is a choice of which functions are methods:
  -- each of them must be annotated. (When `__index` is the module itself,
  -- every function is a method; only the meaningful ones are annotated.)
  for _, t in ipairs(tables) do
    if not t.whole then
      for name, v in pairs(t.methods) do
        if is_public(name) and type(v) == "function" and not method_names[name] then
          add("handles of %s (metatable %q) have a method %s that no handle type annotates", name_of, t.name, name)
        end
      end
    end
  end
  table.sort(problems)
  return problems
end

--- Built modules without an annotation file.
local function unannotated(model, built)
  local typed, out = {}, {}
  for _, unit in ipairs(model.modules) do typed[unit.module] = true end
  for name in pairs(built) do
    if not typed[name] then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

--- A fresh directory holding `files` (relative path -> contents).
local function temp_tree(files)
  local rc, out = H.sh("mktemp -d")
  assert(rc == 0, "mktemp failed")
  local dir = out:gsub("%s+$", "")
  for rel, text in pairs(files) do
    local sub = (dir .. "/" .. rel):match("^(.*)/")
    assert(H.sh("mkdir -p " .. H.shquote(sub)) == 0)
    local f = assert(io.open(dir .. "/" .. rel, "wb"))
    f:write(text)
    f:close()
  end
  return dir
end

local function load_error(files)
  local dir = temp_tree(files)
  local ok, err = pcall(gen.load, dir .. "/types")
  H.sh("rm -rf " .. H.shquote(dir))
  assert.is_false(ok, "the annotations were accepted")
  return err
end

local model = gen.load("types")
local built = built_modules(H.build)
local module_names = {}
for name in pairs(built) do module_names[name] = true end
for _, unit in ipairs(model.modules) do module_names[unit.module] = true end

describe("type annotations", function()
  it("exist for every module in the build", function()
    assert.is_not_nil(built["lunet"], "no luaopen_lunet found under " .. H.build)
    assert.same({}, unannotated(model, built))
  end)

  for _, unit in ipairs(model.modules) do
    if built[unit.module] then
      it(("match what %s exports"):format(unit.module), function()
        local mod = require(unit.module)
        assert.same({}, compare(model, unit, mod, method_tables(mod, unit.module, module_names)))
      end)
    elseif pcall(require, unit.module) then
      -- Only a module that cannot be loaded may be skipped.
      it(("are checked for %s, which loads"):format(unit.module), function()
        error(unit.module .. " loads, but no luaopen symbol for it was found under " .. H.build)
      end)
    else
      pending(("%s: no library in %s provides it (not built), annotations not checked"):format(unit.module, H.build))
    end
  end

  it("are the source of docs/API.md (regenerated output is identical)", function()
    local tmp = os.tmpname()
    local rc, _, err = H.sh(("luajit scripts/gen-docs.lua types %s"):format(H.shquote(tmp)))
    local fresh = read_all(tmp)
    os.remove(tmp)
    assert.equal(0, rc, err)
    local committed = read_all("docs/API.md")
    assert.is_not_nil(committed, "docs/API.md is missing: run `make docs`")
    assert.is_true(fresh == committed, "docs/API.md is out of date: run `make docs` and commit it")
  end)
end)

describe("the annotation checks catch", function()
  local fake_types = {
    ["types/lunet/fake.lua"] = table.concat({
      "---@meta lunet.fake",
      "",
      "--- A module for testing the checks.",
      "---@class lunet.fake",
      "local fake = {}",
      "",
      "--- Waits.",
      "---@async",
      "function fake.wait() end",
      "",
      "--- Does something.",
      "---@param x number a number",
      "---@return string s a string",
      "function fake.plain(x) end",
      "",
      "--- A handle.",
      "---@class lunet.fake.Handle",
      "local h = {}",
      "",
      "--- Waits, as a method.",
      "---@async",
      "function h:wait() end",
      "",
      "return fake",
      "",
    }, "\n"),
  }

  local function fake_model()
    local dir = temp_tree(fake_types)
    local m = gen.load(dir .. "/types")
    H.sh("rm -rf " .. H.shquote(dir))
    return m, m.modules[1]
  end

  -- Stand-ins for a C function and a yielding (guarded) one.
  local plain_fn = string.len
  local guarded_fn = assert(loadstring("return function() end", GUARD_SOURCE))()

  it("nothing when annotations and module agree", function()
    local m, unit = fake_model()
    local mod = { wait = guarded_fn, plain = plain_fn, _internal = plain_fn }
    local tables = { { name = "fake", methods = mod, whole = true } }
    assert.same({}, compare(m, unit, mod, tables))
  end)

  it("an exported function without annotation", function()
    local m, unit = fake_model()
    local mod = { wait = guarded_fn, plain = plain_fn, extra = plain_fn }
    local p = compare(m, unit, mod, { { name = "fake", methods = mod, whole = true } })
    assert.same({ "lunet.fake.extra is exported but not annotated" }, p)
  end)

  it("an annotation naming a function that does not exist", function()
    local m, unit = fake_model()
    local mod = { wait = guarded_fn }
    local p = compare(m, unit, mod, { { name = "fake", methods = mod, whole = true } })
    assert.equal(1, #p)
    assert.matches("lunet.fake.plain is annotated (.-) but the module has no such function", p[1])
  end)

  it("a wrong ---@async, on functions and on methods", function()
    local m, unit = fake_model()
    local mod = { wait = plain_fn, plain = guarded_fn }
    local p = compare(m, unit, mod, { { name = "fake", methods = mod, whole = true } })
    assert.equal(3, #p)
    assert.matches("^lunet.fake.Handle:wait does not yield, but its annotation has", p[1])
    assert.matches("^lunet.fake.plain yields, but its annotation lacks", p[2])
    assert.matches("^lunet.fake.wait does not yield, but its annotation has", p[3])
  end)

  it("an annotated method the handles lack, and a method nobody annotated", function()
    local m, unit = fake_model()
    local mod = { wait = guarded_fn, plain = plain_fn }
    local p = compare(m, unit, mod, { { name = "fake.h", methods = { plain = plain_fn }, whole = false } })
    assert.equal(2, #p)
    assert.matches("handles of lunet.fake %(metatable \"fake.h\"%) have a method plain", p[1])
    assert.matches("^lunet.fake.Handle:wait is annotated .- but lunet.fake handles have no such method", p[2])
    local q = compare(m, unit, mod, {})
    assert.same({ "lunet.fake annotates handle methods but no handle metatable of the module was found" }, q)
  end)

  it("a built module without an annotation file", function()
    assert.same({ "lunet.nonesuch" }, unannotated(model, { lunet = "x", ["lunet.nonesuch"] = "y" }))
  end)

  it("annotations the parser does not understand", function()
    local base = fake_types["types/lunet/fake.lua"]
    assert.matches("unknown or unsupported annotation ---@deprecated",
      load_error({ ["types/lunet/fake.lua"] = base:gsub("%-%-%-@async\nfunction fake", "---@deprecated\nfunction fake", 1) }))
    assert.matches("parameter 1 is `x` but its ---@param names `y`",
      load_error({ ["types/lunet/fake.lua"] = base:gsub("@param x", "@param y", 1) }))
    assert.matches("plain has no annotations",
      load_error({ ["types/lunet/fake.lua"] = base:gsub("%-%-%- Does something.\n.-\nfunction fake.plain", "function fake.plain") }))
    assert.matches("this file's path makes it lunet.fake",
      load_error({ ["types/lunet/fake.lua"] = base:gsub("@meta lunet.fake", "@meta lunet.other", 1) }))
  end)

  it("docs that no longer match the annotations", function()
    local dir = temp_tree({})
    assert.equal(0, (H.sh(("cp -R types %s/types"):format(H.shquote(dir)))))
    local path = dir .. "/types/lunet/signal.lua"
    local text = read_all(path):gsub("Waiting for process signals", "Waiting for signals", 1)
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
    local changed = gen.render(gen.load(dir .. "/types"))
    H.sh("rm -rf " .. H.shquote(dir))
    assert.is_true(changed ~= read_all("docs/API.md"))
    assert.matches("Waiting for signals", changed, 1, true)
  end)
end)
