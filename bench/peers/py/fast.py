"""FastMCP 4.1 peer server: tools echo + sleep_ms.
usage: fast.py http PORT [--stateful] | fast.py stdio"""
import asyncio
import sys

from fastmcp import FastMCP

mcp = FastMCP("bench")


@mcp.tool
def echo(text: str) -> str:
    """Echo the input text"""
    return text


@mcp.tool
async def sleep_ms(ms: int) -> str:
    """Sleep ms milliseconds"""
    await asyncio.sleep(ms / 1000)
    return "ok"


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "http"
    if mode == "stdio":
        mcp.run(transport="stdio", show_banner=False)
    else:
        stateful = "--stateful" in sys.argv
        mcp.run(transport="http", host="127.0.0.1", port=int(sys.argv[2]), show_banner=False,
                log_level="warning", stateless_http=not stateful, json_response=not stateful)
