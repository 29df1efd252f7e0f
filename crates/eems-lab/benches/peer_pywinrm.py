"""The peer: what an admin would write with pywinrm (the library under Ansible's WinRM
connection) to run the same host probe on every server.

A thread pool of C workers; each opens a session to one server with NTLM message
encryption and runs the probe with run_ps. Started by `eems-lab bench --peer`, which
measures this process's wall time, CPU and memory from the outside (wait4).
"""

import argparse
import csv
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import winrm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--inventory", required=True)
    ap.add_argument("--concurrency", type=int, required=True)
    ap.add_argument("--script", required=True)
    ap.add_argument("--scheme", choices=["http", "https"], default="http")
    args = ap.parse_args()
    with open(args.inventory, newline="") as f:
        servers = list(csv.DictReader(f))
    with open(args.script) as f:
        script = f.read()
    user, password = os.environ["EEMS_USER"], os.environ["EEMS_PASSWORD"]

    def probe(server):
        session = winrm.Session(
            "%s://%s:%s/wsman" % (args.scheme, server["address"], server["port"]),
            auth=(user, password),
            transport="ntlm",
            message_encryption="always" if args.scheme == "http" else "auto",
            server_cert_validation="ignore",
        )
        r = session.run_ps(script)
        return r.status_code == 0 and b"EEMS-PROBE-RESULT " in r.std_out

    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = list(pool.map(probe, servers))
    ok = sum(results)
    print("pywinrm peer: %d/%d servers answered" % (ok, len(results)))
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
