output "role_arn" {
  description = "The role the hub assumes in this account."
  value       = aws_iam_role.read.arn
}
