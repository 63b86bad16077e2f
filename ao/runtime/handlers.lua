-- handlers: the aos Handlers list (add, append, prepend, once, remove, evaluate) and
-- Handlers.utils (hasMatchingTag, hasMatchingTagOf, hasMatchingData, reply, continue).
--
-- evaluate(msg, env) runs the handlers in list order. A pattern's result decides: -1, true
-- or "break": run the handler and stop; 1 or "continue": run it and go on; 0, false, "skip"
-- (or any other string): do not run it. A handler with maxRuns is removed after that many
-- runs (once: 1). The handler named "_default" runs last, only when no handler broke.

local utils = require(".utils")

local handlers = { _version = "1.0" }
handlers.list = {}
handlers.onceNonce = 0

local hutils = {}
handlers.utils = hutils

function hutils.hasMatchingTag(name, value)
  assert(type(name) == "string" and type(value) == "string",
    "invalid arguments: (name : string, value : string)")
  return function(msg) return msg.Tags[name] == value end
end

function hutils.hasMatchingTagOf(name, values)
  assert(type(name) == "string" and type(values) == "table",
    "invalid arguments: (name : string, values : string[])")
  return function(msg)
    for _, value in ipairs(values) do
      if msg.Tags[name] == value then return -1 end
    end
    return 0
  end
end

function hutils.hasMatchingData(value)
  assert(type(value) == "string", "invalid arguments: (value : string)")
  return function(msg) return msg.Data == value end
end

function hutils.reply(input)
  assert(type(input) == "table" or type(input) == "string",
    "invalid arguments: (input : table or string)")
  return function(msg)
    local out = type(input) == "string" and { Data = input } or input
    if msg.reply then return msg.reply(out) end
    local copy = { Target = msg.From }
    for k, v in pairs(out) do copy[k] = v end
    return Send(copy)
  end
end

function hutils.continue(pattern)
  return function(msg)
    local match = utils.matchesSpec(msg, pattern)
    if not match or match == 0 or match == "skip" then return match end
    return 1
  end
end

local function index_of(name)
  for i, h in ipairs(handlers.list) do
    if h.name == name then return i end
  end
  return nil
end

local function arguments(...)
  local count = select("#", ...)
  local name, pattern, handle, maxRuns
  if count == 2 then
    name, handle = ...
    pattern = name
  else
    name, pattern, handle, maxRuns = ...
  end
  assert(type(name) == "string"
    and (type(pattern) == "function" or type(pattern) == "table" or type(pattern) == "string"),
    "Invalid arguments given. Expected: name : string, pattern : Action : string | "
      .. "MsgMatch : table | function(msg), handle(msg), MaxRuns? : number | \"inf\"")
  assert(type(handle) == "function" or type(handle) == "table",
    "Invalid arguments given: handle must be a function or a table of resolvers")
  return name, pattern, handlers.generateResolver(handle), maxRuns
end

function handlers.generateResolver(spec)
  if type(spec) == "function" then return spec end
  return function(msg)
    for matchSpec, fn in pairs(spec) do
      if utils.matchesSpec(msg, matchSpec) then return fn(msg) end
    end
  end
end

local function place(at, name, pattern, handle, maxRuns)
  local i = index_of(name)
  if i then
    local h = handlers.list[i]
    h.pattern, h.handle, h.maxRuns = pattern, handle, maxRuns
    return i
  end
  local h = { name = name, pattern = pattern, handle = handle, maxRuns = maxRuns }
  if at then
    table.insert(handlers.list, at, h)
    return at
  end
  table.insert(handlers.list, h)
  return #handlers.list
end

function handlers.add(...)
  local name, pattern, handle, maxRuns = arguments(...)
  return place(nil, name, pattern, handle, maxRuns)
end

function handlers.append(...)
  local name, pattern, handle, maxRuns = arguments(...)
  place(nil, name, pattern, handle, maxRuns)
end

function handlers.prepend(...)
  local name, pattern, handle, maxRuns = arguments(...)
  place(1, name, pattern, handle, maxRuns)
end

function handlers.once(...)
  if select("#", ...) == 3 then
    local name, pattern, handle = ...
    handlers.prepend(name, pattern, handle, 1)
  else
    local pattern, handle = ...
    local name = "_once_" .. tostring(handlers.onceNonce)
    handlers.onceNonce = handlers.onceNonce + 1
    handlers.prepend(name, pattern, handle, 1)
  end
end

local function relative(target, offset)
  assert(type(target) == "string", "Handler name MUST be a string")
  return {
    add = function(...)
      local name, pattern, handle, maxRuns = arguments(...)
      local i = index_of(target)
      if i then place(i + offset, name, pattern, handle, maxRuns) end
    end,
  }
end

function handlers.before(target) return relative(target, 0) end
function handlers.after(target) return relative(target, 1) end

function handlers.remove(name)
  assert(type(name) == "string", "name MUST be string")
  local i = index_of(name)
  if i then table.remove(handlers.list, i) end
end

local function decision(match)
  local kind = type(match)
  if kind == "boolean" then return match and -1 or 0 end
  if kind == "number" then
    if match < 0 then return -1 end
    if match > 0 then return 1 end
    return 0
  end
  if kind == "string" then
    if match == "continue" then return 1 end
    if match == "break" then return -1 end
    return 0
  end
  if match == nil then return 0 end
  error("Pattern result is not valid, it MUST be string, number, or boolean", 0)
end

local function ran(h)
  if type(h.maxRuns) == "number" then
    h.maxRuns = h.maxRuns - 1
    if h.maxRuns <= 0 then handlers.remove(h.name) end
  end
end

function handlers.evaluate(msg, env)
  assert(type(msg) == "table", "msg is not valid")
  assert(type(env) == "table", "env is not valid")
  local snapshot = {}
  for i, h in ipairs(handlers.list) do snapshot[i] = h end
  local default
  for _, h in ipairs(snapshot) do
    if h.name == "_default" then
      default = h
    else
      local match = decision(utils.matchesSpec(msg, h.pattern))
      if match ~= 0 then
        h.handle(msg, env)
        ran(h)
        if match < 0 then return true end
      end
    end
  end
  if default then default.handle(msg, env) end
  return false
end

return handlers
