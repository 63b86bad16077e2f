-- ao: the process's side of AO (the `ao` module of aos, our own code): its id and env, the
-- outbox of one message, send and spawn, the Reference counter.
--
-- ao.send(msg) puts into the outbox a message {Target, Data, Anchor, Tags}: Tags are
-- Data-Protocol=ao, Variant=ao.TN.1, Type=Message, Reference=<counter>, then every other key
-- of `msg` but Target, Data, Anchor, Tags and From, in byte order of the key (aos takes them
-- in table order, which differs between runs), then the entries of msg.Tags (a list of
-- {name, value} in its order, or a name -> value table in byte order). Anchor is the
-- counter padded to 32 digits. A table Data is encoded as JSON with Content-Type
-- application/json. Tag values are strings (numbers and booleans are converted).
-- ao.spawn(module, msg) does the same into Spawns, with Type=Process, From-Process,
-- From-Module and Module tags, and Data "NODATA" when none.

local json = require("json")

local ao = {
  _version = "1.0",
  id = "",
  _module = "",
  authorities = {},
  reference = 0,
  outbox = { Output = {}, Messages = {}, Spawns = {}, Assignments = {} },
  env = { Process = { Tags = {}, TagArray = {} } },
  nonExtractableTags = {
    "Data-Protocol", "Variant", "From-Process", "From-Module", "Type",
    "From", "Owner", "Anchor", "Target", "Data", "Tags", "Read-Only",
  },
  nonForwardableTags = {
    "Data-Protocol", "Variant", "From-Process", "From-Module", "Type",
    "From", "Owner", "Anchor", "Target", "Tags", "TagArray", "Hash-Chain",
    "Timestamp", "Nonce", "Epoch", "Signature", "Forwarded-By",
    "Pushed-For", "Read-Only", "Cron", "Block-Height", "Reference", "Id",
    "Reply-To",
  },
}

local function member(value, list)
  for _, item in ipairs(list) do
    if item == value then return true end
  end
  return false
end

local function tag_text(name, value, level)
  local kind = type(value)
  if kind == "string" then return value end
  if kind == "number" or kind == "boolean" then return tostring(value) end
  error("tag " .. tostring(name) .. ": a value must be a string, got a " .. kind, level)
end

local function is_list(t)
  local n = 0
  for _ in next, t do n = n + 1 end
  return n == #t
end

local function sorted_keys(t)
  local keys = {}
  for k in next, t do
    if type(k) ~= "string" then
      error("a message's keys must be strings, got a " .. type(k), 4)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  return keys
end

local skipped = { "Target", "Data", "Anchor", "Tags", "From" }

local function add_tags(tags, msg)
  for _, k in ipairs(sorted_keys(msg)) do
    if not member(k, skipped) then
      tags[#tags + 1] = { name = k, value = tag_text(k, msg[k], 4) }
    end
  end
  if type(msg.Tags) == "table" then
    if is_list(msg.Tags) then
      for _, o in ipairs(msg.Tags) do
        tags[#tags + 1] = { name = tostring(o.name), value = tag_text(o.name, o.value, 4) }
      end
    else
      for _, k in ipairs(sorted_keys(msg.Tags)) do
        tags[#tags + 1] = { name = k, value = tag_text(k, msg.Tags[k], 4) }
      end
    end
  end
end

local function data_of(msg, default)
  local data = msg.Data
  if type(data) == "table" then
    msg["Content-Type"] = "application/json"
    return json.encode(data)
  end
  if data == nil then return default end
  return tag_text("Data", data, 4)
end

function ao.clone(obj, seen)
  if type(obj) ~= "table" then return obj end
  seen = seen or {}
  if seen[obj] then return seen[obj] end
  local copy = {}
  seen[obj] = copy
  for k, v in pairs(obj) do copy[ao.clone(k, seen)] = ao.clone(v, seen) end
  return setmetatable(copy, getmetatable(obj))
end

function ao.normalize(msg)
  for _, o in ipairs(msg.Tags) do
    if not member(o.name, ao.nonExtractableTags) then msg[o.name] = o.value end
  end
  return msg
end

function ao.sanitize(msg)
  local copy = ao.clone(msg)
  for k in pairs(msg) do
    if member(k, ao.nonForwardableTags) then copy[k] = nil end
  end
  return copy
end

function ao.init(env)
  if ao.id == "" then ao.id = env.Process.Id end
  if ao._module == "" then ao._module = env.Process.Module or "" end
  if #ao.authorities < 1 then
    for _, o in ipairs(env.Process.TagArray) do
      if o.name == "Authority" then table.insert(ao.authorities, o.value) end
    end
  end
  ao.env = env
  ao.clearOutbox()
end

function ao.clearOutbox()
  ao.outbox = { Output = {}, Messages = {}, Spawns = {}, Assignments = {} }
end

function ao.log(text)
  if type(ao.outbox.Output) ~= "table" then ao.outbox.Output = { ao.outbox.Output } end
  table.insert(ao.outbox.Output, text)
end

function ao.send(msg)
  assert(type(msg) == "table", "msg should be a table")
  ao.reference = ao.reference + 1
  local reference = tostring(ao.reference)
  local data = data_of(msg, "")
  local tags = {
    { name = "Data-Protocol", value = "ao" },
    { name = "Variant", value = "ao.TN.1" },
    { name = "Type", value = "Message" },
    { name = "Reference", value = reference },
  }
  add_tags(tags, msg)
  if msg.Target ~= nil and type(msg.Target) ~= "string" then
    error("ao.send: Target must be a process id (a string)", 2)
  end
  local message = {
    Target = msg.Target or "",
    Data = data,
    Anchor = string.format("%032d", ao.reference),
    Tags = tags,
  }
  table.insert(ao.outbox.Messages, message)
  local sent = { Target = message.Target, Data = data, Anchor = message.Anchor, Tags = tags }
  sent.onReply = function(...)
    local from, resolver = message.Target, ...
    if select("#", ...) == 2 then from, resolver = ... end
    Handlers.once({ From = from, ["X-Reference"] = reference }, resolver)
  end
  return sent
end

function ao.spawn(module, msg)
  assert(type(module) == "string", "Module source id is required!")
  assert(type(msg) == "table", "Message must be a table")
  ao.reference = ao.reference + 1
  local reference = tostring(ao.reference)
  local data = data_of(msg, "NODATA")
  local tags = {
    { name = "Data-Protocol", value = "ao" },
    { name = "Variant", value = "ao.TN.1" },
    { name = "Type", value = "Process" },
    { name = "From-Process", value = ao.id },
    { name = "From-Module", value = ao._module },
    { name = "Module", value = module },
    { name = "Reference", value = reference },
  }
  add_tags(tags, msg)
  local spawn = { Data = data, Anchor = string.format("%032d", ao.reference), Tags = tags }
  table.insert(ao.outbox.Spawns, spawn)
  local made = { Data = data, Anchor = spawn.Anchor, Tags = tags }
  made.onReply = function(callback)
    Handlers.once({ Action = "Spawned", From = ao.id, Reference = reference }, callback)
  end
  made.after = made.onReply
  return made
end

function ao.isTrusted(msg)
  for _, authority in ipairs(ao.authorities) do
    if msg.From == authority or msg.Owner == authority then return true end
  end
  return false
end

return ao
