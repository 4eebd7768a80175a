# hubdns in the hub VPC: instances with fixed private IPs in several Availability Zones, the
# IAM role with hubdns's read-only policy (deploy/iam-policy.json, the one file both this
# module and the README name), a security group open on 53/udp+tcp to the given networks,
# and optionally a DHCP option set for spoke VPCs; change events are in events.tf. The same as
# cloudformation/hubdns.yaml.

data "aws_region" "current" {}
data "aws_partition" "current" {}

data "aws_ssm_parameter" "ami" {
  name = var.ami_ssm_parameter
}

locals {
  artifact_path = trimprefix(var.artifact_s3_prefix, "s3://")
  # One ingress rule per allowed network and protocol.
  dns_ingress = { for pair in setproduct(var.allowed_cidrs, ["udp", "tcp"]) : "${pair[1]}-${pair[0]}" => { cidr = pair[0], protocol = pair[1] } }
}

resource "aws_iam_role" "hubdns" {
  name_prefix = "${var.name}-"
  description = "hubdns instances read VPC endpoints and private hosted zones."
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "ec2.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "read" {
  name   = "hubdns-read"
  role   = aws_iam_role.hubdns.id
  policy = file("${path.module}/../iam-policy.json")
}

resource "aws_iam_role_policy" "artifacts" {
  name = "hubdns-artifacts"
  role = aws_iam_role.hubdns.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "s3:GetObject", Resource = "arn:${data.aws_partition.current.partition}:s3:::${local.artifact_path}/*" }]
  })
}

# Session Manager: a shell on the instance for `dig` and `hubdns check`, no SSH.
resource "aws_iam_role_policy_attachment" "ssm" {
  role       = aws_iam_role.hubdns.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "hubdns" {
  name_prefix = "${var.name}-"
  role        = aws_iam_role.hubdns.name
  tags        = var.tags
}

resource "aws_security_group" "hubdns" {
  name_prefix = "${var.name}-"
  description = "hubdns - DNS (53/udp, 53/tcp) from the allowed networks only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = var.name })
}

resource "aws_vpc_security_group_ingress_rule" "dns" {
  for_each          = local.dns_ingress
  security_group_id = aws_security_group.hubdns.id
  description       = "DNS over ${upper(each.value.protocol)}"
  ip_protocol       = each.value.protocol
  from_port         = 53
  to_port           = 53
  cidr_ipv4         = each.value.cidr
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.hubdns.id
  description       = "AWS APIs, the VPC resolver and upstreams"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_launch_template" "hubdns" {
  name_prefix   = "${var.name}-"
  image_id      = data.aws_ssm_parameter.ami.value
  instance_type = var.instance_type
  iam_instance_profile {
    arn = aws_iam_instance_profile.hubdns.arn
  }
  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = 8
      volume_type = "gp3"
      encrypted   = true
    }
  }
  tags = var.tags
}

resource "aws_instance" "hubdns" {
  for_each = var.instances
  launch_template {
    id      = aws_launch_template.hubdns.id
    version = aws_launch_template.hubdns.latest_version
  }
  subnet_id              = each.value.subnet_id
  private_ip             = each.value.private_ip
  vpc_security_group_ids = [aws_security_group.hubdns.id]
  # Per instance: its config names its own events queue (events.tf).
  user_data_base64 = base64encode(templatefile("${path.module}/user_data.sh.tftpl", {
    artifact_s3_prefix = var.artifact_s3_prefix
    region             = data.aws_region.current.name
    vpc_id             = var.vpc_id
    queue_url          = aws_sqs_queue.events[each.key].url
  }))
  tags = merge(var.tags, { Name = "${var.name}-${each.key}" })
}

resource "aws_vpc_dhcp_options" "spokes" {
  count               = length(var.spoke_vpc_ids) > 0 ? 1 : 0
  domain_name         = data.aws_region.current.name == "us-east-1" ? "ec2.internal" : "${data.aws_region.current.name}.compute.internal"
  domain_name_servers = [for i in aws_instance.hubdns : i.private_ip]
  tags                = merge(var.tags, { Name = "${var.name}-spokes" })
}

resource "aws_vpc_dhcp_options_association" "spokes" {
  for_each        = toset(var.spoke_vpc_ids)
  vpc_id          = each.value
  dhcp_options_id = aws_vpc_dhcp_options.spokes[0].id
}
