# eems-probe:org:1 - eems-scan org probe. Read-only: Get-* cmdlets only.
# One call answers for the whole organisation, so the scan loads the Exchange
# snap-in once instead of once per server (HealthChecker's cost).
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
try { [Console]::OutputEncoding = [Text.Encoding]::UTF8 } catch {}
# Without the snap-in this throws: no result line, exit 1; the scanner tries
# another server.
Add-PSSnapin Microsoft.Exchange.Management.PowerShell.SnapIn
function L($v) { @($v | Where-Object { "$_" -ne '' } | ForEach-Object { "$_" }) }
function S($v) { if ($null -eq $v -or "$v" -eq '') { $null } else { "$v" } }
function D($v) {
  if ($v) { ([datetime]$v).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ') } else { $null }
}
$r = [ordered]@{
  probe = 'org'; schema = 1; organization = $null; organization_error = $null
  servers = @(); servers_error = $null
}
try {
  $o = Get-OrganizationConfig
  # A build that predates EEMS has no MitigationsEnabled: $null, as HealthChecker sees it.
  $r.organization = [ordered]@{ name = S $o.Name; mitigations_enabled = $o.MitigationsEnabled }
} catch { $r.organization_error = "$_" }
try {
  $r.servers = @(Get-ExchangeServer | ForEach-Object {
    $site = $null; if ($_.Site) { $site = S $_.Site.Name }
    [ordered]@{
      name = S $_.Name; fqdn = S $_.Fqdn; site = $site; server_role = S $_.ServerRole
      is_edge_server = $_.IsEdgeServer
      admin_display_version = S $_.AdminDisplayVersion
      mitigations_enabled = $_.MitigationsEnabled
      mitigations_applied = @(L $_.MitigationsApplied)
      mitigations_blocked = @(L $_.MitigationsBlocked)
      mitigations_applied_time = D $_.MitigationsAppliedTime
      data_collection_enabled = $_.DataCollectionEnabled
      internet_web_proxy = S $_.InternetWebProxy
    }
  })
} catch { $r.servers_error = "$_" }
$j = ConvertTo-Json $r -Depth 6 -Compress
# ASCII only: the console code page may be OEM, and PowerShell 4 ignores OutputEncoding.
$j = [regex]::Replace($j, '[^\x20-\x7E]', { param($m) '\u{0:x4}' -f [int][char]$m.Value })
Write-Output ('EEMS-PROBE-RESULT ' + $j)
