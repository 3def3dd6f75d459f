-- wrk script: POST one MCP tools/call per request, each with its own JSON-RPC id.
-- env: TOOL=echo|sleep_ms, SLEEP=ms, SID=session id (session mode), MODERN=1 (2026-07-28:
-- per-request _meta and Mcp-Method/Mcp-Name headers, no session).
local tool = os.getenv("TOOL") or "echo"
local args
if tool == "sleep_ms" then args = '{"ms":' .. (os.getenv("SLEEP") or "10") .. '}'
elseif tool == "zero" then args = '{}'
else args = '{"text":"' .. string.rep("x", 64) .. '"}' end
-- TASKS=1: the request declares the tasks extension, so task-capable tools become tasks.
local caps = os.getenv("TASKS") == "1" and '{"extensions":{"io.modelcontextprotocol/tasks":{}}}' or '{}' 
local modern = os.getenv("MODERN") == "1"
local meta = ''
if modern then
  meta = ',"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"wrk","version":"1"},"io.modelcontextprotocol/clientCapabilities":' .. caps .. '}'
end
local pre = '{"jsonrpc":"2.0","id":'
local post = ',"method":"tools/call","params":{"name":"' .. tool .. '","arguments":' .. args .. meta .. '}}'
wrk.method = "POST"
wrk.body = pre .. '1' .. post
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = modern and "2026-07-28" or (os.getenv("VERSION") or "2025-06-18")
if modern then wrk.headers["Mcp-Method"] = "tools/call"; wrk.headers["Mcp-Name"] = tool end
local sid = os.getenv("SID")
if sid and sid ~= "" then wrk.headers["Mcp-Session-Id"] = sid end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, pre .. n .. post)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_us=%d p99_us=%d n=%d non2xx=%d errs=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout))
end
