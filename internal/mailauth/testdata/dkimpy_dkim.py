"""DKIM reference operations with dkimpy (Debian python3-dkim), driven by
dkimpy_test.go. Reads a JSON request, or a list of them, on stdin and
writes the answer, or the list of answers, on stdout.

  {"op": "data"}
      -> {"dir": path of dkimpy's tests/data}
  {"op": "keys", "module": "test_dkim", "func": "dnsfunc5", "names": [name, ...]}
      -> {"keys": {name: txt}}   what dkimpy's own test serves for each name
  {"op": "sign", "message": b64, "key": file in tests/data, "selector", "domain",
   "canonicalize": [header, body], "algorithm": "rsa-sha256"|"ed25519-sha256", "length": bool}
      -> {"message": b64}   the message with dkimpy's signature prepended
  {"op": "verify", "message": b64, "keys": {name: txt}}
      -> {"verified": [bool, ...]}   dkimpy's verdict for each DKIM-Signature, in order
"""
import base64
import importlib
import json
import os
import sys

import dkim
import dkim.tests

data = os.path.join(os.path.dirname(dkim.tests.__file__), "data")


def run(req):
    op = req["op"]
    if op == "data":
        return {"dir": data}
    if op == "keys":
        mod = importlib.import_module("dkim.tests." + req["module"])
        case = mod.TestSignAndVerify("runTest")
        fn = getattr(case, req["func"])
        keys = {}
        for name in req["names"]:
            try:
                txt = fn((name + ".").encode())
            except AssertionError:
                continue
            if txt is not None:
                keys[name] = txt.decode() if isinstance(txt, bytes) else txt
        return {"keys": keys}
    if op == "sign":
        msg = base64.b64decode(req["message"])
        with open(os.path.join(data, req["key"]), "rb") as f:
            key = f.read()
        sig = dkim.sign(msg, req["selector"].encode(), req["domain"].encode(), key,
                        canonicalize=tuple(c.encode() for c in req["canonicalize"]),
                        signature_algorithm=req["algorithm"].encode(),
                        length=req.get("length", False))
        return {"message": base64.b64encode(sig + msg).decode()}
    msg = base64.b64decode(req["message"])
    keys = req.get("keys", {})

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        txt = keys.get(name.rstrip(".").lower())
        return txt.encode() if txt is not None else None

    d = dkim.DKIM(msg)
    n = len([h for h in d.headers if h[0].lower() == b"dkim-signature"])
    verified = []
    for i in range(n):
        try:
            verified.append(bool(dkim.DKIM(msg).verify(idx=i, dnsfunc=dnsfunc)))
        except Exception:
            verified.append(False)
    return {"verified": verified}


# A list of requests is answered with the list of answers: one Python
# start for a whole table.
req = json.load(sys.stdin)
json.dump([run(r) for r in req] if isinstance(req, list) else run(req), sys.stdout)
