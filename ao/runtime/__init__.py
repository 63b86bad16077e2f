"""The AO process runtime: Lua 5.4 (lupa) in a sandbox, with our aos-compatible runtime.

`ProcessRuntime(module_source, process, limits)` makes a process's Lua state;
`apply(message)`, `dry_run(message)` and `memory()` are what the compute unit calls.

The memory format (`memory()`, version AOMEM/1). The bytes are `AOMEM/1\\n`, then the
encoding of the globals table, then that of the string metatable. A value is encoded as:

- `n`: nil (only an upvalue or a missing metatable holds it);
- `T`, `F`: true, false;
- `i<decimal>;`: an integer (64-bit, `-` for negatives);
- `d<text>;`: a float, `<text>` the C `%.<p>g` of it with the smallest p in 1..17 that reads
  back to the same double (`1`, `0.1`, `1e+100`), `-0` for negative zero, `inf`, `-inf`,
  `nan`;
- `s<length>:<bytes>`: a string, its byte length in decimal then its bytes;
- `t<id>:{<key><value>...}<metatable>`: a table seen for the first time. Keys that are
  booleans, numbers or strings come first, in that type order, false before true, numbers
  by value, strings by bytes; then keys that are tables or functions: those already given
  an id by that id, then the others by their own encoding (key then value, encoded apart).
  The metatable is a value (`n` when none);
- `f<id>:<path><source>(<name><value>...)`: a Lua function seen for the first time:
  `<path>` (a string) is where the walk first met it (`_G.Handlers.list[1].handle`, with
  `["key"]`, `[1]`, `<metatable>`, `<key>`, `<upvalue name>` steps), `<source>` (a string)
  its chunk and first line (`module:12`, `eval:1`), then each upvalue's name (a string)
  and value, in upvalue order;
- `c<id>:<path>`: a C function (or one of the sandbox's own), by its first path only;
- `h<id>:<status>`: a coroutine and its status; `u<id>;` any userdata;
- `r<id>;`: a table, function, coroutine or userdata already encoded: ids are 1, 2, ...
  in the order the depth-first walk first meets them, so shared tables and cycles are
  references.

Two runtimes that applied the same messages give the same bytes. The json module's encode
order, the message's shape, Output and the send tags are documented in the Lua sources
(`json.lua`, `process.lua`, `ao.lua`).
"""

from ao.runtime.runtime import ProcessRuntime
from ao.runtime.values import Limits, Message, ModuleError, ProcessInfo, Result

__all__ = ["Limits", "Message", "ModuleError", "ProcessInfo", "ProcessRuntime", "Result"]
