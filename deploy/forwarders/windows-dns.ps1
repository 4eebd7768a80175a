# Windows Server DNS (Active Directory DNS included): send AWS endpoint names and your private
# domains to hubdns. Run in an elevated PowerShell on each DNS server, after replacing
# 10.0.1.53 / 10.0.2.53 with your hubdns instances' fixed private IPs.
# -ReplicationScope Forest makes the forwarder an AD-integrated zone every DC gets; leave it
# out on a standalone server.

$hubdns = @("10.0.1.53", "10.0.2.53")

# Endpoint private DNS names and vpce-… names; hubdns resolves the rest through the VPC.
Add-DnsServerConditionalForwarderZone -Name "amazonaws.com" -MasterServers $hubdns -ReplicationScope Forest

# Your aliases and Route 53 private zones (one line per domain).
Add-DnsServerConditionalForwarderZone -Name "corp.example" -MasterServers $hubdns -ReplicationScope Forest

# Check: Resolve-DnsName secretsmanager.us-east-1.amazonaws.com -Server localhost
