-- token: the APUS token process, an AO standard token as aos's token blueprint behaves
-- (our own code). Name and Ticker "APUS", Denomination 12 (10^12 Armstrongs per APUS).
--
-- State (globals, kept in the process's memory): Balances, account -> the balance as the
-- decimal text of a positive integer (an account whose balance is 0 has no entry), and
-- TotalSupply, the same text of the sum of the balances. Amounts are Lua integers (64-bit,
-- no floats), so the supply is at most math.maxinteger (9223372036854775807) Armstrongs:
-- a Mint or Faucet past it is refused.
--
-- Spawn tags read once, as the module loads: `Initial-Supply` (decimal digits, default 0),
-- the owner's balance to begin with; `Faucet = "enabled"` turns the Faucet action on (a dev
-- chain's token: a production token is spawned without it); `Logo`, given back by Info.
--
-- Actions (the `Action` tag). Every answer goes to the message's sender (`msg.From`) and
-- carries `X-Reference` (the message's own `X-Reference`, else its `Reference`), so a
-- sender's `onReply` / `receive` resolves on it.
--   Info: {Name, Ticker, Denomination[, Logo]}.
--   Balance: {Balance, Ticker, Account, Data = the balance} of the `Recipient` tag, else
--     the `Target` tag, else the sender.
--   Balances: Data = JSON object account -> balance text (keys in byte order).
--   Total-Supply: {Action = "Total-Supply", Ticker, Data = the supply}.
--   Transfer {Recipient, Quantity}: Quantity decimal digits of a positive integer, at most
--     the sender's balance. The sender gets a Debit-Notice, the recipient a Credit-Notice,
--     each with Sender, Recipient, Quantity (canonical decimal text) and every `X-` tag of
--     the Transfer (as aos forwards them); a `Cast` tag leaves both out. A refused Transfer
--     changes nothing and sends the sender {Action = "Transfer-Error", Message-Id, Error}.
--   Mint {Quantity[, Recipient]}: the owner only; adds Quantity to Recipient (default the
--     owner) and to the supply, answered {Action = "Mint-Notice", Recipient, Quantity}; a
--     refused Mint sends {Action = "Mint-Error", Message-Id, Error}.
--   Faucet: when enabled, adds 10 APUS to the sender and to the supply and sends the sender
--     a Credit-Notice (Sender = this process, X- tags forwarded); otherwise, or past the
--     largest supply, {Action = "Faucet-Error", Message-Id, Error}.

local json = require("json")

local ARMSTRONGS = 1000000000000 -- 10^12: one APUS
local FAUCET_GRANT = 10 * ARMSTRONGS
local MAX_TEXT = tostring(math.maxinteger)

Name = "APUS"
Ticker = "APUS"
Denomination = 12
Logo = Logo or ao.env.Process.Tags.Logo

-- An amount's text -> (integer) or (nil, why). Decimal digits only: no sign, no spaces,
-- no exponent; leading zeros are read as the number they spell. A refusal quotes at most
-- 64 bytes of the text.
local function amount(text, what)
  if text == nil then return nil, what .. " is required!" end
  if type(text) ~= "string" or not text:match("^%d+$") then
    return nil, what .. " must be a whole number of Armstrongs in decimal digits, got "
      .. string.format("%q", tostring(text):sub(1, 64))
  end
  local digits = text:match("^0*(%d-)$")
  if digits == "" then digits = "0" end
  if #digits > #MAX_TEXT or (#digits == #MAX_TEXT and digits > MAX_TEXT) then
    return nil, what .. " is too large: at most " .. MAX_TEXT
  end
  return math.tointeger(tonumber(digits))
end

local function positive(text, what)
  local value, why = amount(text, what)
  if value == nil then return nil, why end
  if value <= 0 then return nil, what .. " must be greater than 0" end
  return value
end

local function balance_of(account)
  local text = Balances[account]
  if text == nil then return 0 end
  return math.tointeger(tonumber(text))
end

local function set_balance(account, value)
  Balances[account] = value ~= 0 and tostring(value) or nil
end

local function supply()
  return math.tointeger(tonumber(TotalSupply))
end

-- Adds `value` to `account` and to the supply; false when the supply would pass the
-- largest integer.
local function issue(account, value)
  local total = supply()
  if value > math.maxinteger - total then return false end
  set_balance(account, balance_of(account) + value)
  TotalSupply = tostring(total + value)
  return true
end

if Balances == nil then
  local initial, why = amount(ao.env.Process.Tags["Initial-Supply"] or "0", "Initial-Supply")
  if initial == nil then error(why, 0) end
  Balances = {}
  TotalSupply = "0"
  issue(Owner, initial)
end

FaucetEnabled = ao.env.Process.Tags.Faucet == "enabled"

-- The answer to `msg`, to its sender, with its X-Reference.
local function answer(msg, fields)
  fields.Target = msg.From
  fields["X-Reference"] = msg["X-Reference"] or msg.Reference
  return ao.send(fields)
end

local function refuse(msg, action, why)
  return answer(msg, { Action = action, ["Message-Id"] = msg.Id, Error = why })
end

-- Every X- tag of `msg` copied into `notice` (the value msg.<name> holds, as aos).
local function forward_x_tags(msg, notice)
  for _, tag in ipairs(msg.TagArray) do
    local name = tag.name
    if name:sub(1, 2) == "X-" and notice[name] == nil then notice[name] = msg[name] end
  end
  return notice
end

local action = Handlers.utils.hasMatchingTag

Handlers.add("info", action("Action", "Info"), function(msg)
  answer(msg, { Name = Name, Ticker = Ticker, Denomination = tostring(Denomination),
    Logo = Logo })
end)

Handlers.add("balance", action("Action", "Balance"), function(msg)
  local account = msg.Tags.Recipient or msg.Tags.Target or msg.From
  local text = tostring(balance_of(account))
  answer(msg, { Balance = text, Ticker = Ticker, Account = account, Data = text })
end)

Handlers.add("balances", action("Action", "Balances"), function(msg)
  local text = next(Balances) == nil and "{}" or json.encode(Balances)
  answer(msg, { Data = text })
end)

Handlers.add("total-supply", action("Action", "Total-Supply"), function(msg)
  answer(msg, { Action = "Total-Supply", Ticker = Ticker, Data = TotalSupply })
end)

Handlers.add("transfer", action("Action", "Transfer"), function(msg)
  local recipient = msg.Recipient
  if type(recipient) ~= "string" or recipient == "" then
    return refuse(msg, "Transfer-Error", "Recipient is required!")
  end
  local quantity, why = positive(msg.Quantity, "Quantity")
  if quantity == nil then return refuse(msg, "Transfer-Error", why) end
  local sender = msg.From
  local held = balance_of(sender)
  if quantity > held then
    return refuse(msg, "Transfer-Error", "Insufficient Balance!")
  end
  set_balance(sender, held - quantity)
  set_balance(recipient, balance_of(recipient) + quantity)
  if msg.Cast then return end
  local text = tostring(quantity)
  answer(msg, forward_x_tags(msg, {
    Action = "Debit-Notice", Sender = sender, Recipient = recipient, Quantity = text,
    Data = "You transferred " .. text .. " to " .. recipient,
  }))
  ao.send(forward_x_tags(msg, {
    Target = recipient, Action = "Credit-Notice", Sender = sender, Recipient = recipient,
    Quantity = text, Data = "You received " .. text .. " from " .. sender,
  }))
end)

Handlers.add("mint", action("Action", "Mint"), function(msg)
  if msg.From ~= Owner then
    return refuse(msg, "Mint-Error", "Only the process owner can mint new " .. Ticker
      .. " tokens!")
  end
  local quantity, why = positive(msg.Quantity, "Quantity")
  if quantity == nil then return refuse(msg, "Mint-Error", why) end
  local recipient = msg.Recipient
  if recipient ~= nil and (type(recipient) ~= "string" or recipient == "") then
    return refuse(msg, "Mint-Error", "Recipient must be an account id")
  end
  recipient = recipient or Owner
  if not issue(recipient, quantity) then
    return refuse(msg, "Mint-Error", "Total supply would exceed " .. MAX_TEXT)
  end
  answer(msg, { Action = "Mint-Notice", Recipient = recipient, Quantity = tostring(quantity),
    Data = "Successfully minted " .. tostring(quantity) })
end)

-- The faucet is a dev chain's: only a token spawned with `Faucet = "enabled"` answers it.
Handlers.add("faucet", action("Action", "Faucet"), function(msg)
  if not FaucetEnabled then
    return refuse(msg, "Faucet-Error", "The faucet is not enabled on this token")
  end
  if not issue(msg.From, FAUCET_GRANT) then
    return refuse(msg, "Faucet-Error", "Total supply would exceed " .. MAX_TEXT)
  end
  local text = tostring(FAUCET_GRANT)
  answer(msg, forward_x_tags(msg, {
    Action = "Credit-Notice", Sender = ao.id, Recipient = msg.From, Quantity = text,
    Data = "You received " .. text .. " from the faucet",
  }))
end)
