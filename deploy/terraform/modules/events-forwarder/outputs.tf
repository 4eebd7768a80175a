output "forward_rule_arn" {
  description = "The rule forwarding this region's change events to the hub."
  value       = aws_cloudwatch_event_rule.forward.arn
}
