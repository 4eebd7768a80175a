//! The deploy kit (deploy/) checked against the binary it deploys:
//! - the systemd unit passes `systemd-analyze verify`, is hardened as promised, and its
//!   ExecStartPre accepts the shipped config;
//! - the Dockerfile's cargo build command is run here exactly as written, and the image's
//!   health check is the probe of the config's admin listener;
//! - the Kubernetes manifests agree with each other and their config passes `hubdns check`;
//! - the CloudFormation templates pass cfn-lint, their IAM policy is deploy/iam-policy.json,
//!   and the config their user data writes passes `hubdns check`;
//! - the Terraform module documents its variables and writes CloudFormation's user data;
//! - the Grafana dashboard queries only metrics hubdns exports, in PromQL that Prometheus's
//!   own parser accepts, and the export passes `promtool check metrics`.
//!
//! Nothing here talks to AWS, Docker or a cluster: none of them is on the test machine.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use crate::harness::{HUBDNS, tempdir};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `hubdns check` on config `text`; panics with its output unless it accepts it.
fn assert_config_checks(text: &str, what: &str) -> String {
    let path = tempdir().join("hubdns.toml");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(HUBDNS).args(["check", "--config"]).arg(&path).output().expect("hubdns runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{what}: hubdns check refused it:\n{}\n{text}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// `KEY=value` lines of a unit file, in order.
fn directives(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = read("deploy/hubdns.service");
    let set: Vec<(String, String)> = directives(&unit);
    let has = |key: &str, value: &str| set.iter().any(|(k, v)| k == key && v == value);
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("StateDirectory", "hubdns"),
        ("Restart", "on-failure"),
        ("ExecStartPre", "/usr/local/bin/hubdns check --config /etc/hubdns/hubdns.toml"),
        ("ExecStart", "/usr/local/bin/hubdns serve --config /etc/hubdns/hubdns.toml"),
        // `systemctl reload`: SIGHUP, which hubdns answers by re-reading its config.
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert!(has(key, value), "deploy/hubdns.service lacks {key}={value}");
    }
    // The state file must sit where the unit lets hubdns write.
    let config = read("deploy/hubdns.toml");
    assert!(config.contains("state_file = \"/var/lib/hubdns/state.json\""), "state file outside StateDirectory");

    // systemd-analyze checks the unit, including that the commands exist: point them at the
    // binary under test and the shipped config, then run ExecStartPre as systemd would.
    let local = unit
        .replace("/usr/local/bin/hubdns", HUBDNS)
        .replace("/etc/hubdns/hubdns.toml", &repo().join("deploy/hubdns.toml").display().to_string());
    let dir = tempdir();
    let path = dir.join("hubdns.service");
    std::fs::write(&path, &local).expect("write unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run systemd-analyze ({e}): apt-get install systemd (scripts/test does)"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let about_us: Vec<&str> = stderr.lines().filter(|l| l.contains("hubdns.service")).collect();
    assert!(out.status.success() && about_us.is_empty(), "systemd-analyze verify:\n{stderr}");
    let pre = directives(&local).into_iter().find(|(k, _)| k == "ExecStartPre").expect("ExecStartPre").1;
    let mut words = pre.split_whitespace();
    let status = Command::new(words.next().expect("command")).args(words).output().expect("ExecStartPre runs").status;
    assert!(status.success(), "ExecStartPre refuses the shipped config");
}

/// The Dockerfile's instructions with continuation lines joined: (instruction, arguments, stage).
fn dockerfile() -> Vec<(String, String, usize)> {
    let text = read("deploy/Dockerfile");
    let mut out = Vec::new();
    let mut stage = 0;
    let mut current = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()) {
        current.push_str(line.trim_end_matches('\\'));
        current.push(' ');
        if line.ends_with('\\') {
            continue;
        }
        let (instruction, args) = current.trim().split_once(' ').unwrap_or((current.trim(), ""));
        if instruction == "FROM" {
            stage += 1;
        }
        out.push((instruction.to_owned(), args.trim().to_owned(), stage));
        current.clear();
    }
    out
}

#[test]
fn the_dockerfile_builds_with_the_commands_run_here_and_checks_readiness() {
    let steps = dockerfile();
    let last = steps.iter().map(|s| s.2).max().expect("stages");
    assert!(last >= 2, "multi-stage");
    let in_runtime = |instruction: &'static str| steps.iter().filter(move |s| s.2 == last && s.0 == instruction).map(|s| s.1.clone());
    let user: Vec<String> = in_runtime("USER").collect();
    assert!(!user.is_empty() && user.iter().all(|u| !u.starts_with('0') && !u.starts_with("root")), "runs as non-root: {user:?}");
    let volumes = in_runtime("VOLUME").collect::<Vec<_>>().join(" ");
    assert!(volumes.contains("/etc/hubdns") && volumes.contains("/var/lib/hubdns"), "{volumes}");
    assert_eq!(in_runtime("EXPOSE").collect::<Vec<_>>(), ["53/udp 53/tcp"]);

    // The health check asks /readyz of the admin listener the image's config opens.
    let health = in_runtime("HEALTHCHECK").next().expect("HEALTHCHECK");
    let config = read("deploy/hubdns.toml");
    let admin = config.lines().find_map(|l| l.strip_prefix("listen = \"")).and_then(|l| l.strip_suffix('"')).expect("admin.listen");
    assert!(health.contains(&format!("\"--admin\", \"{admin}\"")) && health.contains("\"/readyz\""), "{health}");
    assert!(in_runtime("COPY").any(|c| c.contains("deploy/hubdns.toml /etc/hubdns/hubdns.toml")));

    // The build stage's cargo commands, run here as written; then the binary they make
    // answers, checks the image's config, and passes its own health check when serving.
    let cargo: Vec<String> = steps.iter().filter(|s| s.2 < last && s.0 == "RUN" && s.1.starts_with("cargo ")).map(|s| s.1.clone()).collect();
    assert_eq!(cargo, ["cargo build --release --locked --bin hubdns"]);
    for command in &cargo {
        // At the lowest priority: the tests running beside it keep their timing.
        let status = Command::new("nice").args(["-n", "19", "sh", "-c", command]).current_dir(repo()).status().expect("sh runs");
        assert!(status.success(), "the Dockerfile's `{command}` fails here");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("target"));
    let built = target.join("release/hubdns");
    let version = Command::new(&built).arg("--version").output().expect("release binary runs");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("hubdns "), "{version:?}");
    let checked = Command::new(&built).args(["check", "--config"]).arg(repo().join("deploy/hubdns.toml")).status().expect("runs");
    assert!(checked.success(), "the image's config is refused by the image's binary");
}

/// Every document of a manifest, as JSON values.
fn manifest(file: &str) -> Vec<Value> {
    let text = read(&format!("deploy/kubernetes/{file}"));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}")))
        .collect()
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit(':').next().and_then(|p| p.trim_matches(|c| c == '"' || c == ']').parse().ok()).expect("port")
}

#[test]
fn the_kubernetes_manifests_agree_and_their_config_checks() {
    let kustomization = &manifest("kustomization.yaml")[0];
    let listed: BTreeSet<String> =
        kustomization["resources"].as_array().expect("resources").iter().filter_map(|r| r.as_str().map(str::to_owned)).collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, on_disk, "kustomization lists every manifest");
    let one = |file: &str, kind: &str| {
        let doc = manifest(file).remove(0);
        assert_eq!(doc["kind"], kind, "{file}");
        doc
    };
    let config_map = one("configmap.yaml", "ConfigMap");
    let deployment = one("deployment.yaml", "Deployment");
    let service = one("service.yaml", "Service");
    let pdb = one("poddisruptionbudget.yaml", "PodDisruptionBudget");
    let account = one("serviceaccount.yaml", "ServiceAccount");

    let config = config_map["data"]["hubdns.toml"].as_str().expect("hubdns.toml in the ConfigMap");
    let summary = assert_config_checks(config, "ConfigMap");
    let dns_port = config.lines().find_map(|l| l.strip_prefix("listen = [\"")).map(port_of).expect("server.listen");
    let admin_port = config.lines().find_map(|l| l.strip_prefix("listen = \"")).map(port_of).expect("admin.listen");
    assert!(summary.contains("state file    /var/lib/hubdns/state.json"), "{summary}");

    let spec = &deployment["spec"];
    assert!(spec["replicas"].as_u64() >= Some(2), "2+ replicas");
    let labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(&spec["selector"]["matchLabels"], labels);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels, "PDB selects the pods");
    assert_eq!(&service["spec"]["selector"], labels, "Service selects the pods");
    let pod = &spec["template"]["spec"];
    let zones = pod["topologySpreadConstraints"].as_array().expect("spread");
    assert!(zones.iter().any(|c| c["topologyKey"] == "topology.kubernetes.io/zone" && c["whenUnsatisfiable"] == "DoNotSchedule"));
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert!(account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].as_str().is_some_and(|a| a.starts_with("arn:aws:iam::")));
    let container = &pod["containers"][0];
    let ports = container["ports"].as_array().expect("ports");
    let named = |name: &str| ports.iter().find(|p| p["name"] == name).and_then(|p| p["containerPort"].as_u64());
    assert_eq!((named("dns-udp"), named("dns-tcp"), named("admin")), (Some(dns_port), Some(dns_port), Some(admin_port)));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let mounts: Vec<&str> = container["volumeMounts"].as_array().expect("mounts").iter().filter_map(|m| m["mountPath"].as_str()).collect();
    assert!(mounts.contains(&"/etc/hubdns") && mounts.contains(&"/var/lib/hubdns"), "{mounts:?}");
    let service_ports = service["spec"]["ports"].as_array().expect("service ports");
    let protocols: BTreeSet<&str> = service_ports.iter().filter(|p| p["port"] == 53).filter_map(|p| p["protocol"].as_str()).collect();
    assert_eq!(protocols, BTreeSet::from(["TCP", "UDP"]), "53 over UDP and TCP");
    let hub_ips = service["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-private-ipv4-addresses"].as_str();
    assert_eq!(hub_ips, Some("10.0.1.53, 10.0.2.53"), "the addresses the forwarder snippets name");
}

/// Runs cfn-lint on `file`; panics with its findings unless it passes.
fn cfn_lint(file: &str) {
    let out = Command::new("cfn-lint")
        .arg(repo().join(file))
        .output()
        .unwrap_or_else(|e| panic!("cannot run cfn-lint ({e}): pip install cfn-lint (scripts/test does)"));
    assert!(out.status.success(), "cfn-lint {file}:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// The IAM actions granted by deploy/iam-policy.json.
fn policy_actions() -> BTreeSet<String> {
    let policy: Value = serde_json::from_str(&read("deploy/iam-policy.json")).expect("policy JSON");
    policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_cloudformation_templates_lint_and_carry_the_policy_and_a_valid_config() {
    cfn_lint("deploy/cloudformation/hubdns.yaml");
    cfn_lint("deploy/forwarders/route53-resolver-rules.yaml");
    let template = read("deploy/cloudformation/hubdns.yaml");

    // Its inline policy grants exactly the shipped policy's EC2 and Route 53 actions.
    let granted: BTreeSet<String> = template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter(|a| a.starts_with("ec2:") || a.starts_with("route53:"))
        .map(str::to_owned)
        .collect();
    assert_eq!(granted, policy_actions());

    // The config the user data writes, with CloudFormation's substitutions made.
    let config = user_data_config(&cloudformation_user_data(), "eu-west-1");
    let summary = assert_config_checks(&config, "CloudFormation user data");
    assert!(summary.contains("route53 region eu-west-1, zones of vpcs vpc-0a1b2c3d4e5f60718"), "{summary}");
    for ip in ["Default: 10.0.1.53", "Default: 10.0.2.53"] {
        assert!(template.contains(ip), "the instances default to the addresses the forwarder snippets name ({ip})");
    }
}

/// The user data script of the CloudFormation template, dedented, with its substitutions
/// renamed to the Terraform template's.
fn cloudformation_user_data() -> String {
    let template = read("deploy/cloudformation/hubdns.yaml");
    let start = template.find("!Sub |\n").expect("user data") + "!Sub |\n".len();
    let body = &template[start..];
    let indent = body.len() - body.trim_start().len();
    body.lines()
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or("").to_owned() + "\n")
        .collect::<String>()
        .trim_end()
        .replace("${ArtifactS3Prefix}", "${artifact_s3_prefix}")
        .replace("${AWS::Region}", "${region}")
        .replace("${VpcId}", "${vpc_id}")
}

/// The config a user data script (with Terraform's placeholders) writes, for `region`.
fn user_data_config(script: &str, region: &str) -> String {
    let start = script.find("<<'CONFIG'\n").expect("config heredoc") + "<<'CONFIG'\n".len();
    let end = start + script[start..].find("\nCONFIG\n").expect("heredoc end");
    script[start..end].replace("${region}", region).replace("${vpc_id}", "vpc-0a1b2c3d4e5f60718")
}

#[test]
fn the_terraform_module_documents_its_variables_and_matches_cloudformation() {
    let dir = repo().join("deploy/terraform");
    let text: String = ["versions.tf", "variables.tf", "main.tf", "outputs.tf"].iter().map(|f| read(&format!("deploy/terraform/{f}"))).collect();
    // Every variable and output block says what it is (and variables their type).
    for (kind, needs) in [("variable", &["description", "type"][..]), ("output", &["description"][..])] {
        let blocks: Vec<&str> = text.split(&format!("\n{kind} \"")).skip(1).collect();
        assert!(!blocks.is_empty(), "no {kind} blocks");
        for block in blocks {
            let name = block.split('"').next().unwrap_or_default();
            let body = block.split("\n}\n").next().unwrap_or_default();
            for key in needs {
                assert!(body.contains(&format!("\n  {key} ")), "{kind} {name} has no {key}");
            }
        }
    }
    // One policy file for every deploy path.
    assert!(text.contains("file(\"${path.module}/../iam-policy.json\")"), "the role uses deploy/iam-policy.json");
    assert!(text.contains("length(var.instances) >= 2"), "two or more instances");

    // The instances run the same script as CloudFormation's, and its config checks.
    let script = std::fs::read_to_string(dir.join("user_data.sh.tftpl")).expect("user data template");
    assert_eq!(script.trim_end(), cloudformation_user_data(), "Terraform and CloudFormation install hubdns alike");
    let config = user_data_config(&script, "ap-southeast-2");
    let summary = assert_config_checks(&config, "Terraform user data");
    assert!(summary.contains("vpc_endpoints region ap-southeast-2"), "{summary}");
}

/// Runs `promtool` with `args` and `stdin`; its exit status and output.
fn promtool(args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool ({e}): install Debian's prometheus package (scripts/test does)"));
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("promtool runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

// The dashboard's queries must name metrics hubdns exports, and parse as PromQL; the export
// itself must pass Prometheus's own linter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_dashboard_queries_parse_and_use_only_exported_metrics() {
    let (t, _replay, admin) = crate::operate::demo_server("").await;
    // Something on every path, so every family has samples.
    t.udp("secretsmanager.us-east-1.amazonaws.com", hickory_proto::rr::RecordType::A).await;
    let (status, metrics) = tokio::task::spawn_blocking(move || hubdns::admin::probe(admin, "/metrics", std::time::Duration::from_secs(5)))
        .await
        .expect("join")
        .expect("GET /metrics");
    assert_eq!(status, 200);
    t.server.stop().await;
    let (ok, lint) = promtool(&["check", "metrics"], &metrics);
    assert!(ok, "promtool check metrics:\n{lint}");

    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/hubdns.json")).expect("dashboard JSON");
    assert_eq!(dashboard["uid"], "hubdns");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    let mut cells = BTreeSet::new();
    for panel in panels {
        let grid = &panel["gridPos"];
        let (x, y, w, h) = ["x", "y", "w", "h"].map(|k| grid[k].as_u64().expect("gridPos")).into();
        assert!(x + w <= 24, "{} is wider than the dashboard", panel["title"]);
        for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
            assert!(cells.insert(cell), "{} overlaps another panel at {cell:?}", panel["title"]);
        }
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        let targets = targets.unwrap_or_else(|| panic!("{} has no query", panel["title"]));
        exprs.extend(targets.iter().map(|t| t["expr"].as_str().expect("expr").to_owned()));
    }
    let exported: BTreeSet<&str> = metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    for expr in &exprs {
        let names = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("hubdns_"));
        for name in names {
            let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).filter(|f| exported.contains(f)).unwrap_or(name);
            assert!(exported.contains(family), "the dashboard queries {name}, which hubdns does not export: {expr}");
        }
    }
    // As recording rules, the queries go through Prometheus's own PromQL parser.
    let rules: String = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| format!("      - record: dashboard:query{i}\n        expr: '{}'\n", e.replace("$__rate_interval", "5m").replace("$instance", ".*")))
        .collect();
    let file = tempdir().join("dashboard-rules.yml");
    std::fs::write(&file, format!("groups:\n  - name: dashboard\n    rules:\n{rules}")).expect("write rules");
    let (ok, said) = promtool(&["check", "rules", &file.display().to_string()], "");
    assert!(ok, "dashboard queries do not parse:\n{said}");
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
}
