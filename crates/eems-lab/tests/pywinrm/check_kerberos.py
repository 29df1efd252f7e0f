"""pywinrm with transport=kerberos (its vendored requests_kerberos over pykerberos and MIT
libgssapi, what Ansible uses from Linux) against the lab's Kerberos WinRS, NTLM blocked on
the host.

Run by tests/pywinrm.rs with the realm's KRB5_CONFIG and a kinit'ed KRB5CCNAME in the
environment; arguments: FQDN, its address, HTTP port, HTTPS port, CA file. The FQDN is in no DNS: this
script maps it to the address in getaddrinfo, so pywinrm still connects by FQDN.
Prints one line per check and exits non-zero on failure.
"""

import json
import socket
import sys

import winrm

fqdn, address, http_port, https_port, ca = sys.argv[1:6]

# Python resolves through getaddrinfo: map the lab FQDN to its loopback address, so the URL,
# the Host header, the TLS name and the SPN HTTP/<fqdn> keep the FQDN.
_real = socket.getaddrinfo


def _lab_getaddrinfo(host, *args, **kw):
    return _real(address if host == fqdn else host, *args, **kw)


socket.getaddrinfo = _lab_getaddrinfo

failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + detail))
    if not ok:
        failures.append(name)


def run(url, **kw):
    s = winrm.Session(url, auth=("administrator@LAB.LOCAL", ""), transport="kerberos", **kw)
    return s.run_cmd("whoami")


for name, url, kw in [
    ("http (sealed with the Kerberos session)", f"http://{fqdn}:{http_port}/wsman", {}),
    (
        "https (bound to the certificate)",
        f"https://{fqdn}:{https_port}/wsman",
        {"server_cert_validation": "validate", "ca_trust_path": ca},
    ),
]:
    try:
        r = run(url, **kw)
        who = r.std_out.decode("utf-8", "replace").strip()
        check(name, r.status_code == 0 and who == "lab\\administrator", f"exit {r.status_code}: {who!r} {r.std_err!r}")
    except Exception as e:  # noqa: BLE001 - report any failure as a failed check
        check(name, False, repr(e))

try:
    s = winrm.Session(
        f"http://{fqdn}:{http_port}/wsman",
        auth=("LAB\\administrator", "Lab-Passw0rd!"),
        transport="ntlm",
    )
    s.run_cmd("whoami")
    check("ntlm refused", False, "NTLM was accepted on a host with NTLM blocked")
except Exception:  # noqa: BLE001
    check("ntlm refused", True)

sys.exit(1 if failures else 0)
