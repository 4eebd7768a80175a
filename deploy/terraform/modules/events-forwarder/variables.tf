variable "hub_event_bus_arn" {
  description = "The hub's event bus, arn:aws:events:REGION:ACCOUNT:event-bus/default (the main module's event_bus_arn output). For another account's events, the hub must list this account (event_source_accounts) or its organization (organization_id)."
  type        = string
  validation {
    condition     = can(regex("^arn:[a-z-]+:events:[a-z0-9-]+:[0-9]{12}:event-bus/.+$", var.hub_event_bus_arn))
    error_message = "Give an event bus ARN, arn:aws:events:REGION:ACCOUNT:event-bus/default."
  }
}

variable "name" {
  description = "Name prefix for every resource."
  type        = string
  default     = "hubdns"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
