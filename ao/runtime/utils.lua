-- utils: the matching rules of aos handlers (matchesSpec, matchesPattern) and a few helpers.
--
-- A spec is a function (called with the message; its result is the pattern's result), a
-- string (the message's Action must equal it), or a table of key -> pattern that must all
-- match `msg[key]` (or `msg.Tags[key]`). A pattern is "_" (anything present), a function
-- (called with the value and the message), a string (equal to the value, or, when it holds
-- one of Lua's magic characters ^$()%.[]*+? (not `-`, as aos: "Infer-Response" is a plain
-- name), a Lua pattern the value matches), or a table of patterns of which one must match.

local utils = { _version = "1.0" }

function utils.matchesPattern(pattern, value, msg)
  if pattern == nil then return false end
  if pattern == "_" then return value ~= nil end
  local kind = type(pattern)
  if kind == "function" then
    return pattern(value, msg) and true or false
  elseif kind == "string" then
    if type(value) ~= "string" then return false end
    if value == pattern then return true end
    if pattern:find("[%^%$%(%)%%%.%[%]%*%+%?]") then
      return value:match(pattern) ~= nil
    end
    return value == pattern
  elseif kind == "table" then
    for _, sub in ipairs(pattern) do
      if utils.matchesPattern(sub, value, msg) then return true end
    end
    return false
  end
  return false
end

function utils.matchesSpec(msg, spec)
  local kind = type(spec)
  if kind == "function" then
    return spec(msg)
  elseif kind == "string" then
    return msg.Action ~= nil and msg.Action == spec
  elseif kind == "table" then
    local keys = {}
    for key in pairs(spec) do keys[#keys + 1] = key end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, key in ipairs(keys) do
      local value = msg[key]
      if value == nil and type(msg.Tags) == "table" then value = msg.Tags[key] end
      if value == nil then return false end
      if not utils.matchesPattern(spec[key], value, msg) then return false end
    end
    return true
  end
  return false
end

function utils.includes(value, list)
  for _, item in ipairs(list) do
    if item == value then return true end
  end
  return false
end

function utils.keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  return out
end

function utils.values(t)
  local out = {}
  for _, v in pairs(t) do out[#out + 1] = v end
  return out
end

function utils.map(fn, list)
  local out = {}
  for i, v in ipairs(list) do out[i] = fn(v, i) end
  return out
end

function utils.filter(fn, list)
  local out = {}
  for _, v in ipairs(list) do
    if fn(v) then out[#out + 1] = v end
  end
  return out
end

function utils.reduce(fn, initial, list)
  local acc = initial
  for i, v in ipairs(list) do acc = fn(acc, v, i) end
  return acc
end

function utils.find(fn, list)
  for _, v in ipairs(list) do
    if fn(v) then return v end
  end
  return nil
end

return utils
