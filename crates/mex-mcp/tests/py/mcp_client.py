"""End-to-end checks of `mex serve` with the official Python MCP SDK.

Usage: mcp_client.py SCENARIO stdio MEX_BINARY HOME
       mcp_client.py SCENARIO http  URL TOKEN_FILE

Each scenario raises (non-zero exit, message on stderr) when a check fails
and prints "ok SCENARIO" when every check passed. Driven by
crates/mex-mcp/tests/python_client.rs.
"""

import base64
import hashlib
import json
import os
import sys
import uuid

import anyio
import httpx2
import mcp_types
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

EXPR = "F / A"
VARS = json.dumps({"F": {"value": 1500, "unit": "N"}, "A": {"value": 0.25, "unit": "m^2"}})


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Target:
    def __init__(self, argv):
        self.transport = argv[0]
        if self.transport == "stdio":
            self.mex, self.home = argv[1], argv[2]
        else:
            self.url, token_file = argv[1], argv[2]
            # The server's home, for the scenarios that read its policy.
            self.home = argv[3] if len(argv) > 3 else None
            with open(token_file) as f:
                self.token = f.read().strip()

    def client(self, **extra):
        if self.transport == "stdio":
            params = StdioServerParameters(
                command=self.mex, args=["--home", self.home, "serve", "--stdio"]
            )
            return Client(params, read_timeout_seconds=120, **extra)
        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=httpx2.Timeout(120.0),
        )
        return Client(streamable_http_client(self.url, http_client=http), read_timeout_seconds=120, **extra)


def text_of(result):
    return "\n".join(getattr(b, "text", "") or "" for b in result.content)


def meta_of(result):
    meta = result.meta
    if meta is None:
        return {}
    return meta if isinstance(meta, dict) else meta.model_dump(by_alias=True)


async def put(c, content, media_type):
    r = await c.call_tool("mex_put_artifact", {"content": content, "media_type": media_type})
    check(not r.is_error, f"put failed: {text_of(r)}")
    return r.structured_content


async def formula_args(c, unit="kPa", by="id"):
    expr = await put(c, EXPR, "text/plain")
    vars_ = await put(c, VARS, "application/json")
    refs = {
        "id": [expr["artifact_id"], vars_["artifact_id"]],
        "digest": ["sha256:" + expr["content_hash"], "sha256:" + vars_["content_hash"]],
        "handle": [expr, vars_],
    }[by]
    return {
        "params": {
            "expr_ref": expr["artifact_id"],
            "vars_ref": vars_["artifact_id"],
            "output_unit": unit,
        },
        "inputs": refs,
    }


async def events(c, op_id):
    r = await c.read_resource(f"mex://ops/{op_id}/events")
    return json.loads(r.contents[0].text)


async def tools(t):
    async with t.client() as c:
        listed = (await c.list_tools()).tools
        by_name = {tool.name: tool for tool in listed}
        for name in ["physics_evaluate_formula", "physics_convert_units", "physics_check_units",
                     "sandbox_run_shell", "mex_put_artifact", "mex_validate"]:
            check(name in by_name, f"tool {name} missing from {sorted(by_name)}")
        for tool in listed:
            check("." not in tool.name, f"dotted tool name {tool.name}")
        ev = by_name["physics_evaluate_formula"]
        params = ev.input_schema["properties"]["params"]
        check(set(params["required"]) == {"expr_ref", "vars_ref", "output_unit"}, f"params schema: {params}")
        check(ev.input_schema["required"] == ["params"], "only params is required")
        check("ArtifactHandle" in ev.input_schema["$defs"], "the handle schema is in $defs")
        out = ev.output_schema
        check(out is not None and "status" in out["properties"] and "outputs" in out["properties"],
              f"outputSchema is the EngineResult schema: {out and list(out['properties'])}")
        a = ev.annotations
        check(a.idempotent_hint is True, "D3 is idempotent")
        check(a.open_world_hint is False, "no network: not open-world")
        check(a.destructive_hint is False, "writes only artifacts: not destructive")
        check("kPa" in ev.description or "unit" in ev.description, "description names units")
        sh = by_name["sandbox_run_shell"].annotations
        check(sh.idempotent_hint is False, "D2 is not idempotent")
        check(sh.open_world_hint is True, "net.http is optional: open-world")


async def evaluate(t):
    async with t.client() as c:
        for by in ["id", "digest", "handle"]:
            args = await formula_args(c, by=by)
            r = await c.call_tool("physics_evaluate_formula", args)
            check(not r.is_error, f"call failed ({by}): {text_of(r)}")
            result = r.structured_content
            check(result["status"] == "succeeded", f"status {result['status']}")
            out = result["outputs"][0]
            links = [b for b in r.content if getattr(b, "type", "") == "resource_link"]
            check(links, "an output resource link")
            uri = str(links[0].uri)
            check(uri == f"mex://artifacts/sha256/{out['content_hash']}", f"link {uri}")
            read = await c.read_resource(uri)
            body = read.contents[0]
            data = body.text.encode() if hasattr(body, "text") and body.text is not None else base64.b64decode(body.blob)
            check(hashlib.sha256(data).hexdigest() == out["content_hash"], "digest of the read resource")
            check(len(data) == out["size_bytes"], "size of the read resource")
            value = json.loads(data)
            check(value["output_unit"] == "kPa" and float(value["value"]) == 6.0,
                  f"1500 N / 0.25 m^2 is 6 kPa: {value}")
            manifest = await c.read_resource(f"mex://artifacts/manifest/{out['artifact_id']}")
            check(json.loads(manifest.contents[0].text)["artifact"]["content_hash"] == out["content_hash"], "manifest")
            kinds = [e["kind"] for e in await events(c, result["op_id"])]
            check(kinds[0] == "op_received" and kinds[-1] == "op_completed", f"events {kinds}")
        listed = await c.list_resources()
        check(any(str(r.uri).startswith("mex://artifacts/sha256/") for r in listed.resources), "resources listed")


async def bad_param(t):
    async with t.client() as c:
        args = await formula_args(c)
        args["params"]["output_unit"] = 123
        r = await c.call_tool("physics_evaluate_formula", args)
        check(r.is_error, "a bad param is an error result")
        check("G-SCHEMA" in text_of(r), f"names G-SCHEMA: {text_of(r)}")
        denials = meta_of(r).get("mex/denials", [])
        check(any(d["gate"] == "G-SCHEMA" and (d.get("pointer") or "").startswith("/params") for d in denials),
              f"machine-readable denial with a pointer: {denials}")
        v = await c.call_tool("mex_validate", {"tool": "physics_evaluate_formula", **args})
        check(v.is_error and "G-SCHEMA" in text_of(v), f"validate names G-SCHEMA: {text_of(v)}")


async def capability(t):
    async with t.client() as c:
        args = await formula_args(c)
        args["capabilities"] = ["net.http"]
        r = await c.call_tool("physics_evaluate_formula", args)
        check(r.is_error, "a capability the operation does not allow is an error result")
        check("G-CAP" in text_of(r), f"names G-CAP: {text_of(r)}")
        check(any(d["gate"] == "G-CAP" for d in meta_of(r).get("mex/denials", [])), "G-CAP denial in _meta")


async def replay(t):
    async with t.client() as c:
        args = await formula_args(c)
        args["op_id"] = str(uuid.uuid4())
        first = await c.call_tool("physics_evaluate_formula", args)
        check(not first.is_error, f"first call: {text_of(first)}")
        second = await c.call_tool("physics_evaluate_formula", args)
        check(second.is_error, "a replayed op_id is refused")
        check("REPLAYED_OP_ID" in text_of(second), f"says replay: {text_of(second)}")


async def concurrent(t):
    results = {}
    async with t.client() as c:
        base = await formula_args(c)

        async def one(i):
            args = json.loads(json.dumps(base))
            args["params"]["output_unit"] = ["kPa", "Pa", "MPa", "bar", "psi", "hPa", "GPa", "N/m^2"][i]
            r = await c.call_tool("physics_evaluate_formula", args)
            results[i] = r

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(one, i)
        check(len(results) == 8, "eight answers")
        for i, r in results.items():
            check(not r.is_error, f"call {i}: {text_of(r)}")
            op_id = r.structured_content["op_id"]
            evs = await events(c, op_id)
            done = [e for e in evs if e["kind"] == "op_completed"]
            check(len(done) == 1 and done[0]["status"] == "succeeded", f"call {i} on record: {evs}")


def sleepers(marker):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


async def cancel(t):
    marker = f"{900 + uuid.uuid4().int % 99}.{uuid.uuid4().int % 10**6:06d}"
    async with t.client() as c:
        script = await put(c, f"sleep {marker}\n", "text/x-shellscript")
        allow = await put(c, json.dumps({"commands": ["sleep"]}), "application/json")
        spec = await put(c, json.dumps({}), "application/json")
        op_id = str(uuid.uuid4())
        args = {
            "params": {
                "script_ref": script["artifact_id"],
                "shell": "bash",
                "command_allowlist_ref": allow["artifact_id"],
                "inputs": [],
                "output_spec_ref": spec["artifact_id"],
            },
            "inputs": [script["artifact_id"], allow["artifact_id"], spec["artifact_id"]],
            "capabilities": ["proc.exec:bash"],
            "budget": {"wall_time_ms": 120000},
            "determinism": "D2",
            "op_id": op_id,
        }
        progress = []

        async def on_progress(p, total, message):
            progress.append(p)

        scope = anyio.CancelScope()

        async def call():
            with scope:
                await c.call_tool("sandbox_run_shell", args, progress_callback=on_progress)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            with anyio.fail_after(60):
                while not sleepers(marker) or not progress:
                    await anyio.sleep(0.05)
            scope.cancel()
        with anyio.fail_after(60):
            while True:
                done = [e for e in await events(c, op_id) if e["kind"] == "op_completed"]
                if done:
                    break
                await anyio.sleep(0.1)
        check(done[0]["status"] == "failed" and done[0].get("code") == "RUNTIME.CANCELLED",
              f"the record says cancelled: {done}")
        check(not sleepers(marker), "no sandboxed process is left")
        check(progress, "progress notifications arrived while it ran")


async def hostile(t):
    async with t.client() as c:
        args = await formula_args(c)
        # Oversized: past the envelope's 1 MiB cap.
        big = json.loads(json.dumps(args))
        big["params"]["output_unit"] = "x" * (1100 * 1024)
        r = await c.call_tool("physics_evaluate_formula", big)
        check(r.is_error and "ENVELOPE" in text_of(r), f"oversized: {text_of(r)[:300]}")
        # Deeply nested.
        deep = json.loads(json.dumps(args))
        nested = "leaf"
        for _ in range(100):
            nested = [nested]
        deep["params"]["output_unit"] = nested
        r = await c.call_tool("physics_evaluate_formula", deep)
        check(r.is_error, f"deeply nested: {text_of(r)[:300]}")
        # Wrong types.
        for bad in [{"params": "x"}, {"params": {}, "inputs": 5}, {"params": {}, "op_id": 7},
                    {"params": {}, "budget": {"wall_time_ms": -1}}, {"params": {}, "inputs": ["nope"]},
                    {"params": {}, "surprise": 1}, {"params": {}, "budget": {"wall_time_ms": 2**60}}]:
            r = await c.call_tool("physics_evaluate_formula", bad)
            check(r.is_error, f"wrong types {bad}: {text_of(r)[:300]}")
            check("G-" in text_of(r) or "ENVELOPE" in text_of(r), f"names a gate or code: {text_of(r)[:300]}")
        # Put past the cap.
        r = await c.call_tool("mex_put_artifact", {"content": "y" * (800 * 1024), "media_type": "text/plain"})
        check(r.is_error, "an oversized put is refused")
        # Still serving.
        r = await c.call_tool("physics_evaluate_formula", args)
        check(not r.is_error, "the server still answers")
        # Unknown tool: a protocol error.
        try:
            await c.call_tool("no_such_tool", {})
            raise AssertionError("an unknown tool must be a protocol error")
        except AssertionError:
            raise
        except Exception:
            pass


class RawSession:
    """JSON-RPC by hand (the SDK would serialise with json.dumps and never
    send duplicate keys): raw bytes over the server's stdin, or raw POST
    bodies over HTTP, after an initialize handshake done by hand."""

    def __init__(self, t):
        self.t = t
        self.next_id = 100

    async def __aenter__(self):
        if self.t.transport == "stdio":
            import subprocess
            self.proc = subprocess.Popen([self.t.mex, "--home", self.t.home, "serve", "--stdio"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL)
        else:
            self.http = httpx2.AsyncClient(timeout=httpx2.Timeout(120.0))
            self.headers = {"Authorization": f"Bearer {self.t.token}", "Content-Type": "application/json",
                            "Accept": "application/json, text/event-stream"}
        init = {"protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"}}
        r = await self.request(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                           "params": init}).encode(), 1)
        check("result" in r, f"initialize: {r}")
        await self.post(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
        return self

    async def __aexit__(self, *exc):
        if self.t.transport == "stdio":
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        else:
            await self.http.aclose()

    async def post(self, body):
        """Send one message; over HTTP, return the response."""
        if self.t.transport == "stdio":
            self.proc.stdin.write(body + b"\n")
            self.proc.stdin.flush()
            return None
        r = await self.http.post(self.t.url, content=body, headers=self.headers)
        if "mcp-session-id" in r.headers:
            self.headers["Mcp-Session-Id"] = r.headers["mcp-session-id"]
        return r

    async def request(self, body, want_id):
        """Send one message and return the JSON-RPC message answering want_id."""
        r = await self.post(body)
        if self.t.transport == "stdio":
            def read():
                while True:
                    line = self.proc.stdout.readline()
                    check(line, "the server closed stdout")
                    msg = json.loads(line)
                    if msg.get("id") == want_id and "method" not in msg:
                        return msg
            return await anyio.to_thread.run_sync(read)
        self.status = r.status_code
        text = r.text
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            for line in text.splitlines():
                if line.startswith("data:") and line[5:].strip():
                    msg = json.loads(line[5:])
                    if msg.get("id") == want_id and "method" not in msg:
                        return msg
            raise AssertionError(f"no answer to {want_id} in {text[:300]}")
        return json.loads(text)

    async def call(self, raw_arguments, name="physics_evaluate_formula"):
        self.next_id += 1
        i = self.next_id
        body = (b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s","arguments":'
                % (i, name.encode())) + raw_arguments + b"}}"
        return await self.request(body, i)

    async def events(self, op_id):
        self.next_id += 1
        r = await self.request(json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": "resources/read",
                                           "params": {"uri": f"mex://ops/{op_id}/events"}}).encode(),
                               self.next_id)
        return json.loads(r["result"]["contents"][0]["text"])


def refused_call(msg, pointer, words):
    """A tools/call answered with an isError result naming G-SCHEMA, the
    code, the pointer and the reason; the denial in _meta."""
    check("result" in msg, f"a tool result, not a protocol error: {str(msg)[:400]}")
    res = msg["result"]
    text = "\n".join(b.get("text", "") for b in res["content"])
    check(res.get("isError") is True, f"isError: {text[:300]}")
    check("G-SCHEMA" in text and "G-SCHEMA.ENVELOPE_INVALID" in text, f"names gate and code: {text[:300]}")
    check(f"at {pointer}:" in text, f"names the pointer {pointer}: {text[:300]}")
    check(words in text, f"says {words!r}: {text[:300]}")
    denials = res["_meta"]["mex/denials"]
    check(denials[0]["code"] == "G-SCHEMA.ENVELOPE_INVALID" and (denials[0]["pointer"] or "/") == pointer,
          f"denial in _meta: {denials}")


async def check_recorded(s, op_id, words):
    evs = await s.events(op_id)
    denied = [e for e in evs if e["kind"] == "gate_denied" and e.get("code") == "G-SCHEMA.ENVELOPE_INVALID"]
    check(any(words in e.get("message", "") for e in denied), f"refusal of {op_id} on record: {evs}")


async def strict(t):
    async with RawSession(t) as s:
        # Duplicate member names deep in the arguments.
        op = str(uuid.uuid4())
        msg = await s.call(b'{"params":{"expr_ref":"a","vars_ref":"b","output_unit":"kPa","output_unit":"Pa"},'
                           b'"op_id":"%s"}' % op.encode())
        refused_call(msg, "/params/output_unit", "duplicate key")
        await check_recorded(s, op, "duplicate key")
        # 2^64 in params.
        op = str(uuid.uuid4())
        msg = await s.call(b'{"params":{"expr_ref":"a","vars_ref":"b","output_unit":18446744073709551616},'
                           b'"op_id":"%s"}' % op.encode())
        refused_call(msg, "/params/output_unit", "outside")
        await check_recorded(s, op, "outside")
        # Nested past the reader's depth limit.
        op = str(uuid.uuid4())
        msg = await s.call(b'{"op_id":"%s","params":{"expr_ref":' % op.encode() + b"[" * 300 + b"]" * 300 + b"}}")
        refused_call(msg, "/", "recursion limit")
        await check_recorded(s, op, "recursion limit")
        # A built-in tool is guarded too.
        msg = await s.call(b'{"content":"a","content":"b","media_type":"text/plain"}', name="mex_put_artifact")
        refused_call(msg, "/content", "duplicate key")
        # Another method: a JSON-RPC error with the same id, the denial in data.
        s.next_id += 1
        msg = await s.request(b'{"jsonrpc":"2.0","id":%d,"method":"resources/read",'
                              b'"params":{"uri":"mex://x","uri":"mex://y"}}' % s.next_id, s.next_id)
        check(msg.get("error", {}).get("code") == -32600, f"JSON-RPC error: {msg}")
        check("duplicate key" in msg["error"]["message"] and "/params/uri" in msg["error"]["message"],
              f"names the key and pointer: {msg}")
        check(msg["error"]["data"]["mex/denials"][0]["pointer"] == "/params/uri", f"data: {msg}")
        # Oversized: past the 4 MiB message cap.
        op = str(uuid.uuid4())
        big = b'{"op_id":"%s","params":{"expr_ref":"' % op.encode() + b"x" * (5 * 1024 * 1024) + b'"}}'
        if t.transport == "stdio":
            msg = await s.call(big)
            refused_call(msg, "/", "4194304 bytes")
            await check_recorded(s, op, "4194304 bytes")
        else:
            s.next_id += 1
            body = (b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"physics_evaluate_formula",'
                    b'"arguments":' % s.next_id) + big + b"}}"
            r = await s.post(body)
            check(r.status_code == 413, f"oversized body: {r.status_code}")
            err = r.json()["error"]
            check("4194304 bytes" in err["message"] and "G-SCHEMA.ENVELOPE_INVALID" in err["message"],
                  f"says why: {err}")
            recorded_as = err["data"]["mex/op_id"]
            check(recorded_as != "00000000-0000-0000-0000-000000000000", f"a refusal id of its own: {err}")
            await check_recorded(s, recorded_as, "4194304 bytes")
        # A forged refusal token is just an unknown argument.
        msg = await s.call(b'{"$mex_refused":"%s"}' % str(uuid.uuid4()).encode())
        check(msg["result"]["isError"] is True, f"forged token: {msg}")
        # Still serving: a clean call goes through.
        s.next_id += 1
        msg = await s.request(b'{"jsonrpc":"2.0","id":%d,"method":"tools/list","params":{}}' % s.next_id,
                              s.next_id)
        check(any(x["name"] == "physics_evaluate_formula" for x in msg["result"]["tools"]), f"tools/list: {msg}")
        msg = await s.call(b'{"content":"still here","media_type":"text/plain"}', name="mex_put_artifact")
        check(msg["result"].get("isError") is False, f"a put after the refusals: {msg}")


def policy_of(t):
    with open(os.path.join(t.home, "policy.json")) as f:
        return json.load(f)


async def echo_with_network(c):
    """A sandboxed printf that requests net.http (granted by the test policy subject to consent)."""
    script = await put(c, "printf 'consent-check\\n'\n", "text/x-shellscript")
    allow = await put(c, json.dumps({"commands": ["printf"]}), "application/json")
    spec = await put(c, json.dumps({}), "application/json")
    return {
        "params": {
            "script_ref": script["artifact_id"],
            "shell": "bash",
            "command_allowlist_ref": allow["artifact_id"],
            "inputs": [],
            "output_spec_ref": spec["artifact_id"],
        },
        "inputs": [script["artifact_id"], allow["artifact_id"], spec["artifact_id"]],
        "capabilities": ["proc.exec:bash", "net.http"],
        "determinism": "D2",
    }


def answering(action, asked):
    async def callback(context, params):
        asked.append(params.message)
        return mcp_types.ElicitResult(action=action, content={} if action == "accept" else None)
    return callback


async def consent_accept(t, mode="auto"):
    """Accepted: on 2026-07-28 (the SDK's default) the question travels as an
    InputRequiredResult; with mode="legacy" as an elicitation/create request."""
    before = policy_of(t)
    check(not before.get("consents"), f"the test policy starts without consents: {before}")
    asked = []
    async with t.client(elicitation_callback=answering("accept", asked), mode=mode) as c:
        r = await c.call_tool("sandbox_run_shell", await echo_with_network(c))
        check(len(asked) == 1, f"asked once: {asked}")
        check("net.http" in asked[0] and "sandbox.run_shell" in asked[0] and "1 hour" in asked[0],
              f"the question names the capability, the operation and the expiry: {asked[0]}")
        check(not r.is_error, f"the call succeeds after consent: {text_of(r)}")
        check("consent granted" in text_of(r), f"the result says consent was granted: {text_of(r)}")
        after = policy_of(t)
        consents = after.get("consents", [])
        check(len(consents) == 1 and consents[0]["capability"] == "net.http", f"one consent record: {after}")
        check(consents[0]["expires_at"] > consents[0]["granted_at"], f"with an expiry: {consents[0]}")
        check(after["profiles"] == before["profiles"], "the rest of the policy is kept")
        op_id = r.structured_content["op_id"]
        evs = await events(c, op_id)
        granted = [e for e in evs if e["kind"] == "capability_allowed" and e.get("rule") == "policy.consent.elicited"]
        check(granted and granted[0].get("capability") == "net.http", f"the consent is on the record: {evs}")
        check(consents[0]["id"] in json.dumps(granted[0]), f"the event names the record: {granted[0]}")
        done = [e for e in evs if e["kind"] == "op_completed"]
        check(done and done[-1]["status"] == "succeeded", f"the re-run is on record: {done}")
        # In force now: a second call is not asked again.
        r = await c.call_tool("sandbox_run_shell", await echo_with_network(c))
        check(not r.is_error and len(asked) == 1, f"the consent is in force: {text_of(r)} {asked}")


async def consent_accept_legacy(t):
    await consent_accept(t, mode="legacy")


async def consent_decline(t, mode="auto"):
    before = policy_of(t)
    asked = []
    async with t.client(elicitation_callback=answering("decline", asked), mode=mode) as c:
        r = await c.call_tool("sandbox_run_shell", await echo_with_network(c))
        check(len(asked) == 1, f"asked once: {asked}")
        check(r.is_error, "declined: denied")
        check("G-CAP.CONSENT_MISSING" in text_of(r) and "declined" in text_of(r), f"says declined: {text_of(r)}")
        check(policy_of(t) == before, "the policy is unchanged")
        evs = await events(c, r.structured_content["op_id"])
        check(any(e["kind"] == "capability_denied" and e.get("rule") == "policy.consent.declined" for e in evs),
              f"the decline is on the record: {evs}")


async def consent_decline_legacy(t):
    await consent_decline(t, mode="legacy")


async def consent_not_granted(t):
    """Under a policy that does not grant net.http at all, nobody is asked."""
    before = policy_of(t)
    asked = []
    async with t.client(elicitation_callback=answering("accept", asked)) as c:
        r = await c.call_tool("sandbox_run_shell", await echo_with_network(c))
        check(r.is_error and "G-CAP.NOT_GRANTED" in text_of(r), f"denied outright: {text_of(r)}")
        check(not asked, f"not asked: {asked}")
        check(policy_of(t) == before, "the policy is unchanged")


async def consent_mixed(t):
    """An operation denied for another reason too is answered without asking."""
    before = policy_of(t)
    asked = []
    async with t.client(elicitation_callback=answering("accept", asked)) as c:
        args = await echo_with_network(c)
        args["capabilities"].append("fs.write:elsewhere")
        r = await c.call_tool("sandbox_run_shell", args)
        check(r.is_error and "G-CAP.CONSENT_MISSING" in text_of(r) and "G-CAP.NOT_" in text_of(r),
              f"denied for two reasons: {text_of(r)}")
        check(not asked, f"not asked: {asked}")
        check(policy_of(t) == before, "the policy is unchanged")


async def consent_without_elicitation(t):
    before = policy_of(t)
    async with t.client() as c:
        r = await c.call_tool("sandbox_run_shell", await echo_with_network(c))
        check(r.is_error, "no elicitation: denied")
        text = text_of(r)
        check("G-CAP.CONSENT_MISSING" in text and "to grant consent" in text and "policy.json" in text,
              f"says how to grant consent: {text}")
        check(policy_of(t) == before, "the policy is unchanged")


async def unauthorized(t):
    async with httpx2.AsyncClient() as http:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        r = await http.post(t.url, json=body, headers={"Accept": "application/json, text/event-stream"})
        check(r.status_code == 401, f"no token: {r.status_code}")
        r = await http.post(t.url, json=body, headers={"Authorization": "Bearer wrong-token-wrong-token"})
        check(r.status_code == 401, f"wrong token: {r.status_code}")
        r = await http.post(t.url, content=b"{" * (5 * 1024 * 1024),
                            headers={"Authorization": f"Bearer {t.token}", "Content-Type": "application/json",
                                     "Accept": "application/json, text/event-stream"})
        check(r.status_code == 413, f"oversized body: {r.status_code}")


SCENARIOS = {f.__name__: f for f in [tools, evaluate, bad_param, capability, replay, concurrent, cancel,
                                     hostile, strict, unauthorized, consent_accept, consent_decline,
                                     consent_accept_legacy, consent_decline_legacy,
                                     consent_not_granted, consent_mixed, consent_without_elicitation]}


def main():
    name, argv = sys.argv[1], sys.argv[2:]
    anyio.run(SCENARIOS[name], Target(argv))
    print(f"ok {name}")


if __name__ == "__main__":
    main()
