# eems-probe:host:1 - eems-scan host probe. Read-only; no Exchange snap-in.
# The scanner prepends $OcsUrl, $Proxy (the server's InternetWebProxy or $null)
# and $OcsTimeoutSec as single-quoted literals.
$ProgressPreference = 'SilentlyContinue'
try { [Console]::OutputEncoding = [Text.Encoding]::UTF8 } catch {}
$r = [ordered]@{
  probe = 'host'; schema = 1; computer_name = $env:COMPUTERNAME
  exsetup_version = $null; install_path = $null; service = $null; ocs = $null
}
try {
  $p = (Get-ItemProperty 'HKLM:\SOFTWARE\Microsoft\ExchangeServer\v15\Setup' -ErrorAction Stop).MsiInstallPath
  $r.install_path = $p
  $x = Get-Item -LiteralPath (Join-Path $p 'bin\ExSetup.exe') -ErrorAction Stop
  $r.exsetup_version = $x.VersionInfo.FileVersion
} catch {}
try {
  $s = Get-Service -Name MSExchangeMitigation -ErrorAction Stop
  $st = "$($s.StartType)"
  if (-not $st) {
    # .NET before 4.6.1 has no StartType.
    $m = (Get-WmiObject Win32_Service -Filter "Name='MSExchangeMitigation'").StartMode
    $st = if ($m -eq 'Auto') { 'Automatic' } else { "$m" }
  }
  $r.service = [ordered]@{ status = "$($s.Status)"; start_type = $st }
} catch {}
# As HealthChecker: from this server, TLS 1.2, through InternetWebProxy with
# default credentials and local bypass. Unlike it: a timeout, and the proxy is
# set on this request only, not process-wide.
$o = [ordered]@{ url = $OcsUrl; proxy = $Proxy; status_code = $null; error = $null; elapsed_ms = 0 }
$w = [Diagnostics.Stopwatch]::StartNew()
$tls = [Net.ServicePointManager]::SecurityProtocol
try {
  [Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12
  $q = [Net.WebRequest]::Create($OcsUrl)
  $q.Timeout = $OcsTimeoutSec * 1000
  $q.ReadWriteTimeout = $OcsTimeoutSec * 1000
  $q.MaximumAutomaticRedirections = 5
  if ($Proxy) {
    $wp = New-Object Net.WebProxy($Proxy)
    $wp.Credentials = [Net.CredentialCache]::DefaultNetworkCredentials
    $wp.BypassProxyOnLocal = $true
    $q.Proxy = $wp
  }
  $resp = $q.GetResponse()
  $o.status_code = [int]$resp.StatusCode
  $resp.Close()
} catch {
  $e = $_.Exception
  while ($e.InnerException -and -not ($e -is [Net.WebException])) { $e = $e.InnerException }
  if ($e -is [Net.WebException] -and $e.Response) { $o.status_code = [int]$e.Response.StatusCode }
  $o.error = $e.Message
} finally {
  [Net.ServicePointManager]::SecurityProtocol = $tls
}
$o.elapsed_ms = [int]$w.ElapsedMilliseconds
$r.ocs = $o
# With the evidence part behind it (one script, $EvidenceDays set), that part prints $r.
if (-not $EvidenceDays) {
  $j = ConvertTo-Json $r -Depth 4 -Compress
  $j = [regex]::Replace($j, '[^\x20-\x7E]', { param($m) '\u{0:x4}' -f [int][char]$m.Value })
  Write-Output ('EEMS-PROBE-RESULT ' + $j)
}
