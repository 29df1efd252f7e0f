"""Independent-client check of the lab's Exchange /PowerShell endpoint with pypsrp.

pypsrp (jborean93) is the Python MS-PSRP client admins use against Exchange; here with
Kerberos (pyspnego + MIT GSSAPI), configuration_name="Microsoft.Exchange", path="PowerShell/".
Arguments: address port fqdn org_name server_count [ca_pem]. With ca_pem: HTTPS trusting that
CA, the bodies not encrypted inside TLS (as Windows does) and the ticket bound to the server's
certificate (pyspnego's channel bindings, which Extended Protection requires). The ticket
comes from KRB5CCNAME (kinit'ed by the Rust side), the realm from KRB5_CONFIG. Prints one line per check; exits non-zero on
the first failure.
"""
import datetime
import sys
import xml.etree.ElementTree as ET

from pypsrp.exceptions import AuthenticationError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

address, port, fqdn, org_name, server_count = sys.argv[1:6]
ca = sys.argv[6] if len(sys.argv) > 6 else None


def wsman(auth="kerberos", **kw):
    return WSMan(
        address,
        port=int(port),
        path="PowerShell/",
        ssl=ca is not None,
        cert_validation=ca or True,
        auth=auth,
        encryption="auto" if ca else "always",
        negotiate_hostname_override=fqdn,
        negotiate_service="HTTP",
        operation_timeout=10,
        read_timeout=20,
        connection_timeout=10,
        **kw,
    )


def is_time(v):
    # pypsrp leaves a <DT> as its ISO 8601 text.
    if isinstance(v, datetime.datetime):
        return True
    try:
        datetime.datetime.fromisoformat(str(v).replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


def check(cond, what):
    if not cond:
        print("FAIL: " + what)
        sys.exit(1)
    print("ok: " + what)


with RunspacePool(wsman(), configuration_name="Microsoft.Exchange") as pool:
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-OrganizationConfig")
    org = ps.invoke()
    check(not ps.had_errors and len(org) == 1, "Get-OrganizationConfig returns one object")
    props = org[0].adapted_properties or {}
    props.update(org[0].extended_properties or {})
    check(props.get("Name") == org_name, "OrganizationConfig.Name is %r" % props.get("Name"))
    check(isinstance(props.get("MitigationsEnabled"), bool), "MitigationsEnabled is a bool")

    ps = PowerShell(pool)
    ps.add_cmdlet("Get-ExchangeServer")
    servers = ps.invoke()
    check(not ps.had_errors and len(servers) == int(server_count), "Get-ExchangeServer returns %s servers" % server_count)
    s = servers[0]
    props = s.adapted_properties or {}
    props.update(s.extended_properties or {})
    check("/Configuration/Sites/" in str(props.get("Site")), "Site is an ADObjectId string: %r" % props.get("Site"))
    check(str(props.get("AdminDisplayVersion", "")).startswith("Version 15."), "AdminDisplayVersion is a string")
    check("MitigationsApplied" in props and "MitigationsAppliedTime" in props, "mitigation properties present")
    check(is_time(props.get("WhenChangedUTC")), "WhenChangedUTC is a DateTime: %r" % (props.get("WhenChangedUTC"),))
    check("RingLevel" in props and "LastFlightingServiceRunTime" in props, "Feature Flighting properties present")

    # Search-AdminAuditLog as a bare command with list and DateTime parameters.
    ps = PowerShell(pool)
    ps.add_cmdlet("Search-AdminAuditLog")
    ps.add_parameter("Cmdlets", ["Set-OrganizationConfig", "Set-ExchangeServer"])
    ps.add_parameter("Parameters", ["MitigationsEnabled", "MitigationsBlocked"])
    # pypsrp cannot serialize a datetime (<DT>); PowerShell's binder converts the string.
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=90)
    ps.add_parameter("StartDate", start.strftime("%Y-%m-%dT%H:%M:%SZ"))
    events = ps.invoke()
    check(not ps.had_errors and len(events) == 1, "Search-AdminAuditLog returns the one change within 90 days (%d)" % len(events))
    props = events[0].adapted_properties or {}
    props.update(events[0].extended_properties or {})
    check(props.get("Caller") == "lab.local/Users/bob", "Caller is %r" % props.get("Caller"))
    check(is_time(props.get("RunDate")), "RunDate is a DateTime: %r" % (props.get("RunDate"),))
    # A MultiValuedProperty's type is not one pypsrp knows as a list: it keeps the <LST> as XML.
    params = props.get("CmdletParameters")
    lst = ET.fromstring(params.property_sets[0]) if getattr(params, "property_sets", None) else None
    first = {}
    if lst is not None and len(lst):
        first = {e.attrib.get("N"): e.text for e in lst[0].iter() if "N" in e.attrib}
    check("MultiValuedProperty" in " ".join(params.types), "CmdletParameters is a MultiValuedProperty: %r" % params.types)
    check(first.get("Name") == "MitigationsEnabled" and first.get("Value") == "False", "CmdletParameters carry Name and Value: %r" % first)

    # NoLanguage: script text is refused with Exchange's words.
    ps = PowerShell(pool)
    ps.add_script("Get-OrganizationConfig | Select-Object Name")
    ps.invoke()

    def message(record):
        # ErrorRecord.exception is a deserialized exception: its Message is a property.
        exc = getattr(record, "exception", None)
        props = {}
        for bag in (getattr(exc, "adapted_properties", None), getattr(exc, "extended_properties", None)):
            props.update(bag or {})
        return str(props.get("Message", exc))

    refused = " ".join(message(e) for e in ps.streams.error)
    check(ps.had_errors and "no-language mode" in refused, "script text refused: %r" % refused[:160])

# NTLM is not accepted on /PowerShell.
try:
    with RunspacePool(wsman(auth="ntlm", username="LAB\\administrator", password="x"), configuration_name="Microsoft.Exchange"):
        pass
    check(False, "NTLM refused")
except (AuthenticationError, ValueError) as e:
    check(True, "NTLM refused (%s)" % type(e).__name__)

print("pypsrp: all checks passed")
