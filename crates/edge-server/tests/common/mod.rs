//! Helpers shared by the server's API tests: a real server on a loopback
//! port with its own data dir, and fake agents speaking the real protocol.

#![allow(dead_code)]

use edge_api::{Client, RegisterRequest};
use edge_server::{ServerConfig, ServerHandle};
use edge_spec::{DriverInfo, Job, Node, NodeResources, NodeStatus};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub async fn start(dir: &Path) -> ServerHandle {
    start_with(dir, |_| {}).await
}

pub async fn start_with(dir: &Path, f: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    let mut cfg = ServerConfig::new(dir.to_path_buf(), "127.0.0.1:0".parse().unwrap());
    cfg.heartbeat_ttl = Duration::from_secs(30);
    f(&mut cfg);
    edge_server::start(cfg).await.expect("server starts")
}

pub fn client(h: &ServerHandle) -> Client {
    Client::new(&format!("http://{}", h.addr), None).unwrap()
}

pub fn agent_client(h: &ServerHandle) -> Client {
    Client::new(&format!("http://{}", h.addr), Some(h.token.clone())).unwrap()
}

pub fn node(id: &str, cpu: u32, memory: u32) -> Node {
    let mut drivers = BTreeMap::new();
    drivers.insert(
        "exec".to_string(),
        DriverInfo {
            detected: true,
            healthy: true,
            description: "test".to_string(),
            attributes: BTreeMap::new(),
        },
    );
    let mut attributes = BTreeMap::new();
    attributes.insert("kernel.name".to_string(), "linux".to_string());
    Node {
        id: id.to_string(),
        name: format!("node-{id}"),
        datacenter: "dc1".to_string(),
        address: "127.0.0.1".to_string(),
        status: NodeStatus::Initializing,
        status_description: String::new(),
        eligible: true,
        drain: false,
        revoked: false,
        attributes,
        meta: BTreeMap::new(),
        resources: NodeResources {
            cpu,
            memory,
            cores: 2,
        },
        reserved: NodeResources::default(),
        drivers,
        last_heartbeat: 0,
        agent_version: "test".to_string(),
        create_index: 0,
        modify_index: 0,
    }
}

pub async fn register(h: &ServerHandle, n: Node) {
    agent_client(h)
        .agent_register(&RegisterRequest {
            node: n,
            http_addr: None,
        })
        .await
        .expect("register");
}

pub fn job(id: &str, count: u32) -> Job {
    let src = format!(
        r#"
job "{id}" {{
  group "web" {{
    count = {count}
    network {{
      port "http" {{}}
    }}
    task "server" {{
      driver = "exec"
      config {{
        command = "/bin/sleep"
        args    = ["1000"]
      }}
      resources {{
        cpu    = 100
        memory = 64
      }}
    }}
  }}
}}
"#
    );
    let opts = edge_spec::ParseOptions {
        filename: "test.hcl".to_string(),
        ..Default::default()
    };
    edge_spec::parse_hcl(&src, &opts)
        .expect("test job parses")
        .job
}

/// Polls `f` until it returns Some, for at most `secs` seconds.
pub async fn eventually<T>(secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
