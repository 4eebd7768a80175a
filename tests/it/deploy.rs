//! The deploy kit (deploy/) checked against the binary it deploys:
//! - the systemd unit passes `systemd-analyze verify`, is hardened as promised, and its
//!   ExecStartPre accepts the shipped config;
//! - the Dockerfile's cargo build command is run here exactly as written, and the image's
//!   health check is the probe of the config's admin listener;
//! - the Kubernetes manifests agree with each other and their config passes `hubdns check`;
//! - the CloudFormation templates pass cfn-lint, their IAM policies (the hub's and the member
//!   accounts' read role) are deploy/iam-policy.json, and the config their user data writes,
//!   with its `[events]` queue, passes `hubdns check`;
//! - every EventBridge rule of the kit, CloudFormation and Terraform, matches exactly the calls
//!   hubdns acts on (`hubdns::events::EC2_CALLS`, `ROUTE53_CALLS`), and each instance reads a
//!   queue of its own that the hub's rule fills (an SQS message reaches one consumer);
//! - the Terraform modules document their variables, the main one writes CloudFormation's user
//!   data, and the member role uses deploy/iam-policy.json;
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

/// A CloudFormation template as CloudFormation reads it, in JSON: short-form tags spelled out
/// (`!Ref X` → `{"Ref": "X"}`, `!GetAtt Q.Arn` → `{"Fn::GetAtt": "Q.Arn"}`, `!Sub …` →
/// `{"Fn::Sub": …}`).
fn cloudformation(file: &str) -> Value {
    use serde_yaml_ng::Value as Yaml;
    fn json(value: Yaml) -> Value {
        match value {
            Yaml::Null => Value::Null,
            Yaml::Bool(b) => Value::Bool(b),
            Yaml::Number(n) => serde_json::to_value(n).expect("number"),
            Yaml::String(s) => Value::String(s),
            Yaml::Sequence(items) => items.into_iter().map(json).collect(),
            Yaml::Mapping(map) => map
                .into_iter()
                .map(|(k, v)| (k.as_str().map(str::to_owned).unwrap_or_else(|| format!("{k:?}")), json(v)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
            Yaml::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                let name = tag.trim_start_matches('!');
                let key = if matches!(name, "Ref" | "Condition") { name.to_owned() } else { format!("Fn::{name}") };
                serde_json::json!({ key: json(tagged.value) })
            }
        }
    }
    json(serde_yaml_ng::from_str(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}")))
}

/// The resources of `template` of CloudFormation type `kind`, by logical id.
fn resources<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    let all = template["Resources"].as_object().expect("Resources");
    all.iter().filter(|(_, r)| r["Type"] == kind).map(|(id, r)| (id.as_str(), r)).collect()
}

/// The IAM actions an inline policy of a CloudFormation role grants.
fn role_policy_actions(role: &Value, policy: &str) -> BTreeSet<String> {
    let policies = role["Properties"]["Policies"].as_array().expect("Policies");
    let document = &policies.iter().find(|p| p["PolicyName"] == policy).unwrap_or_else(|| panic!("no policy {policy}"))["PolicyDocument"];
    let statements = document["Statement"].as_array().expect("statements");
    let action = |s: &Value| match &s["Action"] {
        Value::String(a) => vec![a.clone()],
        other => other.as_array().expect("actions").iter().map(|a| a.as_str().expect("action").to_owned()).collect(),
    };
    statements.iter().flat_map(action).collect()
}

#[test]
fn the_cloudformation_templates_lint_and_carry_the_policy_and_a_valid_config() {
    cfn_lint("deploy/cloudformation/hubdns.yaml");
    cfn_lint("deploy/cloudformation/hubdns-events-forwarder.yaml");
    cfn_lint("deploy/cloudformation/hubdns-member-role.yaml");
    cfn_lint("deploy/forwarders/route53-resolver-rules.yaml");
    let template = read("deploy/cloudformation/hubdns.yaml");

    // Its inline policy grants exactly the shipped policy's EC2, VPC Lattice and Route 53 actions.
    let granted: BTreeSet<String> = template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter(|a| a.starts_with("ec2:") || a.starts_with("route53:") || a.starts_with("vpc-lattice:"))
        .map(str::to_owned)
        .collect();
    assert_eq!(granted, policy_actions());
    let hub = cloudformation("deploy/cloudformation/hubdns.yaml");
    let (_, hub_role) = resources(&hub, "AWS::IAM::Role")[0];
    assert_eq!(role_policy_actions(hub_role, "hubdns-read"), policy_actions());

    // The member accounts' read role: the same actions, trusting the hub's role, named as the
    // hub's config and IAM expect by default.
    let member = cloudformation("deploy/cloudformation/hubdns-member-role.yaml");
    let roles = resources(&member, "AWS::IAM::Role");
    assert_eq!(roles.len(), 1, "one role");
    let role = roles[0].1;
    assert_eq!(role_policy_actions(role, "hubdns-read"), policy_actions(), "the member role's actions are deploy/iam-policy.json's");
    assert_eq!(role["Properties"]["RoleName"], serde_json::json!({ "Ref": "RoleName" }));
    assert_eq!(member["Parameters"]["RoleName"]["Default"], "hubdns-read");
    let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(trust["Principal"]["AWS"], serde_json::json!({ "Ref": "HubRoleArn" }), "trusts the hub's role");

    // The config the user data writes, with CloudFormation's substitutions made.
    let config = user_data_config(&cloudformation_user_data(), "eu-west-1");
    assert!(config.contains("\n[events]\nqueue_url = \"https://sqs.eu-west-1.amazonaws.com/"), "{config}");
    let summary = assert_config_checks(&config, "CloudFormation user data");
    assert!(summary.contains("route53 region eu-west-1, zones of vpcs vpc-0a1b2c3d4e5f60718"), "{summary}");
    for ip in ["Default: 10.0.1.53", "Default: 10.0.2.53"] {
        assert!(template.contains(ip), "the instances default to the addresses the forwarder snippets name ({ip})");
    }
}

/// Each instance of the CloudFormation template: its user data script (`Fn::Sub` with the
/// instance's `QueueUrl`) and the queue that names, by logical id.
fn cloudformation_instances() -> Vec<(String, String, String)> {
    let template = cloudformation("deploy/cloudformation/hubdns.yaml");
    let instances = resources(&template, "AWS::EC2::Instance");
    instances
        .iter()
        .map(|(id, instance)| {
            let sub = instance["Properties"]["UserData"]["Fn::Base64"]["Fn::Sub"].as_array().unwrap_or_else(|| panic!("{id}: user data"));
            let script = sub[0].as_str().expect("script").to_owned();
            let queue = sub[1]["QueueUrl"]["Fn::GetAtt"].as_str().and_then(|q| q.strip_suffix(".QueueUrl")).expect("QueueUrl");
            (id.to_string(), script, queue.to_owned())
        })
        .collect()
}

/// The user data script of the CloudFormation template's instances (the same for each but its
/// queue), with its substitutions renamed to the Terraform template's.
fn cloudformation_user_data() -> String {
    let instances = cloudformation_instances();
    assert!(instances.len() >= 2, "two instances");
    let script = &instances[0].1;
    for (id, other, _) in &instances {
        assert_eq!(other, script, "{id} installs hubdns as {} does", instances[0].0);
    }
    script
        .trim_end()
        .replace("${QueueUrl}", "${queue_url}")
        .replace("${ArtifactS3Prefix}", "${artifact_s3_prefix}")
        .replace("${AWS::Region}", "${region}")
        .replace("${VpcId}", "${vpc_id}")
}

/// The config a user data script (with Terraform's placeholders) writes, for `region`.
fn user_data_config(script: &str, region: &str) -> String {
    let start = script.find("<<'CONFIG'\n").expect("config heredoc") + "<<'CONFIG'\n".len();
    let end = start + script[start..].find("\nCONFIG\n").expect("heredoc end");
    script[start..end]
        .replace("${queue_url}", "https://sqs.${region}.amazonaws.com/111122223333/hubdns-events-a")
        .replace("${region}", region)
        .replace("${vpc_id}", "vpc-0a1b2c3d4e5f60718")
}

/// The calls an event pattern must name: those hubdns acts on, EC2's then Route 53's.
fn event_calls() -> Vec<String> {
    hubdns::events::EC2_CALLS.iter().chain(hubdns::events::ROUTE53_CALLS.iter()).map(|c| c.to_string()).collect()
}

/// Every `key = [ "a", "b", … ]` list in HCL `text`, as its strings (comments left out).
fn hcl_lists(text: &str, key: &str) -> Vec<Vec<String>> {
    let mut lists = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(key) {
        rest = &rest[at + key.len()..];
        let Some(list) = rest.trim_start().strip_prefix('=').and_then(|r| r.trim_start().strip_prefix('[')) else { continue };
        let body = &list[..list.find(']').expect("list end")];
        let code: String = body.lines().map(|l| l.split('#').next().unwrap_or_default()).collect();
        lists.push(code.split('"').skip(1).step_by(2).map(str::to_owned).collect());
    }
    lists
}

/// Files under `dir` (relative to the repository) whose name ends with `suffix`, recursively, sorted.
fn files_under(dir: &str, suffix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(repo().join(&dir)).unwrap_or_else(|e| panic!("{dir}: {e}")) {
            let entry = entry.expect("entry");
            let path = format!("{dir}/{}", entry.file_name().to_string_lossy());
            if entry.file_type().expect("type").is_dir() {
                dirs.push(path);
            } else if path.ends_with(suffix) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn the_event_patterns_name_exactly_the_calls_hubdns_acts_on() {
    let calls = event_calls();
    // CloudFormation: every rule of every template, parsed.
    let mut rules = Vec::new();
    for file in files_under("deploy/cloudformation", ".yaml") {
        let template = cloudformation(&file);
        for (id, rule) in resources(&template, "AWS::Events::Rule") {
            let pattern = &rule["Properties"]["EventPattern"];
            assert_eq!(pattern["source"], serde_json::json!(["aws.ec2", "aws.route53"]), "{file} {id}");
            assert_eq!(pattern["detail-type"], serde_json::json!(["AWS API Call via CloudTrail"]), "{file} {id}");
            assert_eq!(pattern["detail"]["eventSource"], serde_json::json!(["ec2.amazonaws.com", "route53.amazonaws.com"]), "{file} {id}");
            assert_eq!(pattern["detail"]["eventName"], serde_json::json!(calls), "{file} {id}: the calls of hubdns::events");
            rules.push(format!("{file} {id}"));
        }
    }
    assert_eq!(
        rules,
        ["deploy/cloudformation/hubdns-events-forwarder.yaml ForwardRule", "deploy/cloudformation/hubdns.yaml EventsRule"],
        "the hub's rule and the forwarder's"
    );

    // Terraform: one pattern file, which both rules read, equal to the CloudFormation ones.
    let pattern: serde_json::Value = serde_json::from_str(&read("deploy/terraform/event-pattern.json")).expect("pattern is JSON");
    assert_eq!(pattern["detail"]["eventName"], serde_json::json!(calls), "event-pattern.json: the calls of hubdns::events");
    assert_eq!(pattern["source"], serde_json::json!(["aws.ec2", "aws.route53"]));
    assert_eq!(pattern["detail-type"], serde_json::json!(["AWS API Call via CloudTrail"]));
    assert_eq!(pattern["detail"]["eventSource"], serde_json::json!(["ec2.amazonaws.com", "route53.amazonaws.com"]));
    let mut with_patterns = Vec::new();
    for file in files_under("deploy/terraform", ".tf") {
        let text = read(&file);
        assert!(hcl_lists(&text, "eventName").is_empty(), "{file}: the pattern belongs in event-pattern.json");
        if text.contains("event_pattern") {
            assert!(text.contains("event-pattern.json\")"), "{file}: reads event-pattern.json");
            with_patterns.push(file);
        }
    }
    assert_eq!(with_patterns, ["deploy/terraform/events.tf", "deploy/terraform/modules/events-forwarder/main.tf"]);
}

#[test]
fn each_instance_reads_an_events_queue_of_its_own() {
    // CloudFormation: one queue per instance, each a target of the hub's rule, sending allowed
    // to that rule only, readable by the instances' role.
    let template = cloudformation("deploy/cloudformation/hubdns.yaml");
    let queues: BTreeSet<&str> = resources(&template, "AWS::SQS::Queue").into_iter().map(|(id, _)| id).collect();
    for (id, queue) in resources(&template, "AWS::SQS::Queue") {
        assert_eq!(queue["Properties"]["SqsManagedSseEnabled"], true, "{id}: SSE");
    }
    let consumed: BTreeSet<String> = cloudformation_instances().into_iter().map(|(_, _, queue)| queue).collect();
    assert_eq!(consumed.iter().map(String::as_str).collect::<BTreeSet<_>>(), queues, "each instance its own queue");
    assert_eq!(consumed.len(), cloudformation_instances().len(), "no two instances share a queue");
    let (rule, events_rule) = resources(&template, "AWS::Events::Rule")[0];
    let targets: BTreeSet<&str> = events_rule["Properties"]["Targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter_map(|t| t["Arn"]["Fn::GetAtt"].as_str()?.strip_suffix(".Arn"))
        .collect();
    assert_eq!(targets, queues, "the rule fills every queue");
    let mut guarded = BTreeSet::new();
    for (id, policy) in resources(&template, "AWS::SQS::QueuePolicy") {
        let statement = &policy["Properties"]["PolicyDocument"]["Statement"][0];
        assert_eq!(statement["Principal"]["Service"], "events.amazonaws.com", "{id}");
        assert_eq!(statement["Action"], "sqs:SendMessage", "{id}");
        assert_eq!(statement["Condition"]["ArnEquals"]["aws:SourceArn"], serde_json::json!({ "Fn::GetAtt": format!("{rule}.Arn") }), "{id}");
        let queue = statement["Resource"]["Fn::GetAtt"].as_str().and_then(|r| r.strip_suffix(".Arn")).expect("queue");
        assert_eq!(policy["Properties"]["Queues"], serde_json::json!([{ "Ref": queue }]), "{id}");
        guarded.insert(queue.to_owned());
    }
    assert_eq!(guarded, consumed, "every queue has its policy");
    let (_, role) = resources(&template, "AWS::IAM::Role")[0];
    let granted = role_policy_actions(role, "hubdns-events");
    for action in ["sqs:ReceiveMessage", "sqs:DeleteMessage"] {
        assert!(granted.contains(action), "the role lacks {action}");
    }

    // Terraform: the same, per entry of var.instances.
    let words = |file: &str| read(file).split_whitespace().collect::<Vec<_>>().join(" ");
    let events = words("deploy/terraform/events.tf");
    for expected in [
        r#"resource "aws_sqs_queue" "events" { for_each = var.instances"#,
        "sqs_managed_sse_enabled = true",
        r#"resource "aws_cloudwatch_event_target" "events" { for_each = aws_sqs_queue.events rule = aws_cloudwatch_event_rule.changes.name"#,
        r#"resource "aws_sqs_queue_policy" "events" { for_each = aws_sqs_queue.events"#,
        r#"Condition = { ArnEquals = { "aws:SourceArn" = aws_cloudwatch_event_rule.changes.arn } }"#,
        r#"Action = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"] Resource = [for q in aws_sqs_queue.events : q.arn]"#,
    ] {
        assert!(events.contains(expected), "events.tf lacks {expected}");
    }
    let main = words("deploy/terraform/main.tf");
    assert!(main.contains(r#"resource "aws_instance" "hubdns" { for_each = var.instances"#), "{main}");
    assert!(main.contains("queue_url = aws_sqs_queue.events[each.key].url"), "each instance's user data names its own queue");
}

#[test]
fn the_terraform_module_documents_its_variables_and_matches_cloudformation() {
    let dir = repo().join("deploy/terraform");
    let module = |dir: &str| -> String {
        let files = ["versions.tf", "variables.tf", "main.tf", "events.tf", "outputs.tf"];
        files.iter().filter(|f| repo().join(dir).join(f).exists()).map(|f| "\n".to_owned() + &read(&format!("{dir}/{f}"))).collect()
    };
    let text = module("deploy/terraform");
    // Every variable and output block of every module says what it is (and variables their type).
    let modules = ["deploy/terraform", "deploy/terraform/modules/events-forwarder", "deploy/terraform/modules/member-role"];
    for dir in modules {
        let text = module(dir);
        assert!(text.contains("required_version"), "{dir} has versions.tf");
        for (kind, needs) in [("variable", &["description", "type"][..]), ("output", &["description"][..])] {
            let blocks: Vec<&str> = text.split(&format!("\n{kind} \"")).skip(1).collect();
            assert!(!blocks.is_empty(), "{dir}: no {kind} blocks");
            for block in blocks {
                let name = block.split('"').next().unwrap_or_default();
                let body = block.split("\n}\n").next().unwrap_or_default();
                for key in needs {
                    assert!(body.contains(&format!("\n  {key} ")), "{dir}: {kind} {name} has no {key}");
                }
            }
        }
    }
    // The member accounts' role carries the one policy file too.
    let member = module("deploy/terraform/modules/member-role");
    let policy = "deploy/terraform/modules/member-role/../../../iam-policy.json";
    assert!(member.contains("file(\"${path.module}/../../../iam-policy.json\")") && repo().join(policy).exists(), "{member}");
    assert!(member.contains("default     = \"hubdns-read\""), "the role is named hubdns-read by default, as the README says");
    // One policy file for every deploy path.
    assert!(text.contains("file(\"${path.module}/../iam-policy.json\")"), "the role uses deploy/iam-policy.json");
    assert!(text.contains("length(var.instances) >= 2"), "two or more instances");

    // The instances run the same script as CloudFormation's, and its config checks.
    let script = std::fs::read_to_string(dir.join("user_data.sh.tftpl")).expect("user data template");
    assert_eq!(script.trim_end(), cloudformation_user_data(), "Terraform and CloudFormation install hubdns alike");
    let config = user_data_config(&script, "ap-southeast-2");
    assert!(config.contains("\n[events]\nqueue_url = \"https://sqs.ap-southeast-2.amazonaws.com/"), "{config}");
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
