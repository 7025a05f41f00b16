"""Verifies an ARC chain with dkimpy (Debian python3-dkim), the library
behind the arcverify command, for arc_test.go. DNS answers come from the
request instead of the network.

stdin: {"message": base64, "keys": {"sel._domainkey.domain": "v=DKIM1; ..."}}
stdout: {"cv": "pass" | "fail" | "none", "reason": str}
"""
import base64
import json
import sys

import dkim

req = json.load(sys.stdin)
keys = req["keys"]


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    txt = keys.get(name.rstrip(".").lower())
    return txt.encode() if txt is not None else None


cv, results, reason = dkim.arc_verify(base64.b64decode(req["message"]), dnsfunc=dnsfunc)
json.dump({"cv": cv.decode() if isinstance(cv, bytes) else str(cv), "reason": str(reason)}, sys.stdout)
