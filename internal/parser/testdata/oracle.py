"""Oracle for oracle_test.go: parses each message given on the command line
with Python's standard email package (policy.default) and prints, as JSON,
what the Go parser is compared on: subject, from/to/cc, the plain-text body
and the attachments' names and sizes."""
import email
import json
import sys
from email import policy


def guard(fn):
    try:
        return fn()
    except Exception as e:  # a malformed message may trip the library
        return "error: %s: %s" % (type(e).__name__, e)


def addresses(msg, name):
    out = []
    for value in msg.get_all(name, []):
        for a in getattr(value, "addresses", ()):
            out.append([a.display_name, a.addr_spec])
    return out


def attachments(part, resource=False):
    ct = part.get_content_type()
    if ct in ("message/rfc822", "message/global"):
        yield part
        return
    if part.is_multipart():
        for i, p in enumerate(part.iter_parts()):
            yield from attachments(p, ct == "multipart/related" and i > 0)
        return
    if ct in ("text/plain", "text/html") and part.get_content_disposition() != "attachment" and not resource:
        if part.get_filename():
            yield part
        return
    yield part


def describe(path):
    with open(path, "rb") as f:
        msg = email.message_from_binary_file(f, policy=policy.default)
    out = {"file": path}
    out["subject"] = guard(lambda: str(msg["subject"]) if msg["subject"] is not None else "")
    for h in ("from", "to", "cc"):
        out[h] = guard(lambda: addresses(msg, h))

    def text():
        body = msg.get_body(preferencelist=("plain",))
        return None if body is None else body.get_content()
    out["text"] = guard(text)

    def atts():
        res = []
        for p in attachments(msg):
            size = None
            if p.get_content_type() not in ("message/rfc822", "message/global"):
                size = len(p.get_payload(decode=True) or b"")
            res.append([p.get_filename() or "", size])
        return res
    out["attachments"] = guard(atts)
    return out


json.dump([describe(p) for p in sys.argv[1:]], sys.stdout, ensure_ascii=False)
