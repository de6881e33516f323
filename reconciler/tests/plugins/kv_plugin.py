#!/usr/bin/env python3
"""A nimbus provider plugin in Python, for the tests: it serves the kinds it is given by
keeping each instance's spec as a JSON file in a directory (settings.store), speaking the
protocol of docs/protocol.md on stdin and stdout. settings.fault makes it misbehave on
`apply`: crash, hang, garbage (`observe`: fails every observe); settings.sensitive lists the Volume's sensitive fields; settings.concurrency declares that many
requests at once (applies run in threads, settings.delay seconds each); `--protocol-version N` changes the version it says hello with."""
import json
import os
import sys
import threading
import time

settings = {}
version = int(sys.argv[sys.argv.index("--protocol-version") + 1]) if "--protocol-version" in sys.argv else 1


writing = threading.Lock()
in_flight = {"now": 0, "most": 0}


def reply(id_, result=None, error=None):
    message = {"id": id_}
    if error is not None:
        message["error"] = error
    else:
        message["result"] = result
    with writing:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def path_of(address):
    return os.path.join(settings["store"], address.replace("/", "_") + ".json")


for line in sys.stdin:
    request = json.loads(line)
    id_, method, params = request["id"], request["method"], request.get("params") or {}
    if method == "hello":
        reply(id_, {"protocol_version": version, "software": "kv-plugin 0.1"})
    elif method == "configure":
        settings.update(params.get("settings") or {})
        os.makedirs(settings["store"], exist_ok=True)
        print("kv plugin configured", file=sys.stderr, flush=True)
        reply(id_, {})
    elif method == "describe":
        described = {"provider": "kv", "kinds": [
            {"kind": "Volume", "replaceFields": ["type"],
             "sensitiveFields": settings.get("sensitive", [])}]}
        if settings.get("concurrency"):
            described["concurrency"] = settings["concurrency"]
        reply(id_, described)
    elif method == "observe":
        if settings.get("fault") == "observe":
            reply(id_, error={"kind": "failed", "message": "the store is locked by a backup"})
            continue
        observations = []
        for item in params["batch"]:
            try:
                with open(path_of(item["address"])) as f:
                    observations.append({"address": item["address"], "state": "present",
                                         "spec": json.load(f)})
            except FileNotFoundError:
                observations.append({"address": item["address"], "state": "absent"})
        reply(id_, {"observations": observations})
    elif method == "apply" and settings.get("concurrency"):
        # Applies at once, each in a thread, each answered by its id; the most at once is
        # kept in the store for the test.
        def apply_later(id_, change):
            with writing:
                in_flight["now"] += 1
                in_flight["most"] = max(in_flight["most"], in_flight["now"])
                with open(os.path.join(settings["store"], "most-at-once"), "w") as f:
                    f.write(str(in_flight["most"]))
            time.sleep(float(settings.get("delay", 0)))
            with open(path_of(change["address"]), "w") as f:
                json.dump(change["after"], f)
            with writing:
                in_flight["now"] -= 1
            reply(id_, {"observed": change["after"], "outputs": None})
        threading.Thread(target=apply_later, args=(id_, params["change"])).start()
    elif method == "apply":
        fault = settings.get("fault")
        if fault == "crash":
            print("kv plugin: about to crash", file=sys.stderr, flush=True)
            sys.exit(3)
        if fault == "hang":
            time.sleep(3600)
        if fault == "garbage":
            sys.stdout.write("this is not json\n")
            sys.stdout.flush()
            continue
        change = params["change"]
        if change["action"] == "delete":
            try:
                os.remove(path_of(change["address"]))
            except FileNotFoundError:
                pass
            reply(id_, {"observed": None, "outputs": None})
        elif not isinstance(change.get("after"), dict):
            reply(id_, error={"kind": "failed",
                              "message": f"{change['address']}: the spec must be a mapping"})
        else:
            with open(path_of(change["address"]), "w") as f:
                json.dump(change["after"], f)
            reply(id_, {"observed": change["after"], "outputs": {"stored": True}})
    elif method == "cancel":
        reply(id_, {})
    else:
        reply(id_, error={"kind": "failed", "message": f"unknown method {method}"})
