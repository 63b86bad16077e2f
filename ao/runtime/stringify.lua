-- stringify: a value as text for print and Eval, deterministic: a table is `{ 1, 2, k = v }`,
-- its list part in order then the other keys sorted (numbers, then strings in byte order,
-- then others by their text), strings inside tables quoted, nesting past 8 levels and
-- cycles shown as `{...}` and `<cycle>`.

local stringify = {}

local rank = { number = 1, string = 2, boolean = 3 }

local function before(a, b)
  local ra, rb = rank[type(a)] or 4, rank[type(b)] or 4
  if ra ~= rb then return ra < rb end
  if ra <= 2 then return a < b end
  return tostring(a) < tostring(b)
end

local function format(value, depth, seen)
  if type(value) == "string" then return string.format("%q", value) end
  if type(value) ~= "table" then return tostring(value) end
  if seen[value] then return "<cycle>" end
  if depth > 8 then return "{...}" end
  seen[value] = true
  local parts = {}
  local n = #value
  for i = 1, n do parts[#parts + 1] = format(value[i], depth + 1, seen) end
  local keys = {}
  for k in pairs(value) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, before)
  for _, k in ipairs(keys) do
    local name
    if type(k) == "string" and k:match("^[%a_][%w_]*$") then
      name = k
    else
      name = "[" .. format(k, depth + 1, seen) .. "]"
    end
    parts[#parts + 1] = name .. " = " .. format(value[k], depth + 1, seen)
  end
  seen[value] = nil
  if #parts == 0 then return "{}" end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

function stringify.format(value)
  return format(value, 0, {})
end

return stringify
