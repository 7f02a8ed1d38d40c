-- Writes the versioned rockspecs, rockspecs/<rock>-<version>-1.rockspec, from
-- the scm-1 ones and the version of the Cargo workspace (Cargo.toml,
-- [workspace.package]), the one place that holds it. A versioned rockspec is
-- its scm-1 rockspec with that version, the source pinned to the tag
-- v<version>, and the drivers' dependency on lunet pinned to the same version
-- (a driver and the core it loads into come from one release).
--
--   luajit scripts/gen-rockspecs.lua            (make rockspecs) writes them
--   luajit scripts/gen-rockspecs.lua --check    exits 1 if one is missing or differs
--
-- As a module (`dofile`), returns its functions (version, generate, files,
-- read) for spec/version_spec.lua.
local M = {}

--- The whole file at `path`.
function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end
local read = M.read

--- The workspace version from Cargo.toml.
function M.version(root)
  local toml = read((root or ".") .. "/Cargo.toml")
  local section = assert(toml:match("%[workspace%.package%]\n(.-)\n%["), "Cargo.toml: no [workspace.package]")
  local v = section:match('\nversion%s*=%s*"([^"]+)"') or section:match('^version%s*=%s*"([^"]+)"')
  return (assert(v, "Cargo.toml: no version in [workspace.package]"))
end

local function replace_once(s, pattern, repl, what)
  local out, n = s:gsub(pattern, repl)
  assert(n == 1, ("gen-rockspecs: %s found %d times"):format(what, n))
  return out
end

--- The versioned rockspec made from an scm-1 rockspec's text.
function M.generate(scm, version)
  local s = replace_once(scm, '\nversion = "scm%-1"\n', '\nversion = "' .. version .. '-1"\n', "version")
  s = replace_once(s, '\nsource = {\n  url = ("[^"\n]+"),\n}',
    function(url) return '\nsource = {\n  url = ' .. url .. ',\n  tag = "v' .. version .. '",\n}' end, "source")
  s = s:gsub('\n  "lunet",\n', '\n  "lunet == ' .. version .. '",\n')
  return s
end

--- { [scm path] = versioned path } for every scm-1 rockspec under root.
function M.files(root, version)
  local dir = (root or ".") .. "/rockspecs"
  local p = assert(io.popen("ls -1 " .. dir .. "/*-scm-1.rockspec"))
  local files = {}
  for path in p:lines() do
    files[path] = path:gsub("%-scm%-1%.rockspec$", "-" .. version .. "-1.rockspec")
  end
  p:close()
  return files
end

if arg and arg[0] and arg[0]:match("gen%-rockspecs%.lua$") then -- run as a script
  local check = arg[1] == "--check"
  local version = M.version()
  local bad = 0
  for scm, versioned in pairs(M.files(".", version)) do
    local want = M.generate(read(scm), version)
    if check then
      local f = io.open(versioned, "rb")
      local have = f and f:read("*a")
      if f then f:close() end
      if have ~= want then
        io.stderr:write(versioned, f and " differs from " or " is missing; generated from ", scm, "\n")
        bad = bad + 1
      end
    else
      local f = assert(io.open(versioned, "wb"))
      f:write(want)
      f:close()
      print("wrote " .. versioned)
    end
  end
  if bad > 0 then
    io.stderr:write("run `make rockspecs` and commit the result\n")
    os.exit(1)
  end
end

return M
