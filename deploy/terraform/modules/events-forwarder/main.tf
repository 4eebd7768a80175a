# hubdns change events from elsewhere: a rule on this region's default event bus sending the
# CloudTrail API calls hubdns acts on to the hub's event bus (the main module's event_bus_arn).
# Use it, with a provider for each, in every other region of the hub account where endpoints
# change (and us-east-1, where Route 53's calls arrive, when the hub is elsewhere), and in
# member accounts. As cloudformation/hubdns-events-forwarder.yaml.

data "aws_region" "current" {}
data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  this_bus_arn = "arn:${data.aws_partition.current.partition}:events:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:event-bus/default"
}

resource "aws_iam_role" "forward" {
  name_prefix = "${var.name}-forward-"
  description = "EventBridge forwards hubdns change events to the hub's event bus."
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "events.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id } }
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "forward" {
  name = "hubdns-forward-events"
  role = aws_iam_role.forward.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "events:PutEvents", Resource = var.hub_event_bus_arn }]
  })
}

# The main module's pattern, from its event-pattern.json (hubdns::events::EC2_CALLS and
# ROUTE53_CALLS; a test keeps them equal).
resource "aws_cloudwatch_event_rule" "forward" {
  name_prefix    = "${var.name}-forward-"
  description    = "hubdns - forward CloudTrail API calls that change VPC endpoints and private zones"
  event_bus_name = "default"
  event_pattern  = file("${path.module}/../../event-pattern.json")
  tags           = var.tags
  lifecycle {
    precondition {
      condition     = var.hub_event_bus_arn != local.this_bus_arn
      error_message = "This is the hub's own bus: its region needs no forwarder (the rule would send events to itself)."
    }
  }
}

resource "aws_cloudwatch_event_target" "hub" {
  rule      = aws_cloudwatch_event_rule.forward.name
  target_id = "${var.name}-hub"
  arn       = var.hub_event_bus_arn
  role_arn  = aws_iam_role.forward.arn
}
