#!/usr/bin/env python3
"""jsonstore: a nimbus provider plugin in plain Python (no packages), written from
docs/protocol.md. It serves the kinds the Repository gives it by keeping each instance's spec
as a JSON file under `settings.root` (relative paths are relative to the repository).

It shows the whole protocol: hello, configure, describe (with `concurrency`: applies run in
threads and are answered by id, in any order), observe (every address of the batch answered),
apply (create, update, replace, delete; a refused spec names the instance), cancel.

Check it against the provider contract before publishing:

    nimbus provider check --examples cases.yaml -- python3 jsonstore.py
"""
import json
import os
import re
import sys
import threading

PROTOCOL_VERSION = 1
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")

settings = {"root": ".jsonstore"}
writing = threading.Lock()


def send(message):
    with writing:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def reply(id_, result):
    send({"id": id_, "result": result})


def fail(id_, message, kind="failed"):
    send({"id": id_, "error": {"kind": kind, "message": message}})


def path_of(address):
    # An address is `Kind/name` or `Kind/tenant/name`, and `@host` for per-host kinds.
    return os.path.join(settings["root"], address.replace("/", "_").replace("@", "_at_") + ".json")


def observe(item):
    try:
        with open(path_of(item["address"])) as f:
            return {"address": item["address"], "state": "present", "spec": json.load(f)}
    except FileNotFoundError:
        return {"address": item["address"], "state": "absent"}
    except (OSError, ValueError) as e:
        return {"address": item["address"], "state": "unknown", "reason": f"cannot read it: {e}"}


def apply(id_, change):
    address, action = change["address"], change["action"]
    path = path_of(address)
    if action == "delete":
        try:
            os.remove(path)
        except FileNotFoundError:
            pass  # already gone: a delete of what is gone succeeds
        return reply(id_, {"observed": None, "outputs": None})
    spec = change.get("after")
    if not isinstance(spec, dict):
        return fail(id_, f"{address}: the spec must be a mapping")
    size = spec.get("size")
    if size is not None and not (isinstance(size, str) and QUANTITY.match(size)):
        return fail(id_, f"{address}: size `{size}` is not a quantity like 1Gi")
    # A replace is one apply: the old object goes, the new one is made (here: the same file).
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(spec, f)
    os.replace(temporary, path)
    reply(id_, {"observed": spec, "outputs": {"file": os.path.abspath(path)}})


for line in sys.stdin:
    try:
        request = json.loads(line)
    except ValueError:
        fail(0, "not a JSON request", "bug")
        continue
    id_, method, params = request.get("id", 0), request.get("method"), request.get("params") or {}
    if method == "hello":
        reply(id_, {"protocol_version": PROTOCOL_VERSION, "software": "jsonstore 0.1"})
    elif method == "configure":
        settings.update(params.get("settings") or {})
        os.makedirs(settings["root"], exist_ok=True)
        reply(id_, {})
    elif method == "describe":
        reply(id_, {
            "provider": params.get("name", "jsonstore"),
            "kinds": [{"kind": kind, "replaceFields": ["type"], "sensitiveFields": []}
                      for kind in settings.get("kinds", ["Volume"])],
            "concurrency": 8,
        })
    elif method == "observe":
        reply(id_, {"observations": [observe(item) for item in params["batch"]]})
    elif method == "apply":
        threading.Thread(target=apply, args=(id_, params["change"])).start()
    elif method == "cancel":
        reply(id_, {})  # applies here are short: nothing to stop between steps
    else:
        fail(id_, f"unknown method {method}", "bug")
