//! The accounts of an AWS Organization, for sources with `accounts = "organization"`.
//!
//! [`list`] asks Organizations ListAccounts (paginated) through the source's own credentials
//! or `organization_role_arn` (a role in the management or a delegated administrator
//! account), and keeps the ACTIVE accounts ([`is_active`]). The refresh loop lists again
//! every refresh interval, starts a source task per new account and region, and drops the
//! tasks of accounts that left or were closed or suspended. A failed listing keeps the last
//! list: the accounts already known go on being read.
//!
//! Each account is read through `arn:<partition>:iam::<account>:role/<role_name>`
//! ([`role_arn`]); what one account's role or API does stays in that account's task.

use std::{sync::Arc, time::Duration};

use aws_sdk_organizations::{
    Client,
    types::{Account, AccountState, AccountStatus},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    config::AwsAccess,
    sources::{
        OrgListing,
        aws::{FetchError, sdk_config, sdk_message},
        runner::jitter,
    },
    status::StatusBoard,
};

/// A listing of one organization: its key ([`OrgListing::key`]) and the ACTIVE account ids,
/// sorted.
pub type Listed = (String, Vec<String>);

/// Whether an account is ACTIVE: by `State` where Organizations gives it (`Status` is
/// deprecated in its favour), else by `Status` (Organizations API reference, Account).
pub fn is_active(account: &Account) -> bool {
    match account.state() {
        Some(state) => *state == AccountState::Active,
        None => account.status() == Some(&AccountStatus::Active),
    }
}

/// The partition of a region: `aws-cn` for China, `aws-us-gov` for GovCloud, `aws` elsewhere.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The role hubdns assumes in `account`.
pub fn role_arn(region: &str, account: &str, role_name: &str) -> String {
    format!("arn:{}:iam::{account}:role/{role_name}", partition(region))
}

/// Every ACTIVE account of the organization, sorted.
pub async fn list(client: &Client, region: &str) -> Result<Vec<String>, FetchError> {
    let pages = client
        .list_accounts()
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| FetchError { call: "ListAccounts", region: region.to_owned(), message: sdk_message(&e) })?;
    let accounts: Vec<&Account> = pages.iter().flat_map(|page| page.accounts()).collect();
    let mut ids: Vec<String> = accounts.iter().filter(|a| is_active(a)).filter_map(|a| a.id().map(str::to_owned)).collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Lists the organization `how` says every `interval` (± 10 %) until `cancel`, sending each
/// listing; a failure is logged and retried with doubling backoff up to `max_backoff`.
pub async fn keep_listing(
    how: OrgListing,
    interval: Duration,
    max_backoff: Duration,
    listed: mpsc::UnboundedSender<Listed>,
    board: Arc<StatusBoard>,
    cancel: CancellationToken,
) {
    let key = how.key.clone();
    let run = async {
        let access = AwsAccess {
            region: &how.region,
            role_arn: how.role_arn.as_deref(),
            // Organizations is reached at its own address (AWS_ENDPOINT_URL_ORGANIZATIONS in
            // tests); a source's endpoint_url is for its own API only.
            endpoint_url: None,
            max_attempts: how.max_attempts,
            api_timeout_secs: how.api_timeout_secs,
            static_credentials: how.static_credentials,
        };
        let client = Client::new(&sdk_config(&access).await);
        let mut failures = 0u32;
        loop {
            let wait = match list(&client, &how.region).await {
                Ok(accounts) => {
                    failures = 0;
                    board.update_organization(&key, |o| {
                        o.accounts = accounts.len();
                        o.last_listed = Some(std::time::SystemTime::now());
                        o.last_error = None;
                    });
                    if listed.send((key.clone(), accounts)).is_err() {
                        return;
                    }
                    jitter(interval)
                }
                Err(error) => {
                    failures += 1;
                    let wait = jitter(interval.saturating_mul(1 << failures.min(16).saturating_sub(1)).min(max_backoff));
                    tracing::warn!(organization = %key, %error, retry_in_secs = wait.as_secs_f32(), "cannot list the organization's accounts; the accounts known are still read");
                    board.update_organization(&key, |o| {
                        o.failures += 1;
                        o.last_error = Some(error.to_string());
                    });
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    };
    tokio::select! {
        () = cancel.cancelled() => {}
        () = run => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_accounts_count_and_roles_follow_the_partition() {
        let account = |state: Option<AccountState>, status: Option<AccountStatus>| {
            Account::builder().id("222233334444").set_state(state).set_status(status).build()
        };
        assert!(is_active(&account(Some(AccountState::Active), None)));
        assert!(is_active(&account(None, Some(AccountStatus::Active))));
        assert!(!is_active(&account(Some(AccountState::Suspended), Some(AccountStatus::Active))), "State wins");
        assert!(!is_active(&account(Some(AccountState::PendingClosure), None)));
        assert!(!is_active(&account(None, Some(AccountStatus::Suspended))));
        assert!(!is_active(&account(None, None)));
        assert_eq!(role_arn("us-east-1", "222233334444", "hubdns-read"), "arn:aws:iam::222233334444:role/hubdns-read");
        assert_eq!(role_arn("cn-north-1", "222233334444", "r"), "arn:aws-cn:iam::222233334444:role/r");
        assert_eq!(role_arn("us-gov-west-1", "222233334444", "r"), "arn:aws-us-gov:iam::222233334444:role/r");
    }
}
