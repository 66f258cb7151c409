"""MCP-side figures for the README note (not a test).

Usage: bench.py stdio MEX_BINARY HOME [CALLS]
       bench.py http URL TOKEN_FILE [SECONDS]

stdio: mean latency of one trivial D3 physics_evaluate_formula call over
stdio, sequential. http: calls per second with 8 concurrent clients.
"""

import json
import sys
import time

import anyio

sys.path.insert(0, __import__("os").path.dirname(__file__))
from mcp_client import Target, formula_args  # noqa: E402


async def stdio(t, calls):
    async with t.client() as c:
        args = await formula_args(c)
        for _ in range(20):
            await c.call_tool("physics_evaluate_formula", args)
        start = time.perf_counter()
        for _ in range(calls):
            r = await c.call_tool("physics_evaluate_formula", args)
            assert not r.is_error
        per = (time.perf_counter() - start) / calls
        print(f"stdio evaluate_formula (D3, sequential): {per * 1e3:.3f} ms/call, {1 / per:.0f} calls/s")


async def http(t, seconds):
    counts = [0] * 8

    async def client(i, args):
        async with t.client() as c:
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                r = await c.call_tool("physics_evaluate_formula", args)
                assert not r.is_error
                counts[i] += 1

    async with t.client() as c:
        args = await formula_args(c)
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(client, i, args)
    elapsed = time.perf_counter() - start
    print(f"http 8 concurrent clients: {sum(counts)} calls in {elapsed:.1f} s = {sum(counts) / elapsed:.0f} calls/s")


def main():
    mode = sys.argv[1]
    t = Target([mode] + sys.argv[2:4])
    n = int(sys.argv[4]) if len(sys.argv) > 4 else (300 if mode == "stdio" else 10)
    anyio.run(stdio if mode == "stdio" else http, t, n)


if __name__ == "__main__":
    main()
