-- scripts/gen-docs.lua: turns the LuaLS annotations in types/ into the API
-- reference docs/API.md, so the reference and the annotations editors read
-- can never say different things (spec/types_spec.lua regenerates the page and
-- compares it with the committed one).
--
--   luajit scripts/gen-docs.lua [types_dir [out_file]]    (defaults: types, docs/API.md)
--
-- Loaded with dofile() instead, it returns its parser and renderer (the spec
-- uses the parser to compare the annotations with the built modules).
--
-- The annotation files use a small, strict subset of the LuaLS syntax; any
-- line this parser does not understand is an error, so nothing written in
-- types/ is silently left out of the reference:
--
--   ---@meta lunet.socket          first line: the module the file describes
--                                  (it must match the file's path), or `_` for
--                                  a file of shared types that is not a module
--   --- text                       description lines, before any tag
--   ---@class Name[: Parent, ...]  then `local x = {}` (functions are declared
--                                  on x), or a blank line (a plain record type)
--   ---@field name[?] type text
--   ---@alias Name type            then a blank line
--   ---@async                      the function yields (suspends its coroutine)
--   ---@param name[?] type text    one per parameter, in signature order
--   ---@return type name text      one per returned value, in order
--   function x.name(a, b) end      a function of the class bound to x
--   function x:name(a) end         a method of it
--   return x                       last line of a module file: x's class is the
--                                  module, and must be named like the module
--
-- A type runs up to the first blank outside brackets, so `table<string, any>`
-- is one type. Plain `--` comments and blank lines end a block.

local M = {}

local function fail(file, line, msg)
  error(("%s:%d: %s"):format(file, line, msg), 0)
end

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

--- Splits the type expression at the start of `s` from the rest. An
--- `async fun(...): any...` (a callback that runs in a task, so it may wait,
--- and returns anything) is one type: neither `async ` nor `: ` ends it.
local function split_type(s)
  local depth = 0
  local from = s:match("^async fun%(") and #"async " + 1 or 1
  for i = from, #s do
    local c = s:sub(i, i)
    if c == "(" or c == "{" or c == "[" or c == "<" then
      depth = depth + 1
    elseif c == ")" or c == "}" or c == "]" or c == ">" then
      depth = depth - 1
    elseif depth == 0 and c:match("%s") and s:sub(i - 1, i - 1) ~= ":" then
      return s:sub(1, i - 1), trim(s:sub(i))
    end
  end
  return s, ""
end

local NAME = "[%a_][%w_]*"
local DOTTED = "[%a_][%w_%.]*"

--- Parses one tag line (without the leading `---@`) into a table, or fails.
local function parse_tag(file, line, text)
  local tag, rest = text:match("^(%a+)%s*(.*)$")
  if not tag then fail(file, line, "malformed annotation tag") end
  if tag == "class" then
    local name, parents = rest:match("^(" .. DOTTED .. ")%s*(.*)$")
    if not name then fail(file, line, "---@class needs a name") end
    local list = {}
    if parents ~= "" then
      local body = parents:match("^:%s*(.+)$")
      if not body then fail(file, line, "---@class: expected `: Parent` after the name") end
      for p in body:gmatch("[^,]+") do
        p = trim(p)
        if not p:match("^" .. DOTTED .. "$") then fail(file, line, "---@class: bad parent name " .. p) end
        list[#list + 1] = p
      end
    end
    return { tag = "class", name = name, parents = list }
  elseif tag == "field" or tag == "param" then
    local name, opt, after = rest:match("^(" .. NAME .. ")(%??)%s+(.+)$")
    if tag == "param" and not name then
      name, opt, after = rest:match("^(%.%.%.)()%s+(.+)$")
      opt = ""
    end
    if not name then fail(file, line, ("---@%s needs a name, a type and a description"):format(tag)) end
    local ty, desc = split_type(after)
    if desc == "" then fail(file, line, ("---@%s %s needs a description"):format(tag, name)) end
    return { tag = tag, name = name, optional = opt == "?", type = ty, desc = desc }
  elseif tag == "return" then
    local ty, after = split_type(rest)
    local name, desc = after:match("^(" .. NAME .. ")%s+(.+)$")
    if ty == "" or not name then fail(file, line, "---@return needs a type, a name and a description") end
    return { tag = "return", type = ty, name = name, desc = desc }
  elseif tag == "alias" then
    local name, ty = rest:match("^(" .. DOTTED .. ")%s+(.+)$")
    if not name then fail(file, line, "---@alias needs a name and a type") end
    return { tag = "alias", name = name, type = trim(ty) }
  elseif tag == "async" then
    if rest ~= "" then fail(file, line, "---@async takes nothing after it") end
    return { tag = "async" }
  end
  fail(file, line, "unknown or unsupported annotation ---@" .. tag)
end

--- The module name a file under `root` describes: types/lunet/socket.lua -> lunet.socket.
local function module_of_path(root, path)
  local rel = path:sub(#root + 2):gsub("%.lua$", "")
  return (rel:gsub("/", "."))
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then error(err, 0) end
  local s = f:read("*a")
  f:close()
  return s
end

--- Joins description lines into text: paragraphs separated by one empty line.
local function join_desc(lines)
  local out = table.concat(lines, "\n")
  out = out:gsub("\n\n+", "\n\n")
  return trim(out)
end

local function count_tags(block, tag)
  local n = 0
  for _, t in ipairs(block.tags) do
    if t.tag == tag then n = n + 1 end
  end
  return n
end

local function find_tag(block, tag)
  for _, t in ipairs(block.tags) do
    if t.tag == tag then return t end
  end
end

local function new_class(model, file, block, tag)
  if model.classes[tag.name] then
    fail(file, block.line, "class " .. tag.name .. " is declared twice")
  end
  local class = {
    name = tag.name,
    parents = tag.parents,
    desc = join_desc(block.desc),
    fields = {},
    functions = {},
    file = file,
    line = block.line,
  }
  for _, t in ipairs(block.tags) do
    if t.tag == "field" then
      class.fields[#class.fields + 1] = t
    elseif t.tag ~= "class" then
      fail(file, block.line, "---@" .. t.tag .. " does not belong in a ---@class block")
    end
  end
  model.classes[tag.name] = class
  model.class_order[#model.class_order + 1] = class
  return class
end

--- A block that is not followed by code: a record class or an alias.
local function standalone_block(model, ctx, block)
  local class, alias = find_tag(block, "class"), find_tag(block, "alias")
  if class and count_tags(block, "class") == 1 and not alias then
    local c = new_class(model, ctx.file, block, class)
    ctx.unit.classes[#ctx.unit.classes + 1] = c
  elseif alias and #block.tags == 1 then
    if model.aliases[alias.name] then fail(ctx.file, block.line, "alias " .. alias.name .. " is declared twice") end
    local a = { name = alias.name, type = alias.type, desc = join_desc(block.desc), file = ctx.file }
    model.aliases[alias.name] = a
    ctx.unit.aliases[#ctx.unit.aliases + 1] = a
  else
    fail(ctx.file, block.line, "annotation block is not attached to any code (only a ---@class or a ---@alias may stand alone)")
  end
end

local function function_block(model, ctx, block, line, loc, sep, fname, args)
  local class = ctx.locals[loc]
  if not class then fail(ctx.file, line, "function on `" .. loc .. "`, which is not a local bound to a ---@class") end
  if not block then fail(ctx.file, line, fname .. " has no annotations") end
  local fn = {
    name = fname,
    method = sep == ":",
    class = class,
    desc = join_desc(block.desc),
    params = {},
    returns = {},
    async = false,
    file = ctx.file,
    line = line,
  }
  if fn.desc == "" then fail(ctx.file, line, fname .. " has no description") end
  for _, t in ipairs(block.tags) do
    if t.tag == "param" then
      fn.params[#fn.params + 1] = t
    elseif t.tag == "return" then
      fn.returns[#fn.returns + 1] = t
    elseif t.tag == "async" then
      if fn.async then fail(ctx.file, line, "---@async given twice") end
      fn.async = true
    else
      fail(ctx.file, line, "---@" .. t.tag .. " does not belong on a function")
    end
  end
  local names = {}
  for a in args:gmatch("[^,]+") do names[#names + 1] = trim(a) end
  if #names ~= #fn.params then
    fail(ctx.file, line, ("%s has %d parameter(s) but %d ---@param"):format(fname, #names, #fn.params))
  end
  for i, n in ipairs(names) do
    if fn.params[i].name ~= n then
      fail(ctx.file, line, ("%s: parameter %d is `%s` but its ---@param names `%s`"):format(fname, i, n, fn.params[i].name))
    end
  end
  for _, other in ipairs(class.functions) do
    if other.name == fname then fail(ctx.file, line, class.name .. "." .. fname .. " is declared twice") end
  end
  class.functions[#class.functions + 1] = fn
end

--- Parses one annotation file into `model`.
local function parse_file(model, root, path)
  local text = read_file(path)
  local lines = {}
  for l in (text:gsub("\r\n", "\n") .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
  local meta = (lines[1] or ""):match("^%-%-%-@meta%s+(" .. DOTTED .. ")%s*$")
  if not meta then fail(path, 1, "the first line must be `---@meta <module name>` (or `---@meta _`)") end
  local unit = { file = path, module = nil, classes = {}, aliases = {} }
  if meta ~= "_" then
    local expected = module_of_path(root, path)
    if meta ~= expected then
      fail(path, 1, ("---@meta names %s but this file's path makes it %s"):format(meta, expected))
    end
    unit.module = meta
  end
  local ctx = { file = path, unit = unit, locals = {} }
  local block
  local returned = false
  for i = 2, #lines do
    local l = lines[i]
    if returned and trim(l) ~= "" then fail(path, i, "nothing may follow `return`") end
    if l:match("^%-%-%-") then
      block = block or { desc = {}, tags = {}, line = i }
      local tag = l:match("^%-%-%-@(.*)$")
      if tag then
        block.tags[#block.tags + 1] = parse_tag(path, i, tag)
      else
        local d = l:match("^%-%-%- (.*)$") or (l == "---" and "") or nil
        if not d then fail(path, i, "description lines start with `--- ` (three dashes and a blank)") end
        if #block.tags > 0 then fail(path, i, "description lines must come before the tags of their block") end
        block.desc[#block.desc + 1] = d
      end
    elseif trim(l) == "" or l:match("^%s*%-%-") then
      if block then standalone_block(model, ctx, block) end
      block = nil
    else
      local loc = l:match("^local%s+(" .. NAME .. ")%s*=%s*{%s*}%s*$")
      local floc, sep, fname, args = l:match("^function%s+(" .. NAME .. ")([%.:])(" .. NAME .. ")%s*%((.-)%)%s*end%s*$")
      local rloc = l:match("^return%s+(" .. NAME .. ")%s*$")
      if loc then
        local tag = block and find_tag(block, "class")
        if not tag or count_tags(block, "class") ~= 1 then
          fail(path, i, "`local " .. loc .. " = {}` must follow exactly one ---@class")
        end
        local class = new_class(model, path, block, tag)
        class.localname = loc
        ctx.locals[loc] = class
        unit.classes[#unit.classes + 1] = class
      elseif floc then
        function_block(model, ctx, block, i, floc, sep, fname, args)
      elseif rloc then
        if block then fail(path, i, "`return` takes no annotations") end
        if not unit.module then fail(path, i, "a `---@meta _` file returns nothing") end
        local class = ctx.locals[rloc]
        if not class then fail(path, i, "`return " .. rloc .. "`: not a local bound to a ---@class") end
        if class.name ~= unit.module then
          fail(path, i, ("the module's class is %s but must be named %s"):format(class.name, unit.module))
        end
        unit.class = class
        returned = true
      else
        fail(path, i, "unexpected code (only `local x = {}`, `function x.f(...) end`, `function x:m(...) end` and `return x`)")
      end
      block = nil
    end
  end
  if block then standalone_block(model, ctx, block) end
  if unit.module and not unit.class then fail(path, #lines, "a module file must end with `return <module table>`") end
  return unit
end

--- Every *.lua file under `dir`, sorted (byte order, so the output is stable).
local function list_files(dir)
  local p = assert(io.popen("find '" .. dir:gsub("'", "'\\''") .. "' -type f -name '*.lua' 2>/dev/null"))
  local files = {}
  for f in p:lines() do files[#files + 1] = f end
  p:close()
  table.sort(files)
  return files
end

--- Reads every annotation file under `root` (default "types").
-- Returns the model: `modules` (sorted by name; each with `module`, `class`,
-- `classes`, `aliases`, `file`), `shared` (the `---@meta _` files), and
-- `classes` / `aliases` by name. Raises `file:line: message` on any problem.
function M.load(root)
  root = (root or "types"):gsub("/+$", "")
  local model = { root = root, classes = {}, class_order = {}, aliases = {}, modules = {}, shared = {} }
  local files = list_files(root)
  if #files == 0 then error("no annotation files under " .. root, 0) end
  for _, path in ipairs(files) do
    local unit = parse_file(model, root, path)
    local list = unit.module and model.modules or model.shared
    list[#list + 1] = unit
  end
  for _, class in ipairs(model.class_order) do
    for _, p in ipairs(class.parents) do
      if not model.classes[p] then fail(class.file, class.line, ("%s inherits from %s, which no file declares"):format(class.name, p)) end
    end
  end
  table.sort(model.modules, function(a, b) return a.module < b.module end)
  return model
end

--- The functions (`methods` false) or methods (`methods` true) of a class,
-- inherited ones included: the parents' in their order, each replaced by the
-- class's own function of the same name, then the class's other functions.
function M.members(model, class, methods, seen)
  seen = seen or {}
  if seen[class.name] then error("inheritance cycle through " .. class.name, 0) end
  seen[class.name] = true
  local list, index = {}, {}
  for _, p in ipairs(class.parents) do
    for _, fn in ipairs(M.members(model, model.classes[p], methods, seen)) do
      if not index[fn.name] then
        list[#list + 1] = fn
        index[fn.name] = #list
      end
    end
  end
  for _, fn in ipairs(class.functions) do
    if fn.method == methods then
      if index[fn.name] then
        list[index[fn.name]] = fn
      else
        list[#list + 1] = fn
        index[fn.name] = #list
      end
    end
  end
  seen[class.name] = nil
  return list
end

--- The classes declared in a module's file that have methods (handle types).
function M.handle_classes(model, unit)
  local out = {}
  for _, class in ipairs(unit.classes) do
    if class ~= unit.class and #M.members(model, class, true) > 0 then out[#out + 1] = class end
  end
  return out
end

-- ------------------------------------------------------------------ rendering

local function cell(s)
  return (s:gsub("|", "\\|"):gsub("\n", " "))
end

local function anchor(name)
  return (name:gsub("[^%w]+", "-"):lower())
end

local function first_sentence(desc)
  local para = desc:match("^(.-)\n\n") or desc
  para = para:gsub("\n", " ")
  return para:match("^(.-%.)%s") or para
end

local function signature(prefix, sep, fn)
  local names = {}
  for _, p in ipairs(fn.params) do names[#names + 1] = p.name .. (p.optional and "?" or "") end
  return ("%s%s%s(%s)"):format(prefix, sep, fn.name, table.concat(names, ", "))
end

local function render_function(out, level, prefix, sep, fn, owner)
  out[#out + 1] = ("%s `%s`"):format(("#"):rep(level), signature(prefix, sep, fn))
  out[#out + 1] = ""
  if owner and fn.class ~= owner then
    out[#out + 1] = ("*Declared by [`%s`](#%s).*"):format(fn.class.name, anchor(fn.class.name))
    out[#out + 1] = ""
  end
  if fn.async then
    out[#out + 1] = "*async: suspends the calling coroutine until it is done; call it from a coroutine.*"
    out[#out + 1] = ""
  end
  out[#out + 1] = fn.desc
  out[#out + 1] = ""
  if #fn.params > 0 then
    out[#out + 1] = "| parameter | type | description |"
    out[#out + 1] = "|---|---|---|"
    for _, p in ipairs(fn.params) do
      out[#out + 1] = ("| `%s`%s | `%s` | %s |"):format(p.name, p.optional and " (optional)" or "", cell(p.type), cell(p.desc))
    end
    out[#out + 1] = ""
  end
  if #fn.returns > 0 then
    out[#out + 1] = "| returns | type | description |"
    out[#out + 1] = "|---|---|---|"
    for i, r in ipairs(fn.returns) do
      out[#out + 1] = ("| %d. `%s` | `%s` | %s |"):format(i, r.name, cell(r.type), cell(r.desc))
    end
  else
    out[#out + 1] = "Returns nothing."
  end
  out[#out + 1] = ""
end

local function render_class(out, model, class)
  local title = ("### `%s`"):format(class.name)
  out[#out + 1] = ('<a id="%s"></a>'):format(anchor(class.name))
  out[#out + 1] = ""
  out[#out + 1] = title
  out[#out + 1] = ""
  if #class.parents > 0 then
    local links = {}
    for _, p in ipairs(class.parents) do links[#links + 1] = ("[`%s`](#%s)"):format(p, anchor(p)) end
    out[#out + 1] = "Inherits from " .. table.concat(links, ", ") .. "."
    out[#out + 1] = ""
  end
  if class.desc ~= "" then
    out[#out + 1] = class.desc
    out[#out + 1] = ""
  end
  if #class.fields > 0 then
    out[#out + 1] = "| field | type | description |"
    out[#out + 1] = "|---|---|---|"
    for _, f in ipairs(class.fields) do
      out[#out + 1] = ("| `%s`%s | `%s` | %s |"):format(f.name, f.optional and " (optional)" or "", cell(f.type), cell(f.desc))
    end
    out[#out + 1] = ""
  end
  local inherited = {}
  for _, fn in ipairs(M.members(model, class, true)) do
    if fn.class ~= class then inherited[#inherited + 1] = ("`%s`"):format(fn.name) end
  end
  if #inherited > 0 then
    out[#out + 1] = "Methods it inherits: " .. table.concat(inherited, ", ") .. "."
    out[#out + 1] = ""
  end
  -- Functions a module inherits are documented in full in that module's
  -- section; the class that declares them only points there.
  local heirs = {}
  for _, unit in ipairs(model.modules) do
    for _, p in ipairs(unit.class.parents) do
      if p == class.name then heirs[#heirs + 1] = ("[`%s`](#%s)"):format(unit.module, anchor(unit.module)) end
    end
  end
  local names = {}
  for _, fn in ipairs(class.functions) do
    if fn.method or #heirs == 0 then
      render_function(out, 4, class.localname, fn.method and ":" or ".", fn)
    else
      names[#names + 1] = ("`%s`"):format(fn.name)
    end
  end
  if #names > 0 then
    out[#out + 1] = ("Functions: %s, documented in full under each module that has them: %s."):format(
      table.concat(names, ", "), table.concat(heirs, ", "))
    out[#out + 1] = ""
  end
end

local function render_alias(out, alias)
  out[#out + 1] = ('<a id="%s"></a>'):format(anchor(alias.name))
  out[#out + 1] = ""
  out[#out + 1] = ("### `%s`"):format(alias.name)
  out[#out + 1] = ""
  out[#out + 1] = ("Another name for `%s`."):format(alias.type)
  if alias.desc ~= "" then
    out[#out + 1] = ""
    out[#out + 1] = alias.desc
  end
  out[#out + 1] = ""
end

--- The text of docs/API.md for `model`.
function M.render(model)
  local out = {}
  local function add(s) out[#out + 1] = s end
  add("# lunet API reference")
  add("")
  add("<!-- Generated by scripts/gen-docs.lua from the annotations in types/.")
  add("     Do not edit: change types/ and run `make docs`. -->")
  add("")
  add("This reference is generated from the LuaLS annotations in [`types/`](../types/),")
  add("the same files an editor with lua-language-server reads (see the README).")
  add("The test suite regenerates this page and fails if it differs from the committed")
  add("one, and checks the annotations against what the built modules really export.")
  add("")
  add("Reading the tables: return values are numbered in the order the function")
  add("returns them; a type ending in `|nil` may be `nil`. Functions marked *async*")
  add("suspend the calling coroutine, so they must be called from a coroutine")
  add("(for example one started with `lunet.spawn`).")
  add("")
  add("| module | summary |")
  add("|---|---|")
  for _, unit in ipairs(model.modules) do
    add(("| [`%s`](#%s) | %s |"):format(unit.module, anchor(unit.module), cell(first_sentence(unit.class.desc))))
  end
  if #model.shared > 0 then
    add("| [shared types](#shared-types) | types used by more than one module |")
  end
  add("")
  for _, unit in ipairs(model.modules) do
    local class = unit.class
    add(('<a id="%s"></a>'):format(anchor(unit.module)))
    add("")
    add(("## `%s`"):format(unit.module))
    add("")
    add("```lua")
    add(("local %s = require(%q)"):format(class.localname, unit.module))
    add("```")
    add("")
    if class.desc ~= "" then
      add(class.desc)
      add("")
    end
    if #class.fields > 0 then
      add("| field | type | description |")
      add("|---|---|---|")
      for _, f in ipairs(class.fields) do
        add(("| `%s` | `%s` | %s |"):format(f.name, cell(f.type), cell(f.desc)))
      end
      add("")
    end
    for _, fn in ipairs(M.members(model, class, false)) do
      render_function(out, 3, class.localname, ".", fn, class)
    end
    for _, c in ipairs(unit.classes) do
      if c ~= class then render_class(out, model, c) end
    end
    for _, a in ipairs(unit.aliases) do render_alias(out, a) end
  end
  if #model.shared > 0 then
    add('<a id="shared-types"></a>')
    add("")
    add("## Shared types")
    add("")
    add("Declared once and used by several modules.")
    add("")
    for _, unit in ipairs(model.shared) do
      for _, c in ipairs(unit.classes) do render_class(out, model, c) end
      for _, a in ipairs(unit.aliases) do render_alias(out, a) end
    end
  end
  while out[#out] == "" do out[#out] = nil end
  return table.concat(out, "\n") .. "\n"
end

--- Generates `out_path` from the annotations under `root`.
function M.write(root, out_path)
  local text = M.render(M.load(root))
  local dir = out_path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'") end
  local f = assert(io.open(out_path, "wb"))
  f:write(text)
  f:close()
  return text
end

if arg and arg[0] and arg[0]:match("gen%-docs%.lua$") then
  local root, out_path = arg[1] or "types", arg[2] or "docs/API.md"
  local ok, err = pcall(M.write, root, out_path)
  if not ok then
    io.stderr:write("gen-docs: ", tostring(err), "\n")
    os.exit(1)
  end
end

return M
