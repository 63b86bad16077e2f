"""The Lua examples of APUS's AI router document, verbatim (the handler's `//` line
included), and the ids it uses: the runtime's tests and the router's end-to-end tests run
the same text."""

APUS_ROUTER = "Bf6JJR2tl2Wr38O2-H6VctqtduxHgKF-NzRB9HhTRzo"
APUS_TOKEN = "mqBYxpDsolZmJyBdTK8TJp_ftOuIUXVYcSQ8MYZdJg0"

APUS_BUY_CREDITS = """ao.send({
    Target = "mqBYxpDsolZmJyBdTK8TJp_ftOuIUXVYcSQ8MYZdJg0", -- $APUS Token Process
    Recipient = "Bf6JJR2tl2Wr38O2-H6VctqtduxHgKF-NzRB9HhTRzo", -- Our Router Process
    Action = "Transfer",
    Quantity = "1000000000000", -- e.g., 1 $APUS (10^12 Armstrongs)
    ["X-Reason"] = "Buy-Credits"
})"""

APUS_INFER = """ao.send({
    Target = "Bf6JJR2tl2Wr38O2-H6VctqtduxHgKF-NzRB9HhTRzo",
    Action = "Infer",
    ["X-Prompt"] = "Who are you?",
    ["X-Options"] = '{"temperature": 0.8, "max_tokens": 150}'
})"""

APUS_HANDLER = """Handlers.add(
    "AcceptResponse",
    { Action = "Infer-Response" },
    function (msg)
\t    // check msg.Code for error
\t    if msg.Code then
\t\t    print(msg.Code)
\t\t    print(msg.Data)
\t\t  end
\t    print(msg.Data)
\t    print(msg["X-Reference"])
\t    print(msg["X-Session"])
\t  end
)"""
