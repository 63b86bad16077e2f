-- host: run once in a fresh Lua state before anything else. It keeps for the host (Python)
-- what the process must not have (debug, the real load, collectgarbage, setlocale), turns
-- the globals into the sandbox, and returns the host's functions: install the runtime,
-- checkpoint and restore the reachable graph, serialize it (memory), run one message under
-- the instruction budget.
local sources = ...

local debug = debug
local sethook, gethook = debug.sethook, debug.gethook
local getupvalue, setupvalue = debug.getupvalue, debug.setupvalue
local getmetatable_raw, setmetatable_raw = debug.getmetatable, debug.setmetatable
local getinfo = debug.getinfo
local real_load = load
local real_collect = collectgarbage
local setlocale = os.setlocale
local randomseed = math.randomseed
local next, type, rawget, rawset, rawequal, select, tostring, tonumber, error, pcall =
  next, type, rawget, rawset, rawequal, select, tostring, tonumber, error, pcall
local xpcall, setmetatable, ipairs = xpcall, setmetatable, ipairs
local mathtype, huge = math.type, math.huge
local format, find, sub = string.format, string.find, string.sub
local concat, sort = table.concat, table.sort
local co_create, co_resume, co_status = coroutine.create, coroutine.resume, coroutine.status
local G = _G

local host = {}

-- The host's own functions given to the process (the sandbox's load, require, pcall, ...):
-- they are shown in memory() and walked by the checkpoint as builtins are, by their path
-- only, so the host's state in their upvalues is neither serialized nor restored.
local opaque = setmetatable({}, { __mode = "k" })

-- The instruction budget: a count hook on every thread the process runs.

local COMPUTE = setmetatable({}, { __tostring = function() return "compute limit exceeded" end })
local STEP = 1000
local budget, used, step = huge, 0, STEP
local hooked = false
local host_code = {}  -- the host's functions around process code: the hook never raises there

local function hook()
  used = used + step
  if used > budget then
    if step ~= 1 then
      step = 1
      sethook(hook, "", 1)
    end
    local running = getinfo(2, "f")
    if running and host_code[running.func] then return end
    error(COMPUTE, 0)
  end
end

local function hook_thread(co)
  if hooked then sethook(co, hook, "", step) end
end

local function start_budget(instructions)
  budget, used = instructions, 0
  step = instructions < STEP and instructions or STEP
  if step < 1 then step = 1 end
  hooked = true
  sethook(hook, "", step)
end

local function stop_budget()
  hooked = false
  sethook()
  budget = huge
end

function host.instructions_used() return used end

-- Errors of the limits are not the process's to catch.

local function is_memory(e)
  return type(e) == "string" and find(e, "not enough memory", 1, true) ~= nil
end

local function is_limit(e)
  return rawequal(e, COMPUTE) or is_memory(e)
end

local function rethrow(ok, ...)
  if not ok then
    local e = ...
    if is_limit(e) then error(e, 0) end
  end
  return ok, ...
end

-- The sandbox.

local function sandbox_load(chunk, name, mode, env)
  if mode ~= nil and mode ~= "t" then
    return nil, "load: only text chunks can be loaded (mode \"t\")"
  end
  if type(chunk) == "string" and sub(chunk, 1, 1) == "\27" then
    return nil, "load: binary chunks are not allowed"
  end
  if select("#", env) == 0 or env == nil then env = G end
  return real_load(chunk, name, "t", env)
end

local function sandbox_collect(option, ...)
  if option == "count" then return real_collect("count") end
  error("collectgarbage: only \"count\" is available to a process", 2)
end

local function sandbox_setmetatable(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc metamethods are not allowed in a process", 2)
  end
  return setmetatable(t, mt)
end

local loading = {}

local function sandbox_require(name)
  if type(name) ~= "string" then error("require: a module name (a string)", 2) end
  local short = name:gsub("^%.", "")
  local loaded = G.package.loaded
  local found = loaded[name]
  if found ~= nil then return found end
  found = loaded[short]
  if found ~= nil then loaded[name] = found return found end
  local source = sources[short]
  if source == nil then
    error("module '" .. name .. "' not found: a process can require only the runtime's "
      .. "modules (json, ao, handlers, handlers-utils, utils, stringify, process)", 2)
  end
  if loading[short] then error("require: module '" .. name .. "' requires itself", 2) end
  loading[short] = true
  local fn = assert(real_load(source, "=" .. short, "t", G))
  local ok, value = pcall(fn, short)
  loading[short] = nil
  if not ok then error(value, 0) end
  if value == nil then value = true end
  loaded[short] = value
  loaded[name] = value
  return value
end

local function sandbox_pcall(f, ...)
  return rethrow(pcall(f, ...))
end

local function sandbox_xpcall(f, handler, ...)
  return rethrow(xpcall(f, function(e)
    if is_limit(e) then return e end
    return handler(e)
  end, ...))
end

local function sandbox_create(f)
  local co = co_create(f)
  hook_thread(co)
  return co
end

local function sandbox_resume(co, ...)
  return rethrow(co_resume(co, ...))
end

local function sandbox_wrap(f)
  local co = sandbox_create(f)
  local function pass(ok, ...)
    if not ok then error((...), 0) end
    return ...
  end
  local wrapped = function(...) return pass(co_resume(co, ...)) end
  opaque[wrapped] = true
  return wrapped
end

for _, f in ipairs({ sandbox_load, sandbox_collect, sandbox_setmetatable, sandbox_require,
  sandbox_pcall, sandbox_xpcall, sandbox_create, sandbox_resume, sandbox_wrap }) do
  opaque[f] = true
end

G.io, G.debug, G.loadfile, G.dofile, G.python, G.warn = nil, nil, nil, nil, nil, nil
G.os = { time = function() return 0 end }
string.dump = nil
G.load = sandbox_load
G.collectgarbage = sandbox_collect
G.setmetatable = sandbox_setmetatable
G.require = sandbox_require
G.pcall = sandbox_pcall
G.xpcall = sandbox_xpcall
coroutine.create = sandbox_create
coroutine.resume = sandbox_resume
coroutine.wrap = sandbox_wrap
G.package = {
  loaded = {
    _G = G, string = string, table = table, math = math, utf8 = utf8, coroutine = coroutine,
  },
}

-- A private JSON codec for the host, over its own copies of the libraries (the process can
-- change its own `string` or `table`, not these).

local function copy(t)
  local c = {}
  for k, v in next, t do c[k] = v end
  return c
end

local private_env = {
  string = copy(string), table = copy(table), math = copy(math), utf8 = copy(utf8),
  next = next, type = type, tostring = tostring, tonumber = tonumber, error = error,
  ipairs = ipairs, pairs = pairs, select = select, assert = assert,
}
local hjson = real_load(sources.json, "=host-json", "t", private_env)()

-- The runtime: the modules loaded, the process initialised.

local process_handle, process_logs
local env

function host.install(process_json)
  local info = hjson.decode(process_json)
  local tags, array = {}, {}
  for i, pair in ipairs(info.tags) do
    array[i] = { name = pair[1], value = pair[2] }
    if tags[pair[1]] == nil then tags[pair[1]] = pair[2] end
  end
  env = {
    Process = { Id = info.id, Owner = info.owner, Module = info.module, Tags = tags,
      TagArray = array },
    Module = { Id = info.module },
  }
  local process = sandbox_require(".process")
  process_handle, process_logs = process.handle, process.take_logs
  local ao = sandbox_require(".ao")
  ao.init(env)
  ao.env = env
  G.Owner = tags["From-Process"] or info.owner
  G.Name = tags.Name or "aos"
  G.os.time = function() return info.timestamp end
end

-- Running process code under the budget. Returns ok, kind, text, instructions: kind is
-- "ok", "compute", "memory" or "error".

local function describe(e)
  if rawequal(e, COMPUTE) then return "compute" , "compute limit exceeded" end
  if is_memory(e) then return "memory", "memory limit exceeded" end
  if type(e) == "string" then return "error", e end
  if type(e) == "table" then
    local ok, text = pcall(hjson.encode, e)
    if ok then return "error", "error object: " .. text end
  end
  return "error", "error object: " .. tostring(e)
end

local function finish(ok, ...)
  stop_budget()
  if ok then return true, "ok", ... end
  local kind, text = describe((...))
  local logs = ""
  if process_logs then
    local got, taken = pcall(process_logs)
    if got then logs = taken end
  end
  return false, kind, text, logs
end

local function texts(list, what)
  for i, m in ipairs(list) do
    if type(m.Target) ~= "string" and what == "message" then
      error("ao.send: message " .. i .. " has no Target", 0)
    end
  end
  return list
end

function host.load_module(source, instructions)
  start_budget(instructions)
  return finish(pcall(function()
    local fn, err = real_load(source, "=module", "t", G)
    if not fn then error(err, 0) end
    fn()
    stop_budget()
    local ao = sandbox_require(".ao")
    return hjson.encode({
      Output = process_logs(),
      Messages = texts(ao.outbox.Messages, "message"),
      Spawns = texts(ao.outbox.Spawns, "spawn"),
    })
  end))
end

function host.apply(message_json, instructions)
  local msg = hjson.decode(message_json)
  start_budget(instructions)
  return finish(pcall(function()
    local result = process_handle(msg, env)
    stop_budget()
    return hjson.encode({
      Output = result.Output,
      Messages = texts(result.Messages, "message"),
      Spawns = texts(result.Spawns, "spawn"),
    })
  end))
end

host_code[finish] = true
host_code[stop_budget] = true
host_code[host.apply] = true
host_code[host.load_module] = true

function host.seed(a, b) randomseed(a, b) end

function host.collate()
  local current = setlocale(nil, "collate")
  if current ~= "C" then setlocale("C", "collate") end
  return current
end

function host.collect() real_collect("collect") end

-- The reachable graph: every table, Lua function and thread reachable from the globals and
-- the string metatable, through keys, values, metatables and upvalues.

local function roots()
  return { G, getmetatable_raw("") }
end

local function reach()
  local seen, tables, functions = {}, {}, {}
  local stack = roots()
  while #stack > 0 do
    local v = stack[#stack]
    stack[#stack] = nil
    local kind = type(v)
    if (kind == "table" or kind == "function") and not seen[v] then
      seen[v] = true
      if kind == "table" then
        tables[#tables + 1] = v
        for k, x in next, v do
          stack[#stack + 1] = k
          stack[#stack + 1] = x
        end
        local mt = getmetatable_raw(v)
        if mt then stack[#stack + 1] = mt end
      elseif not opaque[v] then
        functions[#functions + 1] = v
        local i = 1
        while true do
          local name, x = getupvalue(v, i)
          if name == nil then break end
          stack[#stack + 1] = x
          i = i + 1
        end
      end
    end
  end
  return tables, functions
end

function host.checkpoint()
  local tables, functions = reach()
  local saved_tables, saved_functions = {}, {}
  for i, t in ipairs(tables) do
    local c = {}
    for k, v in next, t do c[k] = v end
    saved_tables[i] = { t, c, getmetatable_raw(t) }
  end
  for i, f in ipairs(functions) do
    local ups = {}
    local n = 0
    while true do
      local name, x = getupvalue(f, n + 1)
      if name == nil then break end
      n = n + 1
      ups[n] = x
    end
    saved_functions[i] = { f, ups, n }
  end
  return { saved_tables, saved_functions, #tables }
end

function host.restore(checkpoint)
  for _, entry in ipairs(checkpoint[1]) do
    local t, c, mt = entry[1], entry[2], entry[3]
    for k in next, t do
      if rawget(c, k) == nil then rawset(t, k, nil) end
    end
    for k, v in next, c do rawset(t, k, v) end
    setmetatable_raw(t, mt)
  end
  for _, entry in ipairs(checkpoint[2]) do
    local f, ups, n = entry[1], entry[2], entry[3]
    for i = 1, n do setupvalue(f, i, ups[i]) end
  end
end

function host.size(checkpoint) return checkpoint[3] end

-- memory(): the serialization documented in ao/runtime/memory.py.

local function float_text(x)
  if x ~= x then return "nan" end
  if x == huge then return "inf" end
  if x == -huge then return "-inf" end
  for precision = 1, 17 do
    local text = format("%." .. precision .. "g", x)
    if tonumber(text) == x then
      if x == 0 and 1 / x < 0 then return "-0" end
      return text
    end
  end
  return format("%.17g", x)
end

local type_rank = { boolean = 1, number = 2, string = 3 }

local function primitive_before(a, b)
  local ra, rb = type_rank[type(a)], type_rank[type(b)]
  if ra ~= rb then return ra < rb end
  if ra == 1 then return (not a) and b end
  return a < b
end

local function identifier(k)
  return type(k) == "string" and find(k, "^[%a_][%w_]*$") ~= nil
end

local function step_text(k, ids)
  if identifier(k) then return "." .. k end
  local kind = type(k)
  if kind == "string" then return "[" .. format("%q", k) .. "]" end
  if kind == "number" then
    return "[" .. (mathtype(k) == "integer" and format("%d", k) or float_text(k)) .. "]"
  end
  if kind == "boolean" then return "[" .. tostring(k) .. "]" end
  return "[@" .. tostring(ids[k] or "?") .. "]"
end

local encode

local function put_string(out, s)
  out[#out + 1] = "s" .. #s .. ":" .. s
end

local function encode_table(t, state, path)
  local out = state.out
  local primitives, objects = {}, {}
  for k in next, t do
    if type_rank[type(k)] then primitives[#primitives + 1] = k else objects[#objects + 1] = k end
  end
  sort(primitives, primitive_before)
  out[#out + 1] = "{"
  for _, k in ipairs(primitives) do
    encode(k, state, path)
    encode(rawget(t, k), state, path .. step_text(k, state.ids))
  end
  if #objects > 0 then
    local known, unknown = {}, {}
    for _, k in ipairs(objects) do
      if state.ids[k] then known[#known + 1] = k else unknown[#unknown + 1] = k end
    end
    sort(known, function(a, b) return state.ids[a] < state.ids[b] end)
    if #unknown > 0 then
      local key_text = {}
      for _, k in ipairs(unknown) do
        local trial = { out = {}, ids = setmetatable({}, { __index = state.ids }), next_id = 0,
          prefix = "~" }
        encode(k, trial, "")
        encode(rawget(t, k), trial, "")
        key_text[k] = concat(trial.out)
      end
      sort(unknown, function(a, b) return key_text[a] < key_text[b] end)
    end
    for _, group in ipairs({ known, unknown }) do
      for _, k in ipairs(group) do
        encode(k, state, path .. "<key>")
        encode(rawget(t, k), state, path .. step_text(k, state.ids))
      end
    end
  end
  out[#out + 1] = "}"
  local mt = getmetatable_raw(t)
  if mt == nil then
    out[#out + 1] = "n"
  else
    encode(mt, state, path .. "<metatable>")
  end
end

encode = function(v, state, path)
  local out = state.out
  local kind = type(v)
  if kind == "nil" then
    out[#out + 1] = "n"
  elseif kind == "boolean" then
    out[#out + 1] = v and "T" or "F"
  elseif kind == "number" then
    if mathtype(v) == "integer" then
      out[#out + 1] = format("i%d;", v)
    else
      out[#out + 1] = "d" .. float_text(v) .. ";"
    end
  elseif kind == "string" then
    put_string(out, v)
  else
    local id = state.ids[v]
    if id then
      out[#out + 1] = "r" .. tostring(id) .. ";"
      return
    end
    state.next_id = state.next_id + 1
    id = state.prefix and (state.prefix .. state.next_id) or state.next_id
    state.ids[v] = id
    if kind == "table" then
      out[#out + 1] = "t" .. id .. ":"
      encode_table(v, state, path)
    elseif kind == "function" then
      local info = getinfo(v, "S")
      if info.what == "C" or opaque[v] then
        out[#out + 1] = "c" .. id .. ":"
        put_string(out, path)
      else
        out[#out + 1] = "f" .. id .. ":"
        put_string(out, path)
        put_string(out, info.short_src .. ":" .. info.linedefined)
        out[#out + 1] = "("
        local i = 1
        while true do
          local name, x = getupvalue(v, i)
          if name == nil then break end
          put_string(out, name)
          encode(x, state, path .. "<upvalue " .. name .. ">")
          i = i + 1
        end
        out[#out + 1] = ")"
      end
    elseif kind == "thread" then
      out[#out + 1] = "h" .. id .. ":"
      put_string(out, co_status(v))
    else
      out[#out + 1] = "u" .. id .. ";"
    end
  end
end

function host.memory()
  local state = { out = { "AOMEM/1\n" }, ids = {}, next_id = 0 }
  local r = roots()
  encode(r[1], state, "_G")
  encode(r[2], state, "<string metatable>")
  return concat(state.out)
end

return host
