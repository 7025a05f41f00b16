"""ARC reference operations with dkimpy (Debian python3-dkim, python3-authres),
driven by arc_test.go. Reads a JSON request on stdin, writes JSON on stdout.

  {"op": "sign", "message": b64, "selector", "domain", "srv_id", "privkey": PEM, "keys": {name: txt}}
      -> {"headers": b64}   the new ARC set, to prepend
  {"op": "verify", "message": b64, "keys": {name: txt}}
      -> {"cv": "pass"|"fail"|"none", "reason": str}
"""
import base64
import json
import sys

import dkim

req = json.load(sys.stdin)
keys = req.get("keys", {})


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    txt = keys.get(name.rstrip(".").lower())
    return txt.encode() if txt is not None else None


msg = base64.b64decode(req["message"])
if req["op"] == "sign":
    headers = dkim.arc_sign(msg, req["selector"].encode(), req["domain"].encode(),
                            req["privkey"].encode(), req["srv_id"].encode(),
                            include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    # arc_sign needs DNS only to compute cv from the chain so far.
    out = {"headers": base64.b64encode(b"".join(headers)).decode()}
else:
    cv, results, reason = dkim.arc_verify(msg, dnsfunc=dnsfunc)
    out = {"cv": cv.decode() if isinstance(cv, bytes) else cv, "reason": reason if isinstance(reason, str) else str(reason)}
json.dump(out, sys.stdout)
