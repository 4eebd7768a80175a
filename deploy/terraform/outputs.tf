output "dns_server_ips" {
  description = "Name these in on-prem conditional forwarders and spoke DHCP option sets."
  value       = [for i in aws_instance.hubdns : i.private_ip]
}

output "security_group_id" {
  description = "The instances' security group."
  value       = aws_security_group.hubdns.id
}

output "role_arn" {
  description = "The instances' role; add it to cross-account read roles' trust policies."
  value       = aws_iam_role.hubdns.arn
}

output "spoke_dhcp_options_id" {
  description = "The DHCP option set for spoke VPCs, or null when there are none."
  value       = one(aws_vpc_dhcp_options.spokes[*].id)
}
