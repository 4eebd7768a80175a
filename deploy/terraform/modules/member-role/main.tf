# hubdns in a member account: the read-only role the hub's instances assume to read this
# account's VPC endpoints and private hosted zones, with deploy/iam-policy.json (the one policy
# file of every deploy path). IAM is global: once per account. As
# cloudformation/hubdns-member-role.yaml.

resource "aws_iam_role" "read" {
  name        = var.role_name
  description = "hubdns in the hub account reads VPC endpoints and private hosted zones."
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { AWS = var.hub_role_arn }, Action = "sts:AssumeRole" }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "read" {
  name   = "hubdns-read"
  role   = aws_iam_role.read.id
  policy = file("${path.module}/../../../iam-policy.json")
}
