variable "name" {
  description = "Name prefix for every resource."
  type        = string
  default     = "hubdns"
}

variable "vpc_id" {
  description = "The hub VPC, where the interface endpoints live."
  type        = string
}

variable "instances" {
  description = "One hubdns instance per entry, each in its own Availability Zone: the subnet and the fixed private IP inside it that forwarders and DHCP option sets name. Two or more."
  type = map(object({
    subnet_id  = string
    private_ip = string
  }))
  validation {
    condition     = length(var.instances) >= 2
    error_message = "Run at least two instances, in different Availability Zones."
  }
}

variable "allowed_cidrs" {
  description = "Networks allowed to query hubdns on port 53 (spoke VPCs, on-prem ranges)."
  type        = list(string)
  default     = ["10.0.0.0/8"]
}

variable "instance_type" {
  description = "x86_64 instance type. A t3.small answers tens of thousands of queries a second."
  type        = string
  default     = "t3.small"
}

variable "ami_ssm_parameter" {
  description = "Public SSM parameter naming the AMI (Amazon Linux 2023, x86_64)."
  type        = string
  default     = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

variable "artifact_s3_prefix" {
  description = "s3://bucket/path holding the release binary (path/hubdns, x86_64 Linux) and the systemd unit (path/hubdns.service, from deploy/)."
  type        = string
  validation {
    condition     = can(regex("^s3://[a-z0-9.-]+/.*[^/]$", var.artifact_s3_prefix))
    error_message = "Give s3://bucket/path, without a trailing slash."
  }
}

variable "spoke_vpc_ids" {
  description = "Spoke VPCs (same account and region) to give a DHCP option set naming hubdns as their resolver. Empty: none. Never the hub VPC: hubdns forwards to its resolver."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "create_trail" {
  description = "Change events exist only where a CloudTrail trail records management events. true: create a multi-region trail of write management events with its own S3 bucket. Keep false when a trail (or an organization trail) already records them."
  type        = bool
  default     = false
}

variable "organization_id" {
  description = "The organization (o-...) whose accounts may send events to this region's default event bus (modules/events-forwarder in member accounts). Empty: none."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^(o-[a-z0-9]{10,32})?$", var.organization_id))
    error_message = "Give an organization id (o-...) or \"\"."
  }
}

variable "event_source_accounts" {
  description = "Accounts (12 digits) that may send events to this region's default event bus, besides or instead of organization_id. This account's other regions need no entry."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for a in var.event_source_accounts : can(regex("^[0-9]{12}$", a))])
    error_message = "Accounts are 12-digit ids."
  }
}

variable "member_role_name" {
  description = "The read role in member accounts (modules/member-role, usually hubdns-read): the instances may assume it in any account, and call organizations:ListAccounts for accounts = \"organization\". Empty: this account only."
  type        = string
  default     = ""
}

variable "organization_role_arn" {
  description = "With member_role_name: a role in the management or delegated-administrator account allowed organizations:ListAccounts (organization_role_arn in the config). Empty: the instances list the accounts themselves."
  type        = string
  default     = ""
}
