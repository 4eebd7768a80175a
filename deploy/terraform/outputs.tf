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

output "events_queue_urls" {
  description = "Each instance's events queue, by instances key: its [events] queue_url."
  value       = { for k, q in aws_sqs_queue.events : k => q.url }
}

output "event_bus_arn" {
  description = "hub_event_bus_arn for modules/events-forwarder in other regions and accounts."
  value       = local.hub_event_bus_arn
}

output "events_rule_arn" {
  description = "The rule that fills the events queues."
  value       = aws_cloudwatch_event_rule.changes.arn
}

output "trail_arn" {
  description = "The trail recording management events for change events, or null when create_trail is false."
  value       = one(aws_cloudtrail.events[*].arn)
}
