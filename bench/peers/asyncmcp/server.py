"""asyncmcp 0.2.1 peer server over its webhook transport: tool echo.
usage: server.py PORT

Clients POST JSON-RPC to http://127.0.0.1:PORT/mcp/request with X-Client-ID (initialize carries
params._meta.webhookUrl; the 200 answer has X-Session-ID); every answer arrives as a POST to that
webhook URL. Set up the way asyncmcp's examples/webhook_server.py does: an mcp 1.x low-level Server
run by asyncmcp's WebhookSessionManager, its ASGI app served by uvicorn.
Needs its own venv (asyncmcp pins mcp<2): bench/peers/asyncmcp/.venv, from requirements.txt."""
import logging
import sys

import anyio
import mcp.types as types
import uvicorn
from asyncmcp.webhook.manager import WebhookSessionManager
from asyncmcp.webhook.utils import WebhookServerConfig
from mcp.server.lowlevel import Server

logging.basicConfig(level=logging.WARNING)

app = Server("bench")


@app.list_tools()
async def list_tools() -> list[types.Tool]:
    return [
        types.Tool(
            name="echo",
            description="Echo the input text",
            inputSchema={
                "type": "object",
                "required": ["text"],
                "properties": {"text": {"type": "string"}},
            },
        )
    ]


@app.call_tool()
async def call_tool(name: str, arguments: dict) -> list[types.ContentBlock]:
    if name != "echo":
        raise ValueError(f"Unknown tool: {name}")
    return [types.TextContent(type="text", text=arguments["text"])]


async def main(port: int) -> None:
    manager = WebhookSessionManager(app, WebhookServerConfig(), server_path="/mcp/request")
    async with manager.run():
        config = uvicorn.Config(app=manager.asgi_app(), host="127.0.0.1", port=port, log_level="warning",
                                access_log=False)
        await uvicorn.Server(config).serve()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: server.py PORT")
    anyio.run(main, int(sys.argv[1]))
