"""Independent Kerberos client for the lab's acceptor (crates/eems-lab/tests/it/pyspnego.rs).

pyspnego (python-gssapi over MIT) is what pywinrm uses against Windows: its wrap_winrm /
unwrap_winrm lay out MS-WSMV Kerberos sealing the way Windows does. The Rust test drives this
script over stdin/stdout, one line per message, binary as base64:

  -> TOKEN <initial token>          <- REPLY <acceptor's answer>
  -> SEALED <header> <data>         <- ANSWER <header> <data>      -> PLAIN <plaintext>

Credentials come from the ticket cache (KRB5CCNAME) the test filled with kinit; the KDC from
KRB5_CONFIG. Usage: kerberos_peer.py <fqdn> <protocol: kerberos|negotiate> <messages>
"""

import base64
import sys

import spnego


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def read(expected: str) -> list:
    line = sys.stdin.readline().split()
    if not line or line[0] != expected:
        raise SystemExit(f"expected {expected}, got {line!r}")
    return [base64.b64decode(x) for x in line[1:]]


def main() -> None:
    fqdn, protocol, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ctx = spnego.client(hostname=fqdn, service="HTTP", protocol=protocol)
    print("TOKEN", b64(ctx.step()), flush=True)
    (reply,) = read("REPLY")
    ctx.step(reply)
    if not ctx.complete:
        raise SystemExit("context not complete after the acceptor's reply")
    for i in range(count):
        wrapped = ctx.wrap_winrm(f"<s:Envelope>request {i}</s:Envelope>".encode())
        print("SEALED", b64(wrapped.header), b64(wrapped.data), flush=True)
        header, data = read("ANSWER")
        print("PLAIN", b64(ctx.unwrap_winrm(header, data)), flush=True)


if __name__ == "__main__":
    main()
