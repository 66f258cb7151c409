"""Re-derive a mex checkpoint from the published texts, without mex code.

usage: verify_checkpoint.py NOTE PUBLIC_KEY_PEM EVENTS_JSONL [PROOF_JSON]

Written from C2SP signed-note and tlog-checkpoint and RFC 6962 section 2.1:

* the note is text, a blank line, then signature lines
  "\u2014 <name> <base64(keyhash[4] || signature[64])>";
* key hash = SHA-256(name || "\\n" || 0x01 || ed25519 public key)[:4];
* the signature is Ed25519 over the text (through its last newline);
* the text is "<origin>\\n<size>\\n<base64 root>\\n";
* MTH({}) = SHA-256(), leaf = SHA-256(0x00 || d), node = SHA-256(0x01 || l || r),
  split at the largest power of two smaller than n;
* mex's conventions (docs/attestation.md): the key name and origin are
  "mex/" + the first 16 hex digits of SHA-256(DER SubjectPublicKeyInfo); leaf
  i is the 32 bytes of the `hash` of the event with seq i+1.

PROOF_JSON (from `mex recorder prove`) is checked with the RFC 9162
2.1.3.2 inclusion algorithm. Prints the derived key hash and root; exit 1
with a message when anything differs.
"""

import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.exceptions import InvalidSignature


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def sha256(b):
    return hashlib.sha256(b).digest()


def mth(leaves):
    n = len(leaves)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return sha256(b"\x00" + leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def verify_inclusion(index, size, leaf_hash, proof, root):
    # RFC 9162 section 2.1.3.2
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = sha256(b"\x01" + p + r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha256(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def main(argv):
    if len(argv) < 4:
        fail(__doc__)
    note = open(argv[1], "rb").read()
    public = serialization.load_pem_public_key(open(argv[2], "rb").read())
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    name = "mex/" + hashlib.sha256(der).hexdigest()[:16]
    keyhash = sha256(name.encode() + b"\n" + b"\x01" + raw)[:4]

    split = note.rfind(b"\n\n")
    if split < 0:
        fail("no blank line between text and signatures")
    text, sigs = note[: split + 1], note[split + 2 :]
    ok = False
    for line in sigs.decode().splitlines():
        if not line.startswith("\u2014 "):
            fail("bad signature line %r" % line)
        sig_name, b64 = line[2:].split(" ")
        blob = base64.b64decode(b64)
        if sig_name != name or blob[:4] != keyhash:
            continue
        try:
            public.verify(blob[4:], text)
            ok = True
        except InvalidSignature:
            fail("the signature by %s does not verify" % name)
    if not ok:
        fail("no signature by %s+%s" % (name, keyhash.hex()))

    lines = text.decode().split("\n")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2])
    if origin != name:
        fail("origin %r is not the key name %r" % (origin, name))

    events = [json.loads(l) for l in open(argv[3]) if l.strip()]
    leaves = [bytes.fromhex(e["hash"]) for e in events]
    for i, e in enumerate(events):
        if e["seq"] != i + 1:
            fail("event %d has seq %d" % (i, e["seq"]))
    if len(leaves) < size:
        fail("the log has %d events, the checkpoint %d" % (len(leaves), size))
    derived = mth(leaves[:size])
    if derived != root:
        fail("Merkle root of the first %d events is %s, the checkpoint says %s"
             % (size, derived.hex(), root.hex()))

    if len(argv) > 4:
        proof = json.load(open(argv[4]))
        leaf = bytes.fromhex(proof["event_hash"])
        if leaf != leaves[proof["seq"] - 1]:
            fail("the proof's event hash is not event %d's" % proof["seq"])
        path = [bytes.fromhex(h) for h in proof["proof"]]
        if not verify_inclusion(proof["seq"] - 1, proof["tree_size"],
                                sha256(b"\x00" + leaf), path, mth(leaves[: proof["tree_size"]])):
            fail("inclusion proof of seq %d does not verify" % proof["seq"])

    print("OK: keyhash %s root %s size %d" % (keyhash.hex(), root.hex(), size))


if __name__ == "__main__":
    main(sys.argv)
