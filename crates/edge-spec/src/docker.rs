//! Nomad's `docker` driver, run by edge's containerd driver. The two take
//! the same image, command, args, entrypoint, volumes and capabilities; what
//! differs is networking: Docker puts a container on its own bridge and maps
//! the ports listed in `config.ports`, which in edge is a group in bridge
//! mode. So a job written for Docker keeps its meaning, and says so in a
//! warning, instead of being refused for naming a driver edge does not have.

use crate::error::Diagnostic;
use crate::job::{Job, NetworkMode, Task};
use crate::validate::{job_base, named};
use serde_json::Value;

/// Docker config keys with no meaning under containerd, and why.
const IGNORED: &[(&str, &str)] = &[
    (
        "auth_soft_fail",
        "images are pulled without registry credentials, so there is no auth to fail",
    ),
    (
        "force_pull",
        "the containerd driver pulls an image when the node does not have it",
    ),
];

/// Rewrites `driver = "docker"` tasks as containerd tasks, moves Docker's
/// port mapping onto the group's network, and returns one warning per
/// change, at the field it concerns.
pub(crate) fn adopt(job: &mut Job) -> Vec<Diagnostic> {
    let base = job_base(job);
    let mut warnings = Vec::new();
    for (gi, g) in job.groups.iter_mut().enumerate() {
        let group_at = named(&base, "group", gi, &g.name);
        let docker = |t: &Task| t.driver == "docker";
        if !g.tasks.iter().any(docker) {
            continue;
        }
        let own_bridge = g.tasks.iter().all(|t| {
            docker(t) && t.config.get("network_mode").and_then(Value::as_str) != Some("host")
        });
        if own_bridge && g.network.mode == NetworkMode::Host && !g.network.ports.is_empty() {
            g.network.mode = NetworkMode::Bridge;
            warnings.push(Diagnostic::new(
                format!("{group_at}.network"),
                "the group runs in bridge mode: Docker gives each container its own network and maps its ports, and so does edge's bridge",
            ));
        }
        for (ti, t) in g.tasks.iter_mut().enumerate() {
            if t.driver != "docker" {
                continue;
            }
            let at = named(&group_at, "task", ti, &t.name);
            t.driver = "containerd".to_string();
            warnings.push(Diagnostic::new(
                format!("{at}.driver"),
                "`docker` tasks run under edge's containerd driver, with the same image, command, args and volumes",
            ));
            if t.config.remove("ports").is_some() && g.network.mode == NetworkMode::Host {
                warnings.push(Diagnostic::new(
                    format!("{at}.config.ports"),
                    "the container shares the node's network (the group has a host-mode task besides it), so it listens on the ports' host numbers",
                ));
            }
            for (key, why) in IGNORED {
                if t.config.remove(*key).is_some() {
                    warnings.push(Diagnostic::new(
                        format!("{at}.config.{key}"),
                        format!("`{key}` is ignored: {why}"),
                    ));
                }
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParseOptions;

    const REDIS: &str = r#"job "example" {
  group "cache" {
    network {
      port "db" {
        to = 6379
      }
    }
    task "redis" {
      driver = "docker"
      config {
        image          = "redis:7"
        ports          = ["db"]
        auth_soft_fail = true
      }
    }
  }
}
"#;

    /// `nomad job init`'s example: a Docker task with a mapped port.
    #[test]
    fn a_docker_task_runs_under_containerd_in_a_bridge_group() {
        let parsed = crate::parse_hcl(REDIS, &ParseOptions::new("example.nomad")).unwrap();
        let g = &parsed.job.groups[0];
        assert_eq!(g.network.mode, NetworkMode::Bridge);
        let t = &g.tasks[0];
        assert_eq!(t.driver, "containerd");
        assert_eq!(
            serde_json::Value::Object(t.config.clone()),
            serde_json::json!({"image": "redis:7"})
        );
        let w: Vec<String> = parsed.warnings.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            w,
            [
                "example.nomad:3:5: job.example.group.cache.network: the group runs in bridge mode: Docker gives each container its own network and maps its ports, and so does edge's bridge",
                "example.nomad:9:16: job.example.group.cache.task.redis.driver: `docker` tasks run under edge's containerd driver, with the same image, command, args and volumes",
                "example.nomad:13:9: job.example.group.cache.task.redis.config.auth_soft_fail: `auth_soft_fail` is ignored: images are pulled without registry credentials, so there is no auth to fail",
            ]
        );
    }

    /// Docker's own `network_mode = "host"` keeps the group on the host.
    #[test]
    fn host_network_mode_keeps_the_group_on_the_host() {
        let src = REDIS
            .replace("        to = 6379\n", "")
            .replace("auth_soft_fail = true", "network_mode = \"host\"");
        let parsed = crate::parse_hcl(&src, &ParseOptions::new("example.nomad")).unwrap();
        assert_eq!(parsed.job.groups[0].network.mode, NetworkMode::Host);
        assert_eq!(parsed.job.groups[0].tasks[0].driver, "containerd");
    }

    /// A job without Docker tasks is left as it is, with no warning.
    #[test]
    fn other_drivers_are_untouched() {
        let src = REDIS.replace("\"docker\"", "\"containerd\"");
        let err = crate::parse_hcl(&src, &ParseOptions::new("example.nomad"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("only `mode = \"bridge\"` gives it"), "{err}");
    }
}
