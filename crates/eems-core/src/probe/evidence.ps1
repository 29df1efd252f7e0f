# eems-probe:host:2 evidence part. Read-only; no Exchange snap-in.
# It runs after host.ps1 in one script (the scanner adds $EvidenceDays to the header) and
# prints host.ps1's $r with `evidence` added. Each part has its own try and error; every query is
# bounded: -MaxEvents, the last 1 MiB of one log file, 50 rules per file, 400-char texts.
# Aliases and short names keep the wire copy small:
# -EA 1 is -ErrorAction Stop, -Li -LiteralPath; gp/gwmi/gci/gc/gps/gsv are Get-ItemProperty/WmiObject/ChildItem/Content/Process/Service.
# Hashtables, not [ordered]: JSON member order carries no meaning.
# $p: the install path from the registry, as v1 reads it (it ends with a backslash); without it,
# Join-Path fails the log part with a reason and the owa path simply does not exist.
# T: a date as ISO 8601 UTC (never PS 5.1's \/Date()\/ form); C: a text cut to 400 chars.
function T($d){if($d){$d.ToUniversalTime().ToString('s')+'Z'}}
function C($s){if($s){$s="$s";$s.Substring(0,[Math]::Min(400,$s.Length))}}
# W: Get-WinEvent reading "no events found" as an empty list, not an error.
function W($h,$m){try{@(Get-WinEvent -MaxEvents $m -FilterHashtable $h -EA 1)}catch{if($_.FullyQualifiedErrorId-notmatch'NoMatch'){throw}}}
$n=Get-Date;$p=(gp 'HKLM:\SOFTWARE\Microsoft\ExchangeServer\v15\Setup' -EA 0).MsiInstallPath
$w=gwmi Win32_Service -F "Name='MSExchangeMitigation'" -EA 0
$v=@{window_days=$EvidenceDays};$a=@{error=$null}
try{foreach($k in 'fetch_errors','applied'){$g=@(W @{LogName='Application';ProviderName='MSExchange Mitigation Service';Id=@{fetch_errors=1008;applied=1005,1006}[$k];StartTime=$n.AddDays(-$EvidenceDays)} 500)
$a[$k]=@{count=$g.Count;last_time=T $g[0].TimeCreated;last_message=C $g[0].Message}}}catch{$a.error=C $_}
$v.events=$a
# SCM events carry the service's display name (localised) as data.
try{$v.service_changes=@(W @{LogName='System';ProviderName='Service Control Manager';Id=7040,7036,7031;StartTime=$n.AddDays(-30);Data=$w.DisplayName} 20|%{@{time=T $_.TimeCreated;id=$_.Id;message=C $_.Message}})}catch{$v.service_changes_error=C $_}
if($w.ProcessId){try{$v.service_started=T (gps -Id $w.ProcessId -EA 1).StartTime}catch{}}
$l=@{error=$null;folder_exists=$false;newest_file=$null;newest_write_time=$null;problem_lines=@()}
try{$f=Join-Path $p 'Logging\MitigationService';if(Test-Path -Li $f){$l.folder_exists=$true
$g=gci -Li $f -File -EA 1|sort LastWriteTimeUtc|select -Last 1
if($g){$l.newest_file=$g.Name;$l.newest_write_time=T $g.LastWriteTimeUtc
# Shared read: EEMS keeps its log open for writing.
$b=[IO.File]::Open($g.FullName,'Open','Read','ReadWrite')
try{[void]$b.Seek([Math]::Max(0,$b.Length-1MB),0);$t=(New-Object IO.StreamReader $b).ReadToEnd()}finally{$b.Close()}
$l.problem_lines=@($t-split"`n"|?{$_-match'LogLevel=(Warning|Error)|untrusted endpoint|certificate'}|select -Last 20|%{C $_.Trim()})}}}catch{$l.error=C $_}
$v.log=$l
# EEMS adds rules and preconditions named 'EEMS ...' at server level (applicationHost.config)
# and at site or vdir level (web.config).
$i=@{error=$null;rules=@()}
try{$h="$env:windir\System32\inetsrv\config\applicationHost.config";[xml]$x=gc -Li $h -Raw -EA 1
$d=[Environment]::ExpandEnvironmentVariables("$($x.SelectSingleNode("//site[@name='Default Web Site']//virtualDirectory[@path='/']").physicalPath)")
foreach($c in @(@('applicationHost.config',$h),@('Default Web Site web.config',"$d\web.config"),@('owa web.config',($p+'FrontEnd\HttpProxy\owa\web.config')))){if(Test-Path -Li $c[1]){[xml]$x=gc -Li $c[1] -Raw -EA 1
$i.rules+=@($x.SelectNodes("//rewrite//*[starts-with(@name,'EEMS ')]")|select -First 50|%{@{name=$_.GetAttribute('name');section=$_.ParentNode.LocalName;enabled=$_.GetAttribute('enabled')-ne'false';file=$c[0]}})}}}catch{$i.error=C $_}
$v.iis_rules=$i;$u=gsv MSExchangeFlighting -EA 0
$v.flighting=if($u){@{status="$($u.Status)";start_type="$($u.StartType)"}}
$r.evidence=$v;$j=ConvertTo-Json $r -Depth 6 -Compress
$j=[regex]::Replace($j,'[^\x20-\x7E]',{param($m)'\u{0:x4}'-f[int][char]$m.Value})
Write-Output ('EEMS-PROBE-RESULT '+$j)
