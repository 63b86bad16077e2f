-- json: a pure Lua JSON codec for AO processes (the `json` module of aos, our own code).
--
-- encode(value) is deterministic: an object's keys are written in byte order; a table whose
-- keys are exactly 1..n is an array, an empty table is `[]`, a table with other keys must
-- have only string keys (an object). Integers are written in decimal, floats as the
-- shortest `%.<p>g` text that reads back to the same double, with `.0` added when that text
-- would read as an integer (so a float stays a float through decode). NaN, infinities,
-- functions, cycles and mixed tables are errors. Strings are written byte for byte, with
-- `"`, `\` and the control characters escaped.
-- decode(text) reads standard JSON: numbers with a fraction or an exponent are floats, the
-- others integers (floats beyond 64 bits); `null` is nil; errors name the byte position.

local json = { _version = "1.0" }

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

local function escape_char(c)
  return escapes[c] or string.format("\\u%04x", c:byte())
end

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', escape_char) .. '"'
end

local function encode_float(x)
  if x ~= x or x == math.huge or x == -math.huge then
    error("json: cannot encode " .. tostring(x), 0)
  end
  local text
  for precision = 1, 17 do
    text = string.format("%." .. precision .. "g", x)
    if tonumber(text) == x then break end
  end
  if not text:find("[%.eEn]") then text = text .. ".0" end
  return text
end

local encode_value

local function encode_table(t, stack, out)
  if stack[t] then error("json: cannot encode a cycle", 0) end
  stack[t] = true
  local n = 0
  local strings = true
  local count = 0
  for k in next, t do
    count = count + 1
    if math.type(k) == "integer" and k > 0 then
      if k > n then n = k end
      strings = false
    elseif type(k) ~= "string" then
      error("json: cannot encode a table key of type " .. type(k), 0)
    end
  end
  if count == 0 then
    out[#out + 1] = "[]"
  elseif n == count then
    out[#out + 1] = "["
    for i = 1, n do
      if i > 1 then out[#out + 1] = "," end
      encode_value(t[i], stack, out)
    end
    out[#out + 1] = "]"
  elseif strings then
    local keys = {}
    for k in next, t do keys[#keys + 1] = k end
    table.sort(keys)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = encode_string(k)
      out[#out + 1] = ":"
      encode_value(t[k], stack, out)
    end
    out[#out + 1] = "}"
  else
    error("json: cannot encode a table with mixed or sparse keys", 0)
  end
  stack[t] = nil
end

encode_value = function(v, stack, out)
  local kind = type(v)
  if kind == "nil" then
    out[#out + 1] = "null"
  elseif kind == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif kind == "number" then
    if math.type(v) == "integer" then
      out[#out + 1] = string.format("%d", v)
    else
      out[#out + 1] = encode_float(v)
    end
  elseif kind == "string" then
    out[#out + 1] = encode_string(v)
  elseif kind == "table" then
    encode_table(v, stack, out)
  else
    error("json: cannot encode a value of type " .. kind, 0)
  end
end

function json.encode(value)
  local out = {}
  encode_value(value, {}, out)
  return table.concat(out)
end

-- Decoding

local function fail(text, pos, what)
  error(string.format("json: %s at position %d", what, pos), 0)
end

local function skip(text, pos)
  return text:find("[^ \t\r\n]", pos) or #text + 1
end

local decode_value

local function utf8_of(code)
  return utf8.char(code)
end

local function decode_string(text, pos)
  local out = {}
  local i = pos + 1
  while true do
    local j = text:find('["\\%c]', i)
    if not j then fail(text, pos, "unterminated string") end
    out[#out + 1] = text:sub(i, j - 1)
    local c = text:sub(j, j)
    if c == '"' then
      return table.concat(out), j + 1
    elseif c == "\\" then
      local e = text:sub(j + 1, j + 1)
      local simple = ({ ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f",
        n = "\n", r = "\r", t = "\t" })[e]
      if simple then
        out[#out + 1] = simple
        i = j + 2
      elseif e == "u" then
        local hex = text:match("^%x%x%x%x", j + 2)
        if not hex then fail(text, j, "invalid \\u escape") end
        local code = tonumber(hex, 16)
        i = j + 6
        if code >= 0xD800 and code <= 0xDBFF then
          local low = text:match("^\\u(%x%x%x%x)", i)
          local lowcode = low and tonumber(low, 16)
          if lowcode and lowcode >= 0xDC00 and lowcode <= 0xDFFF then
            code = 0x10000 + (code - 0xD800) * 0x400 + (lowcode - 0xDC00)
            i = i + 6
          end
        end
        out[#out + 1] = utf8_of(code)
      else
        fail(text, j, "invalid escape")
      end
    else
      fail(text, j, "control character in string")
    end
  end
end

local function decode_number(text, pos)
  local number = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
  if not number or not number:match("^-?%d") then fail(text, pos, "invalid number") end
  if not (number:match("^-?0$") or number:match("^-?0[%.eE]") or number:match("^-?[1-9]")) then
    fail(text, pos, "invalid number")
  end
  local value
  if number:find("[%.eE]") then
    if not number:match("^-?%d+%.?%d*$") and not number:match("^-?%d+%.?%d*[eE][-+]?%d+$") then
      fail(text, pos, "invalid number")
    end
    if number:match("%.$") or number:match("%.[eE]") then fail(text, pos, "invalid number") end
    value = tonumber(number)
  else
    value = math.tointeger(tonumber(number)) or tonumber(number .. ".0")
  end
  if value == nil then fail(text, pos, "invalid number") end
  return value, pos + #number
end

local literals = { ["true"] = true, ["false"] = false }

decode_value = function(text, pos, depth)
  if depth > 512 then fail(text, pos, "nesting too deep") end
  pos = skip(text, pos)
  local c = text:sub(pos, pos)
  if c == "{" then
    local object = {}
    pos = skip(text, pos + 1)
    if text:sub(pos, pos) == "}" then return object, pos + 1 end
    while true do
      pos = skip(text, pos)
      if text:sub(pos, pos) ~= '"' then fail(text, pos, "expected a string key") end
      local key
      key, pos = decode_string(text, pos)
      pos = skip(text, pos)
      if text:sub(pos, pos) ~= ":" then fail(text, pos, "expected ':'") end
      object[key], pos = decode_value(text, pos + 1, depth + 1)
      pos = skip(text, pos)
      local d = text:sub(pos, pos)
      if d == "}" then return object, pos + 1 end
      if d ~= "," then fail(text, pos, "expected ',' or '}'") end
      pos = pos + 1
    end
  elseif c == "[" then
    local array = {}
    local n = 0
    pos = skip(text, pos + 1)
    if text:sub(pos, pos) == "]" then return array, pos + 1 end
    while true do
      n = n + 1
      array[n], pos = decode_value(text, pos, depth + 1)
      pos = skip(text, pos)
      local d = text:sub(pos, pos)
      if d == "]" then return array, pos + 1 end
      if d ~= "," then fail(text, pos, "expected ',' or ']'") end
      pos = pos + 1
    end
  elseif c == '"' then
    return decode_string(text, pos)
  elseif c == "-" or c:match("%d") then
    return decode_number(text, pos)
  else
    for word, value in pairs(literals) do
      if text:sub(pos, pos + #word - 1) == word then return value, pos + #word end
    end
    if text:sub(pos, pos + 3) == "null" then return nil, pos + 4 end
    fail(text, pos, c == "" and "unexpected end" or "unexpected character")
  end
end

function json.decode(text)
  if type(text) ~= "string" then
    error("json: expected a string to decode, got " .. type(text), 0)
  end
  local value, pos = decode_value(text, 1, 0)
  pos = skip(text, pos)
  if pos <= #text then fail(text, pos, "trailing characters") end
  return value
end

return json
