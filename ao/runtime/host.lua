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
local xpcall, setmetatable, ipairs, rawlen = xpcall, setmetatable, ipairs, rawlen
local mathtype, huge = math.type, math.huge
local format, find, sub, gsub = string.format, string.find, string.sub, string.gsub
local unpack = table.unpack
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

-- Determinism. Lua's string hashes are seeded per state and tables are hashed by address,
-- so the raw `next` order differs between two states; table.sort picks random pivots on
-- unbalanced input; tostring and %p show addresses. The process gets: pairs and next in
-- the canonical key order (false, true, numbers by value, strings by bytes, then tables and
-- functions by a shallow fingerprint), a stable merge sort, tostring without addresses
-- ("table", "function", "thread", or __name / __tostring), string.format refusing %p, and
-- math.randomseed() without arguments seeding from the message id.

local real_tostring = tostring
local real_format = string.format

local function sandbox_tostring(...)
  if select("#", ...) == 0 then return real_tostring() end
  local v = ...
  local kind = type(v)
  if kind == "table" or kind == "function" or kind == "thread" or kind == "userdata" then
    local mt = getmetatable_raw(v)
    if mt ~= nil and rawget(mt, "__tostring") ~= nil then return real_tostring(v) end
    if mt ~= nil and type(rawget(mt, "__name")) == "string" then return rawget(mt, "__name") end
    return kind
  end
  return real_tostring(v)
end

local function fingerprint(v)
  local kind = type(v)
  if kind == "table" then
    local parts = {}
    for k, x in next, v do
      local tk, tx = type(k), type(x)
      if (tk == "string" or tk == "number" or tk == "boolean") then
        parts[#parts + 1] = real_tostring(k) .. "=" .. (
          (tx == "string" or tx == "number" or tx == "boolean") and real_tostring(x) or tx)
      end
    end
    sort(parts)
    return "table{" .. concat(parts, ",") .. "}"
  elseif kind == "function" then
    local info = getinfo(v, "S")
    return "function " .. info.short_src .. ":" .. info.linedefined
  end
  return kind
end

local function canonical_keys(t)
  local bools, nums, strs, others = {}, {}, {}, nil
  for k in next, t do
    local kind = type(k)
    if kind == "number" then
      nums[#nums + 1] = k
    elseif kind == "string" then
      strs[#strs + 1] = k
    elseif kind == "boolean" then
      bools[k and 2 or 1] = true
    else
      others = others or {}
      others[#others + 1] = k
    end
  end
  sort(nums)
  sort(strs)
  local keys = {}
  if bools[1] then keys[#keys + 1] = false end
  if bools[2] then keys[#keys + 1] = true end
  for i = 1, #nums do keys[#keys + 1] = nums[i] end
  for i = 1, #strs do keys[#keys + 1] = strs[i] end
  if others then
    local prints = {}
    for _, k in ipairs(others) do prints[k] = fingerprint(k) end
    sort(others, function(a, b) return prints[a] < prints[b] end)
    for i = 1, #others do keys[#keys + 1] = others[i] end
  end
  return keys
end

local function check_table(t, name)
  if type(t) ~= "table" then
    error("bad argument #1 to '" .. name .. "' (table expected, got " .. type(t) .. ")", 3)
  end
end

local function sandbox_pairs(t)
  local mt = getmetatable_raw(t)
  local metamethod = mt ~= nil and type(mt) == "table" and rawget(mt, "__pairs") or nil
  if metamethod then
    local f, s, c = metamethod(t)
    return f, s, c
  end
  check_table(t, "pairs")
  local keys, i = canonical_keys(t), 0
  return function()
    while true do
      i = i + 1
      local k = keys[i]
      if k == nil then return nil end
      local v = rawget(t, k)
      if v ~= nil then return k, v end
    end
  end, t, nil
end

local function sandbox_next(t, k)
  check_table(t, "next")
  if k == nil then
    if next(t) == nil then return nil end
    local keys = canonical_keys(t)
    return keys[1], rawget(t, keys[1])
  end
  local keys = canonical_keys(t)
  for i = 1, #keys do
    if rawequal(keys[i], k) then
      local after = keys[i + 1]
      if after == nil then return nil end
      return after, rawget(t, after)
    end
  end
  error("invalid key to 'next'", 2)
end

local function merge_sort(list, less)
  check_table(list, "sort")
  local n = #list
  if n < 2 then return end
  if less == nil then
    less = function(a, b) return a < b end
  elseif type(less) ~= "function" then
    error("bad argument #2 to 'sort' (function expected, got " .. type(less) .. ")", 2)
  end
  local a, b = {}, {}
  for i = 1, n do a[i] = list[i] end
  local width = 1
  while width < n do
    local lo = 1
    while lo <= n do
      local mid, hi = lo + width, lo + 2 * width - 1
      if mid > n then
        for i = lo, n do b[i] = a[i] end
      else
        if hi > n then hi = n end
        local i, j, o = lo, mid, lo
        while i < mid and j <= hi do
          if less(a[j], a[i]) then
            b[o] = a[j]
            j = j + 1
          else
            b[o] = a[i]
            i = i + 1
          end
          o = o + 1
        end
        while i < mid do b[o] = a[i] i = i + 1 o = o + 1 end
        while j <= hi do b[o] = a[j] j = j + 1 o = o + 1 end
      end
      lo = lo + 2 * width
    end
    a, b = b, a
    width = width * 2
  end
  for i = 1, n do list[i] = a[i] end
end

local function sandbox_format(fmt, ...)
  if type(fmt) == "string" then
    local plain = gsub(fmt, "%%%%", "")
    if find(plain, "%%[-+ #0]*%d*%.?%d*p") then
      error("string.format: %p is not available to a process (addresses differ between "
        .. "compute units)", 2)
    end
  end
  local n = select("#", ...)
  for i = 1, n do
    local kind = type((select(i, ...)))
    if kind == "table" or kind == "function" or kind == "thread" or kind == "userdata" then
      local args = { ... }
      for j = 1, n do
        local tj = type(args[j])
        if tj == "table" or tj == "function" or tj == "thread" or tj == "userdata" then
          args[j] = sandbox_tostring(args[j])
        end
      end
      return real_format(fmt, unpack(args, 1, n))
    end
  end
  return real_format(fmt, ...)
end

local seed_a, seed_b = 0, 0

local function sandbox_randomseed(...)
  if select("#", ...) == 0 then return randomseed(seed_a, seed_b) end
  return randomseed(...)
end

G.pairs = sandbox_pairs
G.next = sandbox_next
G.tostring = sandbox_tostring
table.sort = merge_sort
string.format = sandbox_format
math.randomseed = sandbox_randomseed
for _, f in ipairs({ sandbox_pairs, sandbox_next, sandbox_tostring, merge_sort, sandbox_format,
  sandbox_randomseed }) do
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
  return "error", "error object: a " .. type(e)
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

-- The outbox as the result shows it, checked and copied with raw reads (no metamethod of
-- the process runs): a message {Target, Data, Anchor, Tags}, a spawn {Data, Anchor, Tags}.
local function checked(list, what)
  if type(list) ~= "table" then error("ao.outbox." .. what .. " is not a list", 0) end
  local out = {}
  for i = 1, rawlen(list) do
    local m = rawget(list, i)
    local where = "ao.outbox." .. what .. "[" .. i .. "]"
    if type(m) ~= "table" then error(where .. " is not a table", 0) end
    local copy = {}
    for _, field in ipairs(what == "Messages" and { "Target", "Data", "Anchor" }
      or { "Data", "Anchor" }) do
      local value = rawget(m, field)
      if type(value) ~= "string" then error(where .. "." .. field .. " is not a string", 0) end
      copy[field] = value
    end
    local tags = rawget(m, "Tags")
    if type(tags) ~= "table" then error(where .. ".Tags is not a list", 0) end
    local tag_list = {}
    for j = 1, rawlen(tags) do
      local tag = rawget(tags, j)
      local name = type(tag) == "table" and rawget(tag, "name") or nil
      local value = type(tag) == "table" and rawget(tag, "value") or nil
      if type(name) ~= "string" or type(value) ~= "string" then
        error(where .. ".Tags[" .. j .. "] is not a {name, value} of strings", 0)
      end
      tag_list[j] = { name = name, value = value }
    end
    copy.Tags = tag_list
    out[i] = copy
  end
  return out
end

local function output_of(value)
  if type(value) == "string" then return value end
  if type(value) ~= "table" then return "" end
  local out = {}
  for _, field in ipairs({ "data", "prompt" }) do
    local text = rawget(value, field)
    out[field] = type(text) == "string" and text or ""
  end
  if rawget(value, "print") == true then out.print = true end
  return out
end

-- Lines whose first non-blank characters are `//` made `--` comments (PROTOCOL 8.8: tried
-- only when the text does not compile as it is), or nil when there is none.
local function slash_comments(source)
  local fixed, count = gsub("\n" .. source, "\n([ \t]*)//", "\n%1--")
  if count == 0 then return nil end
  return sub(fixed, 2)
end

function host.load_module(source, instructions)
  start_budget(instructions)
  return finish(pcall(function()
    local fn, err = real_load(source, "=module", "t", G)
    if not fn then
      local fixed = slash_comments(source)
      if fixed then fn = real_load(fixed, "=module", "t", G) end
      if not fn then error(err, 0) end
    end
    fn()
    local outbox = rawget(sandbox_require(".ao"), "outbox")
    return hjson.encode({
      Output = process_logs(),
      Messages = checked(rawget(outbox, "Messages"), "Messages"),
      Spawns = checked(rawget(outbox, "Spawns"), "Spawns"),
    })
  end))
end

function host.apply(message_json, instructions)
  local msg = hjson.decode(message_json)
  start_budget(instructions)
  return finish(pcall(function()
    local result = process_handle(msg, env)
    return hjson.encode({
      Output = output_of(rawget(result, "Output")),
      Messages = checked(rawget(result, "Messages"), "Messages"),
      Spawns = checked(rawget(result, "Spawns"), "Spawns"),
    })
  end))
end

host_code[finish] = true
host_code[stop_budget] = true
host_code[host.apply] = true
host_code[host.load_module] = true

function host.seed(a, b)
  seed_a, seed_b = a, b
  randomseed(a, b)
end

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

-- The checkpoint: one pass over the graph, each table's entries copied (with its metatable,
-- false when none) and each Lua function's upvalues, in parallel arrays.
function host.checkpoint()
  local seen = {}
  local tables, copies, metas, nt = {}, {}, {}, 0
  local functions, upvalues, counts, nf = {}, {}, {}, 0
  local r = roots()
  local stack, top = { r[1], r[2] }, 2
  while top > 0 do
    local v = stack[top]
    stack[top] = nil
    top = top - 1
    if not seen[v] then
      seen[v] = true
      if type(v) == "table" then
        nt = nt + 1
        tables[nt] = v
        local c = {}
        for k, x in next, v do
          c[k] = x
          local tk, tx = type(k), type(x)
          if (tk == "table" or tk == "function") and not seen[k] then
            top = top + 1
            stack[top] = k
          end
          if (tx == "table" or tx == "function") and not seen[x] then
            top = top + 1
            stack[top] = x
          end
        end
        copies[nt] = c
        local mt = getmetatable_raw(v)
        metas[nt] = mt or false
        if mt ~= nil and not seen[mt] then
          top = top + 1
          stack[top] = mt
        end
      elseif not opaque[v] then
        local ups, n = {}, 0
        while true do
          local name, x = getupvalue(v, n + 1)
          if name == nil then break end
          n = n + 1
          ups[n] = x
          local tx = type(x)
          if (tx == "table" or tx == "function") and not seen[x] then
            top = top + 1
            stack[top] = x
          end
        end
        if n > 0 then
          nf = nf + 1
          functions[nf], upvalues[nf], counts[nf] = v, ups, n
        end
      end
    end
  end
  return { tables, copies, metas, nt, functions, upvalues, counts, nf }
end

function host.restore(checkpoint)
  local tables, copies, metas = checkpoint[1], checkpoint[2], checkpoint[3]
  for i = 1, checkpoint[4] do
    local t, c = tables[i], copies[i]
    for k in next, t do
      if rawget(c, k) == nil then rawset(t, k, nil) end
    end
    for k, v in next, c do rawset(t, k, v) end
    setmetatable_raw(t, metas[i] or nil)
  end
  local functions, upvalues, counts = checkpoint[5], checkpoint[6], checkpoint[7]
  for i = 1, checkpoint[8] do
    local f, ups = functions[i], upvalues[i]
    for j = 1, counts[i] do setupvalue(f, j, ups[j]) end
  end
end

function host.size(checkpoint) return checkpoint[4] end

-- memory(): the serialization documented in ao/runtime/__init__.py.

local function float_text(x)
  if x ~= x then return "nan" end
  if x == huge then return "inf" end
  if x == -huge then return "-inf" end
  if x == 0 and 1 / x < 0 then return "-0" end
  for precision = 1, 17 do
    local text = format("%." .. precision .. "g", x)
    if tonumber(text) == x then return text end
  end
  return format("%.17g", x)
end

local function step_text(k, ids)
  local kind = type(k)
  if kind == "string" then
    if find(k, "^[%a_][%w_]*$") then return "." .. k end
    return "[" .. format("%q", k) .. "]"
  end
  if kind == "number" then
    return "[" .. (mathtype(k) == "integer" and format("%d", k) or float_text(k)) .. "]"
  end
  if kind == "boolean" then return "[" .. real_tostring(k) .. "]" end
  return "[@" .. real_tostring(ids[k] or "?") .. "]"
end

-- The path stack: kind 0 a root's name, 1 a key, 2 "<key>", 3 "<metatable>", 4 an upvalue.
local function path_text(state)
  local kinds, keys, parts = state.kinds, state.keys, {}
  for i = 1, state.depth do
    local kind, key = kinds[i], keys[i]
    if kind == 0 then
      parts[i] = key
    elseif kind == 1 then
      parts[i] = step_text(key, state.ids)
    elseif kind == 2 then
      parts[i] = "<key>"
    elseif kind == 3 then
      parts[i] = "<metatable>"
    else
      parts[i] = "<upvalue " .. key .. ">"
    end
  end
  return concat(parts)
end

local function push(state, kind, key)
  local d = state.depth + 1
  state.depth = d
  state.kinds[d], state.keys[d] = kind, key
end

local function pop(state)
  state.depth = state.depth - 1
end

local encode

local type_rank = { boolean = 1, number = 2, string = 3 }

local function primitive_before(a, b)
  local ra, rb = type_rank[type(a)], type_rank[type(b)]
  if ra ~= rb then return ra < rb end
  if ra == 1 then return (not a) and b end
  return a < b
end

-- A table's keys: the booleans, numbers and strings in canonical order, and the others.
local function split_keys(t)
  local keys, n, objects = {}, 0, nil
  local first, mixed = nil, false
  for k in next, t do
    local kind = type(k)
    if type_rank[kind] then
      n = n + 1
      keys[n] = k
      if first == nil then
        first = kind
      elseif kind ~= first then
        mixed = true
      end
    else
      objects = objects or {}
      objects[#objects + 1] = k
    end
  end
  if n > 1 then
    if mixed or first == "boolean" then sort(keys, primitive_before) else sort(keys) end
  end
  return keys, objects
end

local function encode_table(t, state)
  local out = state.out
  local keys, objects = split_keys(t)
  out[#out + 1] = "{"
  for i = 1, #keys do
    local k = keys[i]
    encode(k, state)
    push(state, 1, k)
    encode(rawget(t, k), state)
    pop(state)
  end
  if objects then
    local known, unknown = {}, {}
    for _, k in ipairs(objects) do
      if state.ids[k] then known[#known + 1] = k else unknown[#unknown + 1] = k end
    end
    sort(known, function(a, b) return state.ids[a] < state.ids[b] end)
    if #unknown > 0 then
      local texts = {}
      for _, k in ipairs(unknown) do
        local trial = { out = {}, ids = setmetatable({}, { __index = state.ids }), next_id = 0,
          prefix = "~", kinds = {}, keys = {}, depth = 0 }
        encode(k, trial)
        encode(rawget(t, k), trial)
        texts[k] = concat(trial.out)
      end
      sort(unknown, function(a, b) return texts[a] < texts[b] end)
    end
    for _, group in ipairs({ known, unknown }) do
      for _, k in ipairs(group) do
        push(state, 2, k)
        encode(k, state)
        pop(state)
        push(state, 1, k)
        encode(rawget(t, k), state)
        pop(state)
      end
    end
  end
  out = state.out
  out[#out + 1] = "}"
  local mt = getmetatable_raw(t)
  if mt == nil then
    out[#out + 1] = "n"
  else
    push(state, 3)
    encode(mt, state)
    pop(state)
  end
end

local function put_string(out, s)
  local n = #out
  out[n + 1] = "s" .. #s .. ":"
  out[n + 2] = s
end

encode = function(v, state)
  local out = state.out
  local kind = type(v)
  if kind == "string" then
    local n = #out
    out[n + 1] = "s" .. #v .. ":"
    out[n + 2] = v
  elseif kind == "number" then
    if mathtype(v) == "integer" then
      out[#out + 1] = format("i%d;", v)
    else
      out[#out + 1] = "d" .. float_text(v) .. ";"
    end
  elseif kind == "boolean" then
    out[#out + 1] = v and "T" or "F"
  elseif kind == "nil" then
    out[#out + 1] = "n"
  else
    local id = state.ids[v]
    if id then
      out[#out + 1] = "r" .. id .. ";"
      return
    end
    state.next_id = state.next_id + 1
    id = state.prefix and (state.prefix .. state.next_id) or state.next_id
    state.ids[v] = id
    if kind == "table" then
      out[#out + 1] = "t" .. id .. ":"
      encode_table(v, state)
    elseif kind == "function" then
      local info = getinfo(v, "S")
      if info.what == "C" or opaque[v] then
        out[#out + 1] = "c" .. id .. ":"
        put_string(out, path_text(state))
      else
        out[#out + 1] = "f" .. id .. ":"
        put_string(out, path_text(state))
        put_string(out, info.short_src .. ":" .. info.linedefined)
        out[#out + 1] = "("
        local i = 1
        while true do
          local name, x = getupvalue(v, i)
          if name == nil then break end
          put_string(out, name)
          push(state, 4, name)
          encode(x, state)
          pop(state)
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
  local state = { out = { "AOMEM/1\n" }, ids = {}, next_id = 0, kinds = {}, keys = {},
    depth = 0 }
  local r = roots()
  push(state, 0, "_G")
  encode(r[1], state)
  pop(state)
  push(state, 0, "<string metatable>")
  encode(r[2], state)
  pop(state)
  return concat(state.out)
end

-- read(path): the value at a path of the process's globals as JSON, with raw reads only
-- (no metamethod of the process runs), under the budget. Errors are "missing: ..." (the
-- path names nothing) or "value: ..." (the value is not JSON).

local READ_DEPTH = 64
local READ_BYTES = 8 * 1024 * 1024
local byte, tointeger = string.byte, math.tointeger
local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function read_string(s)
  return '"' .. gsub(s, '[%c"\\]', function(c)
    return ESCAPES[c] or format("\\u%04x", byte(c))
  end) .. '"'
end

local function read_number(x, where)
  if mathtype(x) == "integer" then return tostring(x) end
  if x ~= x or x == huge or x == -huge then
    error("value: " .. where .. " is " .. tostring(x) .. ", which JSON cannot hold", 0)
  end
  local text = float_text(x)
  if not find(text, "[%.eEn]") then text = text .. ".0" end
  return text
end

local function integer_text(seg)
  if not find(seg, "^%-?%d+$") then return nil end
  local n = tointeger(tonumber(seg))
  if n == nil or tostring(n) ~= seg then return nil end
  return n
end

local function read_value(v, where, state, depth)
  local kind = type(v)
  if kind == "string" then return read_string(v) end
  if kind == "number" then return read_number(v, where) end
  if kind == "boolean" then return tostring(v) end
  if kind ~= "table" then
    error("value: " .. where .. " is a " .. kind .. ", which JSON cannot hold", 0)
  end
  if depth > READ_DEPTH then
    error("value: " .. where .. " nests deeper than " .. READ_DEPTH .. " tables", 0)
  end
  if state.seen[v] then
    error("value: " .. where .. " is a table reached twice (a cycle, or a table shared)", 0)
  end
  state.seen[v] = true
  local count, keys = 0, {}
  for k in next, v do
    count = count + 1
    local kk = type(k)
    if kk == "number" and mathtype(k) == "integer" then
      keys[count] = k
    elseif kk == "string" then
      keys[count] = k
    else
      error("value: " .. where .. " has a key that is a " ..
        (kk == "number" and "float" or kk) .. ": JSON keys are strings or integers", 0)
    end
  end
  local list = count > 0
  for i = 1, count do
    if rawget(v, i) == nil then list = false; break end
  end
  local parts = {}
  if list then
    for i = 1, count do
      parts[i] = read_value(rawget(v, i), where .. "[" .. i .. "]", state, depth + 1)
    end
    state.size = state.size + count + 2
    if state.size > READ_BYTES then error("value: larger than " .. READ_BYTES .. " bytes", 0) end
    return "[" .. concat(parts, ",") .. "]"
  end
  local named, texts = {}, {}
  for i = 1, count do
    local k = keys[i]
    local text = type(k) == "string" and k or tostring(k)
    if named[text] then
      error("value: " .. where .. " has both the key " .. text .. " and the key \"" .. text ..
        "\"", 0)
    end
    named[text] = k
    texts[i] = text
  end
  sort(texts)
  for i, text in ipairs(texts) do
    local part = read_string(text) .. ":" ..
      read_value(rawget(v, named[text]), where .. "." .. text, state, depth + 1)
    state.size = state.size + #part + 1
    if state.size > READ_BYTES then error("value: larger than " .. READ_BYTES .. " bytes", 0) end
    parts[i] = part
  end
  return "{" .. concat(parts, ",") .. "}"
end

function host.read(path_json, instructions)
  local path = hjson.decode(path_json)
  start_budget(instructions)
  return finish(pcall(function()
    local value, where = G, ""
    for i = 1, #path do
      local seg = path[i]
      local here = where == "" and seg or where .. "." .. seg
      if type(value) ~= "table" then
        error("value: " .. where .. " is a " .. type(value) .. ", not a table", 0)
      end
      local found = rawget(value, seg)
      if found == nil then
        local n = integer_text(seg)
        if n ~= nil then found = rawget(value, n) end
      end
      if found == nil then
        error("missing: no key " .. format("%q", seg) ..
          (where == "" and " among the globals" or " in " .. where), 0)
      end
      value, where = found, here
    end
    local state = { seen = {}, size = 0 }
    local text = read_value(value, where, state, 1)
    if #text > READ_BYTES then error("value: larger than " .. READ_BYTES .. " bytes", 0) end
    return text
  end))
end

host_code[host.read] = true

return host
