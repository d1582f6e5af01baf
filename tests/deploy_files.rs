//! The shipped monitoring files against the daemon they monitor: every metric that the Grafana
//! dashboard (`deploy/grafana/bunq-ipsync.json`) and the alert rules
//! (`deploy/prometheus/alerts.yaml`) query is one a running daemon exports, compared against a
//! real `/metrics` scrape of the binary on the simulator. (That the alerts fire when they should
//! is `promtool test rules`, in `.ci/checks/prometheus`.)

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::promql::{exposition_names, metric_names};
use crate::support::{ConfigSpec, World, free_port, metric_value, write_atomically};
use bunq_ipsync::bunq::model::IpStatus::Active;

const A: &str = "203.0.113.1";

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|err| panic!("{}: {err}", full.display()))
}

/// Every PromQL expression of the dashboard: the panels' targets (rows nest panels too) and the
/// template variables' queries.
fn dashboard_queries() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("deploy/grafana/bunq-ipsync.json")).unwrap();
    fn panel_exprs(panels: &serde_json::Value, out: &mut Vec<String>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.extend(target["expr"].as_str().map(str::to_owned));
            }
            panel_exprs(&panel["panels"], out);
        }
    }
    let mut queries = Vec::new();
    panel_exprs(&dashboard["panels"], &mut queries);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] == "query" {
            let query = &variable["query"];
            queries.extend(
                query["query"]
                    .as_str()
                    .or(query.as_str())
                    .map(str::to_owned),
            );
        }
    }
    queries
}

/// Every `expr` of the alert rules.
fn alert_exprs() -> Vec<String> {
    let rules: yaml_serde::Value =
        yaml_serde::from_str(&repo_file("deploy/prometheus/alerts.yaml")).unwrap();
    rules["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_sequence().into_iter().flatten())
        .filter_map(|rule| rule["expr"].as_str().map(str::to_owned))
        .collect()
}

fn names_in(exprs: &[String]) -> BTreeSet<String> {
    exprs.iter().flat_map(|expr| metric_names(expr)).collect()
}

#[test]
fn promql_names_are_the_metrics_and_nothing_else() {
    let names = |expr: &str| metric_names(expr).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum by (result, le) (increase(runs_total{job=~"$job",x="a}b"}[$__rate_interval])) > 0"#
        ),
        ["runs_total"]
    );
    assert_eq!(
        names("(time() - last_success > 900) and on(instance) (time() - start_time > 900)"),
        ["last_success", "start_time"]
    );
    assert_eq!(
        names("histogram_quantile(0.95, sum without (x) (rate(d_bucket[5m] offset 1h)))"),
        ["d_bucket"]
    );
    assert_eq!(
        names(r#"label_values(build_info{job=~"$job"}, instance)"#),
        ["build_info"]
    );
    assert_eq!(names(r#"a == bool 1 unless b{c="d"} or Inf"#), ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_query_only_metrics_a_running_daemon_exports() {
    let world = World::configured(&[(A, Active)], &ConfigSpec::ips(&[A])).await;
    // A webhook (nobody listens) makes the notification series exist, as in a real setup.
    let config = format!(
        "{}notify:\n  webhooks:\n    - url: http://127.0.0.1:{}/hook\n",
        world.config_text(&ConfigSpec::ips(&[A]), world.port),
        free_port()
    );
    write_atomically(&world.config_path, &config);
    let mut daemon = world.spawn(&[], &[]);
    daemon.wait_settled().await;
    let scrape = daemon.metrics().await;
    daemon.stop_cleanly().await;
    let exported = exposition_names(&scrape);
    // Label values known in advance exist before their first event.
    for rule in [
        "own-ip",
        "protected",
        "max-changes",
        "unknown-status",
        "source-unavailable",
    ] {
        let series = format!(r#"bunq_ipsync_changes_blocked_total{{reason="{rule}"}}"#);
        assert_eq!(metric_value(&scrape, &series), Some(0.0), "{series}");
    }

    let dashboard = dashboard_queries();
    let alerts = alert_exprs();
    assert!(
        dashboard.len() >= 20,
        "dashboard queries found: {dashboard:?}"
    );
    assert_eq!(alerts.len(), 8, "alert expressions found: {alerts:?}");
    for (file, exprs) in [
        ("deploy/grafana/bunq-ipsync.json", &dashboard),
        ("deploy/prometheus/alerts.yaml", &alerts),
    ] {
        let queried = names_in(exprs);
        assert!(queried.len() >= 5, "{file}: names found: {queried:?}");
        let unknown: Vec<_> = queried.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} queries metrics the daemon does not export: {unknown:?}\nexported: {exported:?}"
        );
    }
    // The names this suite relies on for process health are really there.
    for name in [
        "process_resident_memory_bytes",
        "process_start_time_seconds",
    ] {
        assert!(exported.contains(name), "{name} in {exported:?}");
    }
}
