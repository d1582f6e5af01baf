//! `notify-test`: one `test` event to every webhook and a ping to the heartbeat, each with the
//! daemon's timeout and attempts, so an operator sees at once whether a URL, a token or a
//! firewall is wrong. Prints one line per target, `ok` or the error; never the URL's secret part.

use crate::cli::args::Cli;
use crate::cli::setup;
use crate::notify::sender::{Deliverer, Target};
use crate::notify::{self, SecretUrl};
use crate::reconcile::exit::ExitStatus;

/// Exit 0 when every target took its message, 1 otherwise (or when there is no target).
pub fn run(cli: &Cli) -> anyhow::Result<ExitStatus> {
    let config = setup::load_config(cli)?;
    setup::init_logging(cli, Some(&config));
    let origin = notify::origin_now(&crate::clock::system_clock());
    let requests = notify::test_requests(&config.notify, &origin);
    if requests.is_empty() {
        anyhow::bail!("notify: names no webhook and no heartbeat; there is nothing to test");
    }
    let failed = setup::runtime()?.block_on(async {
        let deliverer = Deliverer::new()?;
        let mut failed = 0;
        for request in &requests {
            let result = match deliverer.deliver(request).await {
                Ok(()) => "ok".to_owned(),
                Err(err) => {
                    failed += 1;
                    err.to_string()
                }
            };
            println!("{}: {result}", describe(request.target, &request.url));
        }
        anyhow::Ok(failed)
    })?;
    Ok(if failed == 0 {
        ExitStatus::Success
    } else {
        ExitStatus::Error
    })
}

/// `webhook 0 (https://hooks.slack.com/…)` or `heartbeat (https://hc-ping.com/…)`.
fn describe(target: Target, url: &SecretUrl) -> String {
    match target {
        Target::Webhook(index) => format!("webhook {index} ({url})"),
        Target::Heartbeat => format!("heartbeat ({url})"),
    }
}
