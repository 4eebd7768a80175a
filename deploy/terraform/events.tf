# Change events: one SQS queue per instance (an SQS message reaches one consumer), filled by an
# EventBridge rule on this region's default bus with the CloudTrail API calls hubdns acts on;
# the bus opened to the organization or listed accounts (modules/events-forwarder sends their
# events here); optionally the CloudTrail trail the events need; and, for other accounts, the
# permission to assume the member read role (modules/member-role). As cloudformation/hubdns.yaml.

data "aws_caller_identity" "current" {}

locals {
  partition         = data.aws_partition.current.partition
  account_id        = data.aws_caller_identity.current.account_id
  hub_event_bus_arn = "arn:${local.partition}:events:${data.aws_region.current.name}:${local.account_id}:event-bus/default"
  trail_name        = "${var.name}-events"
  trail_arn         = "arn:${local.partition}:cloudtrail:${data.aws_region.current.name}:${local.account_id}:trail/${local.trail_name}"
}

resource "aws_sqs_queue" "events" {
  for_each                  = var.instances
  name_prefix               = "${var.name}-events-${each.key}-"
  sqs_managed_sse_enabled   = true
  message_retention_seconds = 86400 # older changes are the poll's to reconcile
  receive_wait_time_seconds = 20
  # hubdns deletes every message it reads: no dead-letter queue.
  tags = merge(var.tags, { Name = "${var.name}-events-${each.key}" })
}

resource "aws_sqs_queue_policy" "events" {
  for_each  = aws_sqs_queue.events
  queue_url = each.value.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "FromTheHubdnsRuleOnly"
      Effect    = "Allow"
      Principal = { Service = "events.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = each.value.arn
      Condition = { ArnEquals = { "aws:SourceArn" = aws_cloudwatch_event_rule.changes.arn } }
    }]
  })
}

# The calls hubdns acts on, in event-pattern.json (hubdns::events::EC2_CALLS and ROUTE53_CALLS;
# a test keeps them equal), made in this region of this account or forwarded here by
# modules/events-forwarder, which reads the same file.
resource "aws_cloudwatch_event_rule" "changes" {
  name_prefix    = "${var.name}-changes-"
  description    = "hubdns - CloudTrail API calls that change VPC endpoints and private zones"
  event_bus_name = "default"
  event_pattern  = file("${path.module}/event-pattern.json")
  tags           = var.tags
}

resource "aws_cloudwatch_event_target" "events" {
  for_each  = aws_sqs_queue.events
  rule      = aws_cloudwatch_event_rule.changes.name
  target_id = "${var.name}-${each.key}"
  arn       = each.value.arn
}

# Each instance reads and deletes the messages of its queue.
resource "aws_iam_role_policy" "events" {
  name = "hubdns-events"
  role = aws_iam_role.hubdns.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "HubdnsReadEvents"
      Effect   = "Allow"
      Action   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
      Resource = [for q in aws_sqs_queue.events : q.arn]
    }]
  })
}

# Other accounts' forwarding rules put their events on this bus.
resource "aws_cloudwatch_event_permission" "organization" {
  count          = var.organization_id == "" ? 0 : 1
  event_bus_name = "default"
  statement_id   = "${var.name}-organization"
  principal      = "*"
  action         = "events:PutEvents"
  condition {
    key   = "aws:PrincipalOrgID"
    type  = "StringEquals"
    value = var.organization_id
  }
}

resource "aws_cloudwatch_event_permission" "accounts" {
  for_each       = toset(var.event_source_accounts)
  event_bus_name = "default"
  statement_id   = "${var.name}-account-${each.value}"
  principal      = each.value
  action         = "events:PutEvents"
}

# Other accounts: the member read role in each (accounts = [...] or "organization" with
# role_name), and the organization's account list unless organization_role_arn lists it.
resource "aws_iam_role_policy" "assume_member_roles" {
  count = var.member_role_name == "" ? 0 : 1
  name  = "hubdns-assume-member-roles"
  role  = aws_iam_role.hubdns.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "HubdnsAssumeMemberRoles"
      Effect   = "Allow"
      Action   = "sts:AssumeRole"
      Resource = compact(["arn:${local.partition}:iam::*:role/${var.member_role_name}", var.organization_role_arn])
    }]
  })
}

resource "aws_iam_role_policy" "list_accounts" {
  count = var.member_role_name != "" && var.organization_role_arn == "" ? 1 : 0
  name  = "hubdns-list-accounts"
  role  = aws_iam_role.hubdns.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Sid = "HubdnsListAccounts", Effect = "Allow", Action = "organizations:ListAccounts", Resource = "*" }]
  })
}

# The trail the events come from, when the account has none recording management events.
resource "aws_s3_bucket" "trail" {
  count         = var.create_trail ? 1 : 0
  bucket_prefix = "${var.name}-trail-"
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "trail" {
  count                   = var.create_trail ? 1 : 0
  bucket                  = aws_s3_bucket.trail[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "trail" {
  count  = var.create_trail ? 1 : 0
  bucket = aws_s3_bucket.trail[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "trail" {
  count  = var.create_trail ? 1 : 0
  bucket = aws_s3_bucket.trail[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "trail" {
  count  = var.create_trail ? 1 : 0
  bucket = aws_s3_bucket.trail[0].id
  rule {
    id     = "expire-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = 90
    }
  }
}

resource "aws_s3_bucket_policy" "trail" {
  count  = var.create_trail ? 1 : 0
  bucket = aws_s3_bucket.trail[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AWSCloudTrailAclCheck"
        Effect    = "Allow"
        Principal = { Service = "cloudtrail.amazonaws.com" }
        Action    = "s3:GetBucketAcl"
        Resource  = aws_s3_bucket.trail[0].arn
        Condition = { StringEquals = { "aws:SourceArn" = local.trail_arn } }
      },
      {
        Sid       = "AWSCloudTrailWrite"
        Effect    = "Allow"
        Principal = { Service = "cloudtrail.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.trail[0].arn}/AWSLogs/${local.account_id}/*"
        Condition = { StringEquals = { "s3:x-amz-acl" = "bucket-owner-full-control", "aws:SourceArn" = local.trail_arn } }
      },
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.trail[0].arn, "${aws_s3_bucket.trail[0].arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })
  depends_on = [aws_s3_bucket_public_access_block.trail]
}

resource "aws_cloudtrail" "events" {
  count                         = var.create_trail ? 1 : 0
  name                          = local.trail_name
  s3_bucket_name                = aws_s3_bucket.trail[0].id
  enable_logging                = true
  is_multi_region_trail         = true # EC2 calls in every region; Route 53's are global (us-east-1)
  include_global_service_events = true
  enable_log_file_validation    = true
  # Management events; hubdns needs only the calls that change something.
  event_selector {
    read_write_type           = "WriteOnly"
    include_management_events = true
  }
  tags       = var.tags
  depends_on = [aws_s3_bucket_policy.trail]
}
