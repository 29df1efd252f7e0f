"""pywinrm, an independent WinRM client, against the lab.

winrm-rs alone cannot prove the lab is Windows-faithful: the two could share a
misunderstanding. pywinrm (with requests_ntlm and pyspnego underneath) is what
Ansible uses against real Windows hosts. Run by tests/pywinrm.rs with the lab
addresses as arguments; prints one line per check and exits non-zero on failure.
"""

import json
import sys

import winrm
from winrm.exceptions import InvalidCredentialsError, WinRMTransportError

USER = "LAB\\administrator"
PASSWORD = "Lab-Passw0rd!"
ORG = "# eems-probe:org:1\nAdd-PSSnapin Microsoft.Exchange.Management.PowerShell.SnapIn\n"
HOST = (
    "$OcsUrl = 'https://officeclient.microsoft.com/GetExchangeMitigations'\n"
    "$Proxy = $null\n$OcsTimeoutSec = 5\n# eems-probe:host:1\n"
)

failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + detail))
    if not ok:
        failures.append(name)


def result_line(out):
    for line in out.decode("utf-8", "replace").splitlines():
        if line.startswith("EEMS-PROBE-RESULT "):
            return json.loads(line[len("EEMS-PROBE-RESULT "):])
    return None


def session(url, transport, **kw):
    return winrm.Session(url, auth=(USER, kw.pop("password", PASSWORD)), transport=transport,
                         server_cert_validation="ignore", **kw)


def probe(name, s, script, kind):
    try:
        r = s.run_ps(script)
        res = result_line(r.std_out)
        check(name, r.status_code == 0 and res is not None and res.get("probe") == kind,
              "exit %s, stdout %r, stderr %r" % (r.status_code, r.std_out[:200], r.std_err[:200]))
    except Exception as e:  # noqa: BLE001 - report any client failure as a failed check
        check(name, False, repr(e))


def main():
    healthy, slow, http_port, https_port = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    http = "http://%s:%s/wsman" % (healthy, http_port)
    https = "https://%s:%s/wsman" % (healthy, https_port)

    s = session(http, "ntlm", message_encryption="always")
    probe("ntlm over http, sealed: org probe", s, ORG, "org")
    probe("ntlm over http, sealed: host probe", s, HOST, "host")
    probe("ntlm over https (channel binding): host probe",
          session(https, "ntlm", message_encryption="never"), HOST, "host")
    probe("basic over https: host probe", session(https, "basic"), HOST, "host")
    probe("w:TimedOut polls are retried until the output comes",
          session("http://%s:%s/wsman" % (slow, http_port), "ntlm", message_encryption="always",
                  operation_timeout_sec=1, read_timeout_sec=5), HOST, "host")

    r = session(http, "ntlm", message_encryption="always").run_ps("Get-Date\n")
    check("a script without a probe marker fails like PowerShell",
          r.status_code == 1 and b"is not recognized" in r.std_err, repr(r.std_err[:300]))

    try:
        session(http, "ntlm", message_encryption="always", password="wrong").run_ps(HOST)
        check("wrong password is refused", False, "the command ran")
    except InvalidCredentialsError:
        check("wrong password is refused", True)

    try:
        session(http, "basic", message_encryption="never").run_ps(HOST)
        check("basic over http is refused", False, "the command ran")
    except (InvalidCredentialsError, WinRMTransportError):
        check("basic over http is refused", True)

    print("%d passed, %d failed" % (8 - len(failures), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
