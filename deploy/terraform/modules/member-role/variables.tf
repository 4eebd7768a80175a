variable "role_name" {
  description = "The role's name: role_name in the hub's config, member_role_name of the main module."
  type        = string
  default     = "hubdns-read"
}

variable "hub_role_arn" {
  description = "The hub instances' role (the main module's role_arn output)."
  type        = string
  validation {
    condition     = can(regex("^arn:[a-z-]+:iam::[0-9]{12}:role/.+$", var.hub_role_arn))
    error_message = "Give a role ARN, arn:aws:iam::ACCOUNT:role/NAME."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
