"""The AO unit: processes in Lua, messages ordered by the chain (the scheduler unit), and the
compute, messenger and cron units over them (PROTOCOL 8)."""
