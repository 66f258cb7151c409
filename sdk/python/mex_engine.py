"""mex_engine: write a mex process engine in Python (standard library only).

Protocol mex-engine-1 (docs/engine-protocol.md): mex writes one request as
JSON on stdin; the engine writes its outputs as files in the request's
output directory and prints one completion as JSON on stdout; stderr is the
run's log. This module does the protocol; you write the operation:

    import mex_engine

    def scale(req):
        recipe = req.read_json("recipe_ref")       # the input a *_ref param names
        req.write_json("out.json", {"ok": True}, kind="artifact.dataset")

    mex_engine.run({"sous_chef.scale_recipe": scale})

Raise ``mex_engine.Fail(code, message)`` to fail with a code from the
engine's catalogue. Copy this file next to your engine and pin both in the
registry entry (``files``).
"""

import json
import os
import sys

PROTOCOL = "mex-engine-1"


class Fail(Exception):
    """A typed failure: ``code`` from the engine's failure codes."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class Request:
    """One request from mex, and the outputs written so far."""

    def __init__(self, doc):
        self.doc = doc
        self.op_id = doc["op_id"]
        self.operation = doc["operation"]
        self.params = doc["params"]
        self.inputs = {i["artifact_id"]: i for i in doc["inputs"]}
        self.budget = doc["budget"]
        self.determinism = doc["determinism"]
        self.output_dir = doc["output_dir"]
        self.outputs = []
        self.environment = {}

    def input_path(self, param):
        """Path of the input artifact the param ``param`` names."""
        ref = self.params.get(param)
        if ref not in self.inputs:
            raise Fail("PROC_BAD_REQUEST", "params.%s names no input of this run" % param)
        return self.inputs[ref]["path"]

    def read_bytes(self, param):
        with open(self.input_path(param), "rb") as f:
            return f.read()

    def read_text(self, param):
        return self.read_bytes(param).decode("utf-8")

    def read_json(self, param):
        return json.loads(self.read_text(param))

    def write_bytes(self, name, data, kind, media_type):
        """Write an output file ``name`` (relative) and claim it."""
        path = os.path.join(self.output_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        self.outputs.append({"file": name, "kind": kind, "media_type": media_type})

    def write_text(self, name, text, kind, media_type="text/plain"):
        self.write_bytes(name, text.encode("utf-8"), kind, media_type)

    def write_json(self, name, value, kind="artifact.dataset"):
        """Write JSON in a stable form (sorted keys, no spaces): D3-friendly."""
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self.write_text(name, text, kind, "application/json")

    def log(self, text):
        """A line in the run's log (stderr)."""
        print(text, file=sys.stderr)


def _complete(doc):
    doc["protocol"] = PROTOCOL
    sys.stdout.write(json.dumps(doc, sort_keys=True, separators=(",", ":")))
    sys.stdout.flush()


def run(operations):
    """Read the request, call ``operations[request.operation](request)``,
    print the completion. Returns the process exit status (0)."""
    req = Request(json.load(sys.stdin))
    handler = operations.get(req.operation)
    try:
        if handler is None:
            raise Fail("PROC_BAD_REQUEST", "this engine does not implement %s" % req.operation)
        handler(req)
    except Fail as e:
        _complete({"status": "failed", "error": {"code": e.code, "message": e.message}})
        return 0
    done = {"status": "succeeded", "outputs": req.outputs}
    if req.environment:
        done["environment"] = req.environment
    _complete(done)
    return 0
