-- router: the APUS AI router process (our own code, after APUS's published API): credits
-- bought with the APUS token, `Infer` requests run as inferchain tasks by the router's
-- bridge, `Infer-Response` sent back to the client process, and the state that the unit's
-- `/{router}~process@1.0/now/cache/...` routes read (PROTOCOL 8.10).
--
-- Spawn tags, read once as the module loads:
--   Token (required): the APUS token process; only its Credit-Notice buys credits.
--   Bridge (required): the address of the bridge's key, the only sender of Task-Status.
--   Model: the model named in every task's modelOptions (default "gemma3-27b").
--   Armstrongs-Per-Credit: the price of one credit (default 10^10: 100 credits per APUS).
--   Infer-Price: the credits one Infer costs (default 1).
--   Target-Count: the task's targetCount (default 1).
--
-- State (globals): `cache` = {credits = client -> credits (an integer), tasks = "<client>-
-- <reference>" -> the task object, taskStats = {total_tasks, pending, processing, successed,
-- failed}}; `Sessions` = "<client>/<session>" -> {turns = {{prompt, result}, ...}};
-- `Pending` = task key -> {client, reference, prompts, options} for every task that is not
-- final (what the bridge reads and runs).
--
-- Actions:
--   Credit-Notice from Token: with X-Reason = Buy-Credits, Quantity // Armstrongs-Per-Credit
--     credits go to the Sender and the remainder (Quantity % Armstrongs-Per-Credit) is sent
--     back to it; without that reason the whole Quantity is sent back. Either way the Sender
--     gets {Action = "Credit-Purchase", Credits, Quantity, Refund, Balance} when credits were
--     bought. What is sent back is a Transfer of the token to the Sender, X-Reason = Refund.
--   Debit-Notice from Token: nothing (the router's own refunds).
--   Infer {X-Prompt, X-Reference?, X-Session?, X-Options?}: checked, then Infer-Price credits
--     taken and the task recorded `pending`. A refused Infer changes nothing and is answered
--     at once with an error Infer-Response.
--   Task-Status from Bridge {Task-Reference = the task key, Status, Task-Hash, Worker}:
--     `processing` (the task is in a block), `successed` (Data = JSON {result, attestation})
--     or `failed` (Data = the reason; the Infer's credits are given back). A final status
--     sends the client its Infer-Response; anything else about a final task is ignored, so a
--     client gets exactly one Infer-Response per accepted Infer.
--   Info: {Token, Bridge, Model, Armstrongs-Per-Credit, Infer-Price, Target-Count}.
--
-- An Infer-Response on success has Data = JSON {result, attestation}, X-Reference and
-- X-Session; on error a Code tag, and the message in X-Reference (where APUS's table puts
-- it) and in Data (what its handler example prints), with Request-Reference = the request's
-- reference and X-Session when there is one.

local json = require("json")

local tags = ao.env.Process.Tags

local function config_int(name, default, low)
  local text = tags[name]
  if text == nil then return default end
  local value = type(text) == "string" and text:match("^%d+$") and math.tointeger(tonumber(text))
  if not value or value < low then
    error("spawn tag " .. name .. " must be an integer of at least " .. low .. ", got "
      .. string.format("%q", tostring(text):sub(1, 64)), 0)
  end
  return value
end

local function config_text(name, default)
  local text = tags[name] or default
  if type(text) ~= "string" or text == "" then
    error("spawn tag " .. name .. " is required", 0)
  end
  return text
end

Router = Router or {
  token = config_text("Token"),
  bridge = config_text("Bridge"):lower(),
  model = config_text("Model", "gemma3-27b"),
  armstrongs_per_credit = config_int("Armstrongs-Per-Credit", 10000000000, 1),
  price = config_int("Infer-Price", 1, 0),
  target_count = config_int("Target-Count", 1, 1),
}

cache = cache or {
  credits = {},
  tasks = {},
  taskStats = { total_tasks = 0, pending = 0, processing = 0, successed = 0, failed = 0 },
}
Sessions = Sessions or {}
Pending = Pending or {}

local MAX_PROMPTS = 65536 -- bytes of a task's prompts: older turns are left out past it
local OPTIONS = {
  temperature = { default = 0.7, low = 0.0, high = 2.0 },
  top_p = { default = 0.9, low = 0.0, high = 1.0 },
  max_tokens = { default = 2048, low = 1, high = 8192, integer = true },
}
local OPTION_NAMES = { "max_tokens", "temperature", "top_p" }

local function credits_of(client)
  return cache.credits[client] or 0
end

local function add_credits(client, amount)
  cache.credits[client] = credits_of(client) + amount
end

local function count(status, delta)
  cache.taskStats[status] = cache.taskStats[status] + delta
end

local function refund(recipient, quantity)
  if quantity <= 0 then return end
  ao.send({ Target = Router.token, Action = "Transfer", Recipient = recipient,
    Quantity = tostring(quantity), ["X-Reason"] = "Refund" })
end

local function from_token(msg)
  return msg.From == Router.token
end

local function from_bridge(msg)
  return type(msg.From) == "string" and msg.From:lower() == Router.bridge
end

local function has_action(action)
  return function(msg) return msg.Action == action end
end

-- Credits

Handlers.add("credit-notice", function(msg)
  return msg.Action == "Credit-Notice" and from_token(msg)
end, function(msg)
  local sender = msg.Sender
  local quantity = type(msg.Quantity) == "string" and msg.Quantity:match("^%d+$")
    and math.tointeger(tonumber(msg.Quantity))
  if type(sender) ~= "string" or sender == "" or not quantity then
    print("Credit-Notice without a Sender or a Quantity: ignored")
    return
  end
  if msg["X-Reason"] ~= "Buy-Credits" then
    refund(sender, quantity)
    return
  end
  local bought = quantity // Router.armstrongs_per_credit
  local rest = quantity % Router.armstrongs_per_credit
  add_credits(sender, bought)
  refund(sender, rest)
  ao.send({ Target = sender, Action = "Credit-Purchase", Credits = tostring(bought),
    Quantity = tostring(quantity), Refund = tostring(rest),
    Balance = tostring(credits_of(sender)) })
end)

Handlers.add("debit-notice", function(msg)
  return msg.Action == "Debit-Notice" and from_token(msg)
end, function() end)

-- Infer

local function error_response(msg, client, reference, session, code, text)
  ao.send({ Target = client, Action = "Infer-Response", Code = code, ["X-Reference"] = text,
    Data = text, ["Request-Reference"] = reference, ["X-Session"] = session })
end

-- X-Options -> (options) or (nil, why).
local function parse_options(text)
  local options = {}
  for name, spec in pairs(OPTIONS) do options[name] = spec.default end
  if text == nil then return options end
  if type(text) ~= "string" or not text:match("^%s*{") then
    return nil, "X-Options must be a JSON object"
  end
  local ok, given = pcall(json.decode, text)
  if not ok or type(given) ~= "table" then
    return nil, "X-Options is not valid JSON: " .. tostring(given)
  end
  for name, value in pairs(given) do
    local spec = OPTIONS[name]
    if spec == nil then
      return nil, "X-Options: unknown option " .. string.format("%q", tostring(name))
        .. "; known: " .. table.concat(OPTION_NAMES, ", ")
    end
    if type(value) ~= "number" or (spec.integer and math.type(value) ~= "integer") then
      return nil, "X-Options." .. name .. " must be " .. (spec.integer and "an integer"
        or "a number") .. ", got " .. tostring(value)
    end
    if value < spec.low or value > spec.high then
      return nil, "X-Options." .. name .. " must be from " .. tostring(spec.low) .. " to "
        .. tostring(spec.high) .. ", got " .. tostring(value)
    end
    options[name] = value
  end
  return options
end

-- The task's prompts: the session's turns, then the new prompt; the oldest turns are left
-- out while the text is longer than MAX_PROMPTS.
local function session_prompts(turns, prompt)
  if #turns == 0 then return prompt end
  local tail = "User: " .. prompt .. "\nAssistant:"
  local parts, size = {}, #tail
  for i = #turns, 1, -1 do
    local turn = "User: " .. turns[i].prompt .. "\nAssistant: " .. turns[i].result .. "\n"
    if size + #turn > MAX_PROMPTS then break end
    table.insert(parts, 1, turn)
    size = size + #turn
  end
  return table.concat(parts) .. tail
end

Handlers.add("infer", has_action("Infer"), function(msg)
  local client = msg.From
  local reference = msg["X-Reference"] or msg.Id
  local session = msg["X-Session"]
  local prompt = msg["X-Prompt"]
  if type(prompt) ~= "string" or prompt == "" then
    return error_response(msg, client, reference, session, "INVALID_PROMPT",
      "X-Prompt is required: the text to send to the model")
  end
  local options, why = parse_options(msg["X-Options"])
  if options == nil then
    return error_response(msg, client, reference, session, "INVALID_OPTIONS", why)
  end
  local key = client .. "-" .. reference
  if cache.tasks[key] ~= nil then
    return error_response(msg, client, reference, session, "DUPLICATE_REFERENCE",
      "X-Reference " .. reference .. " was used already by this process")
  end
  if session ~= nil and Sessions[client .. "/" .. session] == nil then
    return error_response(msg, client, reference, session, "INVALID_SESSION",
      "no session " .. session .. " of this process (leave X-Session out to start one)")
  end
  if credits_of(client) < Router.price then
    return error_response(msg, client, reference, session, "INSUFFICIENT_CREDITS",
      "an Infer costs " .. Router.price .. " credits, this process has "
        .. credits_of(client) .. ": buy credits with a Transfer of APUS to the router, "
        .. "X-Reason = Buy-Credits")
  end
  if session == nil then
    session = "session-" .. msg.Id
    Sessions[client .. "/" .. session] = { turns = {} }
  end
  add_credits(client, -Router.price)
  cache.tasks[key] = {
    status = "pending",
    created_at = msg.Timestamp // 1000,
    processed_at = 0,
    prompt = prompt,
    options = msg["X-Options"] or "{}",
    session_id = session,
    result = "",
    client = client,
    worker = "",
    reference = reference,
    task_hash = "",
  }
  count("total_tasks", 1)
  count("pending", 1)
  Pending[key] = {
    client = client,
    reference = reference,
    prompts = session_prompts(Sessions[client .. "/" .. session].turns, prompt),
    options = options,
  }
end)

-- Task-Status, from the bridge

local function finish(key, task, status, msg)
  count(task.status, -1)
  count(status, 1)
  task.status = status
  task.processed_at = msg.Timestamp // 1000
  Pending[key] = nil
end

Handlers.add("task-status", function(msg)
  return msg.Action == "Task-Status" and from_bridge(msg)
end, function(msg)
  local key = msg["Task-Reference"]
  local task = type(key) == "string" and cache.tasks[key] or nil
  if task == nil or task.status == "successed" or task.status == "failed" then return end
  local status = msg.Status
  if status == "processing" then
    if task.status == "pending" then
      count("pending", -1)
      count("processing", 1)
      task.status = "processing"
      task.task_hash = msg["Task-Hash"] or ""
    end
  elseif status == "successed" then
    local ok, body = pcall(json.decode, type(msg.Data) == "string" and msg.Data or "")
    if not ok or type(body) ~= "table" or type(body.result) ~= "string" then
      print("Task-Status successed without {result, attestation}: ignored")
      return
    end
    finish(key, task, "successed", msg)
    task.result = body.result
    task.worker = msg.Worker or ""
    task.task_hash = msg["Task-Hash"] or task.task_hash
    task.attestation = body.attestation
    local turns = Sessions[task.client .. "/" .. task.session_id].turns
    turns[#turns + 1] = { prompt = task.prompt, result = task.result }
    ao.send({ Target = task.client, Action = "Infer-Response",
      ["X-Reference"] = task.reference, ["X-Session"] = task.session_id,
      Data = json.encode({ result = task.result, attestation = task.attestation }) })
  elseif status == "failed" then
    finish(key, task, "failed", msg)
    task.task_hash = msg["Task-Hash"] or task.task_hash
    task.error = type(msg.Data) == "string" and msg.Data or "the task failed"
    add_credits(task.client, Router.price)
    error_response(msg, task.client, task.reference, task.session_id, "TASK_FAILED",
      "the inference task failed: " .. task.error)
  end
end)

Handlers.add("info", has_action("Info"), function(msg)
  msg.reply({ Token = Router.token, Bridge = Router.bridge, Model = Router.model,
    ["Armstrongs-Per-Credit"] = tostring(Router.armstrongs_per_credit),
    ["Infer-Price"] = tostring(Router.price), ["Target-Count"] = tostring(Router.target_count),
    Data = "APUS AI router" })
end)
