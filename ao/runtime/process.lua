-- process: the aos process around the handlers (our own code): the globals a module sees
-- (Handlers, Utils, Inbox, Owner, Name, Send, Spawn, print, Prompt, ao), the message as
-- aos shapes it, Eval, the default handler, and the result of one message.
--
-- A message: its tags are copied to fields (`msg.Action`, `msg["X-Prompt"]`) but for ao's
-- non-extractable ones, `msg.TagArray` keeps the list of {name, value} and `msg.Tags`
-- becomes a name -> value table (the first value of a repeated name); a Data whose
-- Content-Type is application/json is decoded. `os.time()` is the message's timestamp (ms).
-- Handlers run in order ("_eval" for an Eval from the owner, the module's, then "_default",
-- which keeps the message in Inbox, at most 10,000, the oldest dropped).
-- Output is {data = the prints joined with "\n", prompt = Prompt(), print = true}; for an
-- Eval {data = the prints then the value of the code, prompt = Prompt()}.

local ao = require(".ao")
_G.ao = ao
local json = require("json")
local stringify = require(".stringify")

Handlers = require(".handlers")
Utils = require(".utils")
Inbox = Inbox or {}
Errors = Errors or {}

local MAX_INBOX = 10000
local concat = table.concat -- the host reads the prints after the budget: the original
local logs = {}

function print(...)
  local parts = {}
  for i = 1, math.max(select("#", ...), 1) do
    local v = select(i, ...)
    parts[i] = type(v) == "table" and stringify.format(v) or tostring(v)
  end
  local line = table.concat(parts, "\t")
  logs[#logs + 1] = line
  return line
end

function Prompt()
  return tostring(Name) .. "@aos[Inbox:" .. tostring(#Inbox) .. "]> "
end

function Send(msg)
  local sent = ao.send(msg)
  return { output = "Message added to outbox", onReply = sent.onReply, message = sent }
end

function Spawn(...)
  local module, msg
  if select("#", ...) == 1 then
    module, msg = ao._module, ...
  else
    module, msg = ...
  end
  local made = ao.spawn(module, msg or {})
  return { output = "Spawn process request added to outbox", after = made.after,
    onReply = made.onReply }
end

function Tab(msg)
  local out = {}
  for _, o in ipairs(msg.TagArray or msg.Tags) do
    if out[o.name] == nil then out[o.name] = o.value end
  end
  return out
end

local function eval(msg)
  local code = msg.Data
  if type(code) ~= "string" then error("Eval: the Data must be Lua text", 0) end
  local fn, err = load("return " .. code, "=eval", "t", _G)
  if not fn then fn, err = load(code, "=eval", "t", _G) end
  if not fn then
    -- `//` comment lines (PROTOCOL 8.8), tried only when the text does not compile
    local fixed, count = ("\n" .. code):gsub("\n([ \t]*)//", "\n%1--")
    if count > 0 then fn = load(fixed:sub(2), "=eval", "t", _G) end
    if not fn then error(err, 0) end
  end
  local value = fn()
  if value ~= nil then
    logs[#logs + 1] = type(value) == "table" and stringify.format(value) or tostring(value)
  end
end

local function is_eval(msg)
  return msg.Action == "Eval" and msg.From == Owner
end

local function short(id)
  if type(id) ~= "string" or #id <= 6 then return tostring(id) end
  return id:sub(1, 3) .. "..." .. id:sub(-3)
end

local function keep(msg)
  table.insert(Inbox, msg)
  while #Inbox > MAX_INBOX do table.remove(Inbox, 1) end
  if msg.Action then
    print("New Message From " .. short(msg.From) .. ": Action = " .. tostring(msg.Action))
  else
    print("New Message From " .. short(msg.From) .. ": Data = " .. tostring(msg.Data):sub(1, 20))
  end
end

local function is_anything() return true end

local process = {}

function process.take_logs()
  local taken = logs
  logs = {}
  return concat(taken, "\n")
end

function process.handle(msg, env)
  logs = {}
  ao.init(env)
  ao.id = env.Process.Id
  os.time = function() return msg.Timestamp end
  msg.TagArray = msg.Tags
  ao.normalize(msg)
  msg.Tags = Tab(msg)
  if msg.Tags["Content-Type"] == "application/json" and type(msg.Data) == "string" then
    msg.Data = json.decode(msg.Data ~= "" and msg.Data or "{}")
  end
  msg.reply = function(reply)
    reply.Target = msg["Reply-To"] or reply.Target or msg.From
    reply["X-Reference"] = msg["X-Reference"] or msg.Reference
    reply["X-Origin"] = msg["X-Origin"]
    return ao.send(reply)
  end
  msg.forward = function(target, extra)
    local copy = ao.sanitize(msg)
    copy.reply, copy.forward = nil, nil
    for k, v in pairs(extra or {}) do copy[k] = v end
    copy.Target = target
    copy["Reply-To"] = msg["Reply-To"] or msg.From
    copy["X-Reference"] = msg["X-Reference"] or msg.Reference
    copy["X-Origin"] = msg["X-Origin"] or msg.From
    return ao.send(copy)
  end
  Handlers.add("_eval", is_eval, eval)
  Handlers.append("_default", is_anything, keep)
  Handlers.evaluate(msg, env)
  local output = { data = process.take_logs(), prompt = Prompt() }
  if msg.Action ~= "Eval" then output.print = true end
  return { Output = output, Messages = ao.outbox.Messages, Spawns = ao.outbox.Spawns }
end

return process
