"""Verify a mex provenance attestation with tools mex did not write.

usage: verify_attestation.py ENVELOPE PUBLIC_KEY_PEM [NAME=FILE ...]

* The DSSE signature is checked by securesystemslib (SSlibKey, dsse.Envelope)
  with the key id derived here: hex SHA-256 of the DER SubjectPublicKeyInfo.
* The payload is parsed as an in-toto Statement v1 and validated by the
  in-toto-attestation package; its predicate is parsed strictly (unknown
  fields refused) as SLSA Provenance v1 by the same package's protobufs.
* Each NAME=FILE pair: FILE's SHA-256 must equal the digest the statement
  gives for subject NAME.

Exit 0 when everything holds; 1 with a message naming what failed.
"""

import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives import serialization
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main(argv):
    if len(argv) < 3:
        fail(__doc__)
    envelope = json.load(open(argv[1]))
    pem = open(argv[2], "rb").read()
    public = serialization.load_pem_public_key(pem)
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    keyid = hashlib.sha256(der).hexdigest()
    key = SSlibKey(keyid, "ed25519", "ed25519", {"public": raw.hex()})

    env = Envelope.from_dict(envelope)
    if env.payload_type != "application/vnd.in-toto+json":
        fail("payload type is %r" % env.payload_type)
    try:
        env.verify([key], 1)
    except Exception as e:  # securesystemslib raises VerificationError
        fail("DSSE signature does not verify: %s" % e)

    doc = json.loads(env.payload)
    pb = json_format.ParseDict(doc, statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    if doc["predicateType"] != "https://slsa.dev/provenance/v1":
        fail("predicate type is %r" % doc["predicateType"])
    prov = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
    if prov.build_definition.build_type != "mex://build-type/operation/v1":
        fail("build type is %r" % prov.build_definition.build_type)
    if not prov.run_details.metadata.invocation_id:
        fail("no invocationId")

    subjects = {s["name"]: s["digest"]["sha256"] for s in doc["subject"]}
    for pair in argv[3:]:
        name, path = pair.split("=", 1)
        if name not in subjects:
            fail("no subject named %s" % name)
        actual = hashlib.sha256(open(path, "rb").read()).hexdigest()
        if actual != subjects[name]:
            fail(
                "SUBJECT MISMATCH %s: the file hashes to %s but the attestation says %s"
                % (name, actual, subjects[name])
            )
    print(
        "OK: signature by %s, statement valid, %d subject(s), invocation %s"
        % (keyid, len(subjects), prov.run_details.metadata.invocation_id)
    )


if __name__ == "__main__":
    main(sys.argv)
