//! The command line: every subcommand, flag and help text.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "edge",
    version,
    about = "A lightweight orchestrator for small hosts",
    long_about = "edge runs jobs (services, batch work, one-per-node system jobs) across a few \
to a few thousand small machines. One binary is the server (`edge server`), the node agent \
(`edge agent`), both at once (`edge dev`), and the CLI that drives them over the HTTP API.",
    after_help = "Examples:\n  edge dev                               # server + agent in ./.edge\n  edge job run examples/hello.hcl        # submit a job and follow its placement\n  edge job status hello\n  edge alloc logs -f <alloc-id>\n  edge node ls -o json"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Address of the edge server's HTTP API.
    #[arg(long, global = true, env = "EDGE_ADDR", default_value = edge_api::DEFAULT_ADDR)]
    pub address: String,
    /// Token sent with API requests.
    #[arg(long, global = true, env = "EDGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Namespace of the jobs, allocations and services asked about
    /// (`default` when unset; `*` lists every namespace). `-namespace` works
    /// too, as in Nomad.
    #[arg(long, global = true, env = "EDGE_NAMESPACE")]
    pub namespace: Option<String>,
    /// The cluster CA certificate to trust for an https:// address (default:
    /// `ca.pem` of ./.edge/server or /var/lib/edge/server, whichever exists).
    #[arg(long, global = true, env = "EDGE_CACERT")]
    pub ca_cert: Option<PathBuf>,
    /// Output format of listings and reads.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Log filter for server and agent (`info`, `edge_server=debug`...).
    #[arg(
        long,
        global = true,
        env = "EDGE_LOG",
        default_value = "info,hickory_server=warn"
    )]
    pub log_level: String,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control plane: API, store, scheduler.
    #[command(
        after_help = "Example:\n  edge server --data-dir /var/lib/edge/server --bind 0.0.0.0:4646"
    )]
    Server(ServerArgs),
    /// Run the node agent, joining a server.
    #[command(
        after_help = "Example:\n  edge agent --server https://10.0.0.1:4646 --join-token $(cat token) --advertise 10.0.0.7"
    )]
    Agent(AgentArgs),
    /// Run a server and an agent in one process, data in ./.edge.
    #[command(after_help = "Example:\n  edge dev &\n  edge job run examples/hello.hcl")]
    Dev(DevArgs),
    /// Submit, inspect and stop jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Inspect allocations and read their logs.
    #[command(subcommand)]
    Alloc(AllocCommand),
    /// Inspect and drain nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Inspect evaluations.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Follow, promote, pause, resume and fail the rollouts of job versions.
    #[command(subcommand)]
    Deployment(DeploymentCommand),
    /// Cluster operations: the join token.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// ACL policies and tokens: who may call the API.
    #[command(subcommand)]
    Acl(AclCommand),
    /// Create, list and delete namespaces.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// Import, list and remove container images in the local containerd.
    Image(crate::cmd::image::ImageArgs),
    /// Inspect the service catalog.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// The jobs' named networks and the allocations on them.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Local volumes (one per copy of a group) and the nodes' host volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Configs: named, versioned `key=value` sets tasks get as files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Secrets: like configs, sealed at rest and never shown again.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Serve models over the Open Inference Protocol.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Run a Compose application on the cluster (`compose.yaml` as it is).
    #[command(
        after_help = "Examples:\n  edge compose up                        # compose.yaml here: project = directory name\n  edge compose -f compose.yaml -f prod.yaml -p shop up --detach\n  edge compose ps -o json\n  edge compose logs -f frontend\n  edge compose scale backend=3\n  edge compose convert > shop.hcl        # the edge job it becomes\n  edge compose down -v                   # also remove the named volumes"
    )]
    Compose(ComposeArgs),
    /// Simulate many nodes against a server (scale tests).
    #[command(
        after_help = "Example:\n  edge sim --server http://127.0.0.1:4646 --join-token $(cat data/token) --nodes 1000"
    )]
    Sim(SimArgs),
    /// Print the version.
    Version,
    /// Print shell completions.
    #[command(after_help = "Example:\n  edge completions bash > /etc/bash_completion.d/edge")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The exec driver's per-task supervisor (internal).
    #[command(hide = true)]
    Executor {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The containerd shim's log driver for edge's tasks (internal).
    #[command(hide = true)]
    ContainerdLogger {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

impl Command {
    /// Runs until stopped and serves others (or is a task's helper process),
    /// rather than printing an answer for the caller.
    pub fn is_daemon(&self) -> bool {
        matches!(
            self,
            Command::Server(_)
                | Command::Agent(_)
                | Command::Dev(_)
                | Command::Sim(_)
                | Command::Model(ModelCommand::Serve(_))
                | Command::Executor { .. }
                | Command::ContainerdLogger { .. }
        )
    }
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Where the database and the join token live.
    #[arg(long, default_value = "/var/lib/edge/server")]
    pub data_dir: PathBuf,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:4646")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub tuning: ServerTuning,
}

/// Transport security of the API. TLS is on whenever the server binds a
/// non-loopback address; `--tls` turns it on for loopback too.
#[derive(Args, Debug, Clone)]
pub struct TlsArgs {
    /// Serve the API over TLS (and require node certificates) even on a
    /// loopback address.
    #[arg(long)]
    pub tls: bool,
    /// Another name (DNS or IP) for the server certificate, beside this
    /// host's name and addresses; repeatable.
    #[arg(long = "tls-san", value_name = "NAME")]
    pub tls_san: Vec<String>,
    /// How long node certificates are valid; agents renew them at 2/3.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub node_cert_ttl: std::time::Duration,
    /// A certificate (PEM, with its chain) users of the API get instead of
    /// the cluster's, e.g. one for the name they reach the server by;
    /// agents still get the cluster certificate their join token pins.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ServerTuning {
    /// A node missing heartbeats this long is marked down.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub heartbeat_ttl: std::time::Duration,
    /// How nodes are ranked for placements.
    #[arg(long, value_enum, default_value_t = Algorithm::Binpack)]
    pub scheduler_algorithm: Algorithm,
    /// Range of dynamic ports, `MIN-MAX`.
    #[arg(long, default_value = "20000-32000")]
    pub port_range: String,
    /// How often finished allocations, old versions and events are collected.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub gc_interval: std::time::Duration,
    /// Connections the API holds open at once (agents keep about two each);
    /// more wait in the kernel's accept queue.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(16..=1_000_000))]
    pub max_connections: u32,
    /// Require ACL tokens on the user API: `auto` turns them on when the
    /// server binds a non-loopback address.
    #[arg(long, value_enum, default_value_t = AclMode::Auto)]
    pub acl: AclMode,
    /// Where named networks (`network "NAME" {}` in a job) get their
    /// subnets: one per network, one segment across every node with a
    /// member.
    #[arg(long, default_value = "172.27.0.0/16")]
    pub network_pool: edge_spec::Subnet,
    /// The length of each named network's subnet within the pool.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(8..=28))]
    pub network_prefix: u8,
    /// The length of each node's slice of a named network (its members'
    /// addresses on that node): /26 gives 64 nodes 61 addresses each.
    #[arg(long, default_value_t = 26, value_parser = clap::value_parser!(u8).range(9..=29))]
    pub network_node_prefix: u8,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclMode {
    On,
    Off,
    Auto,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum Algorithm {
    Binpack,
    Spread,
}

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// The server's API address.
    #[arg(long, env = "EDGE_SERVER")]
    pub server: String,
    /// The join token (printed by the server; in its data dir as `token`).
    #[arg(long = "join-token", env = "EDGE_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: String,
    #[arg(long, default_value = "/var/lib/edge/agent")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Node name (default: hostname).
    #[arg(long, default_value = "")]
    pub name: String,
    #[arg(long, default_value = "dc1")]
    pub datacenter: String,
    /// The IP address this node advertises: services on it are reached
    /// there, and its DNS server listens there. Not `--address`, which is
    /// the server's API URL for CLI commands.
    #[arg(long, env = "EDGE_ADVERTISE", default_value = "127.0.0.1")]
    pub advertise: String,
    /// Node labels for constraints, `key=value`, repeatable.
    #[arg(long = "meta", value_parser = parse_kv)]
    pub meta: Vec<(String, String)>,
    /// A directory groups may mount by name, `NAME=PATH` or
    /// `NAME=PATH:ro`, repeatable: `volume "data" { type = "host"
    /// source = "NAME" }` places the group only on nodes that have it.
    #[arg(long = "host-volume", value_parser = parse_host_volume)]
    pub host_volumes: Vec<(String, edge_agent::HostVolume)>,
    /// A directory task artifacts may be fetched from with a `file://`
    /// source (or an absolute path), repeatable; without one such
    /// artifacts are refused, since the agent could read any file of the
    /// node for a job.
    #[arg(long = "artifact-dir")]
    pub artifact_dirs: Vec<std::path::PathBuf>,
    /// Address of the agent's own API (logs), reached by the server.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub http_bind: SocketAddr,
    /// CPU (MHz) held back from scheduling for the host.
    #[arg(long, default_value_t = 0)]
    pub reserved_cpu: u32,
    /// Memory (MB) held back from scheduling for the host.
    #[arg(long, default_value_t = 0)]
    pub reserved_memory: u32,
    #[command(flatten)]
    pub containerd: crate::cmd::image::ContainerdArgs,
    #[command(flatten)]
    pub mesh: crate::cmd::mesh::MeshArgs,
    #[command(flatten)]
    pub autonomy: crate::cmd::daemon::AutonomyArgs,
    #[command(flatten)]
    pub privilege: crate::cmd::daemon::PrivilegeArgs,
    #[command(flatten)]
    pub network: crate::cmd::daemon::NetworkArgs,
}

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// The server's API address.
    #[arg(long, env = "EDGE_SERVER")]
    pub server: String,
    /// The join token.
    #[arg(long = "join-token", env = "EDGE_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: String,
    /// How many fake nodes to run.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// CPU (MHz) of each fake node.
    #[arg(long, default_value_t = 4000)]
    pub cpu: u32,
    /// Memory (MB) of each fake node.
    #[arg(long, default_value_t = 8192)]
    pub memory: u32,
    /// Delay before a new allocation is reported running.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub report_running_after: std::time::Duration,
    /// Node names and ids are PREFIX-<i>.
    #[arg(long, default_value = "sim")]
    pub name_prefix: String,
    #[arg(long, default_value = "dc1")]
    pub datacenter: String,
    /// How often progress is printed to standard error.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub stats_every: std::time::Duration,
}

#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    #[arg(long, default_value = ".edge")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:4646")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub tuning: ServerTuning,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Args, Debug, Clone)]
pub struct JobFileArgs {
    /// Job file (HCL, or JSON ending in .json); `-` reads standard input.
    pub file: PathBuf,
    /// Set a variable, `name=value`, repeatable.
    #[arg(long = "var", value_parser = parse_kv)]
    pub vars: Vec<(String, String)>,
    /// Read variables from an HCL file of `name = value` lines, repeatable.
    #[arg(long = "var-file")]
    pub var_files: Vec<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Submit a job and follow its placement.
    #[command(
        after_help = "Examples:\n  edge job run examples/hello.hcl\n  edge job run --var count=3 web.hcl\n  edge job run --detach batch.hcl"
    )]
    Run {
        #[command(flatten)]
        file: JobFileArgs,
        /// Return after submitting, without following the evaluation and deployment.
        #[arg(short, long)]
        detach: bool,
        /// How long to wait for allocations to start.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// Set a group's count (a new version of the job) and follow it.
    #[command(
        after_help = "Examples:\n  edge job scale web web 5\n  edge job scale --detach web api 0"
    )]
    Scale {
        id: String,
        group: String,
        count: u32,
        /// Return after submitting, without following the deployment.
        #[arg(short, long)]
        detach: bool,
    },
    /// Show what submitting a job would change, without changing anything.
    Plan {
        #[command(flatten)]
        file: JobFileArgs,
    },
    /// Check a job file and report every problem with file:line:column.
    Validate {
        #[command(flatten)]
        file: JobFileArgs,
    },
    /// Write an example job file.
    #[command(
        after_help = "Examples:\n  edge job init\n  edge job init --template model model.hcl"
    )]
    Init {
        /// Where to write it.
        #[arg(default_value = "example.hcl")]
        path: PathBuf,
        /// `job` (a web server) or `model` (an ONNX model server).
        #[arg(long, value_enum, default_value_t = Template::Job)]
        template: Template,
        /// Overwrite an existing file.
        #[arg(short, long)]
        force: bool,
    },
    /// List jobs, or show one job with its allocations.
    Status { id: Option<String> },
    /// Print a job's current spec as JSON.
    Inspect {
        id: String,
        /// A version from `edge job history`.
        #[arg(long)]
        version: Option<u64>,
    },
    /// Stop a job (its spec and history are kept unless --purge).
    Stop {
        id: String,
        #[arg(long)]
        purge: bool,
        #[arg(short, long)]
        detach: bool,
    },
    /// List a job's versions.
    History { id: String },
    /// Make an earlier version current again.
    Revert { id: String, version: u64 },
    /// Run a parameterized job: a child job with this meta and payload.
    #[command(
        after_help = "Examples:\n  edge job dispatch render -meta scene=intro input.json\n  echo hello | edge job dispatch greet -"
    )]
    Dispatch {
        id: String,
        /// A meta key of the job's `parameterized` block, `key=value`, repeatable.
        #[arg(long = "meta", value_parser = parse_kv)]
        meta: Vec<(String, String)>,
        /// The payload (at most 16 KiB): a file, or `-` for standard input.
        payload: Option<PathBuf>,
        /// Return after dispatching, without following the child's placement.
        #[arg(short, long)]
        detach: bool,
    },
    /// Periodic jobs.
    #[command(subcommand)]
    Periodic(PeriodicCommand),
}

#[derive(Subcommand, Debug)]
pub enum PeriodicCommand {
    /// Launch a child of a periodic job now, off its schedule.
    #[command(after_help = "Examples:\n  edge job periodic force backup")]
    Force {
        id: String,
        /// Return after launching, without following the child's placement.
        #[arg(short, long)]
        detach: bool,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    Job,
    Model,
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Serve ONNX models over the Open Inference Protocol (KServe V2 REST, and gRPC with --grpc-port).
    #[command(
        after_help = "Examples:\n  edge model serve --model examples/models/iris.onnx --name iris --port 8500 --grpc-port 8501\n  edge model serve --model iris:1=v1/iris.onnx --model iris:2=v2/iris.onnx --port 8500\n  edge model serve --repository /srv/models --port 8500   # <model>/<version>/model.onnx\n  edge model serve --model vision.onnx --port 8500 --backend onnxruntime --onnxruntime-lib /opt/onnxruntime/lib/libonnxruntime.so\n  curl localhost:8500/v2/models/iris\n  curl -X POST localhost:8500/v2/repository/index"
    )]
    Serve(ServeArgs),
    /// List the backends that can run models here, as `edge model serve`
    /// (and the model driver on this node) would find them.
    #[command(
        after_help = "Examples:\n  edge model backends\n  edge model backends --onnxruntime-lib /opt/onnxruntime/lib/libonnxruntime.so\n  edge model backends -o json\n\nThe model driver runs it to set the node attributes driver.model.backends\n(\"tract,onnxruntime\") and driver.model.onnxruntime.version; jobs with\nbackend = \"onnxruntime\" are placed only on nodes whose list has it."
    )]
    Backends {
        /// ONNX Runtime's library (default: $EDGE_ONNXRUNTIME_LIB, else
        /// libonnxruntime.so in the loader's path).
        #[arg(long, value_name = "PATH")]
        onnxruntime_lib: Option<PathBuf>,
    },
}

#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("source").required(true).multiple(true).args(["model", "repository"])))]
pub struct ServeArgs {
    /// A model version to serve: PATH, NAME=PATH or NAME:VERSION=PATH
    /// (version 1 when not given). Repeat for several models or versions.
    #[arg(long)]
    pub model: Vec<String>,
    /// The name of a lone `--model PATH` in /v2/models/NAME (default: the file's stem).
    #[arg(long)]
    pub name: Option<String>,
    /// A directory laid out like a Triton model repository:
    /// DIR/<model>/<version>/model.onnx.
    #[arg(long)]
    pub repository: Option<PathBuf>,
    #[arg(long)]
    pub port: u16,
    /// Also serve the protocol over gRPC (inference.GRPCInferenceService) on this port.
    #[arg(long)]
    pub grpc_port: Option<u16>,
    #[arg(long, default_value = "0.0.0.0")]
    pub host: std::net::IpAddr,
    /// Most rows stacked into one model run (when the model has a batch dimension).
    #[arg(long, default_value_t = 32)]
    pub max_batch_size: usize,
    /// Longest a request waits for others to join its batch.
    #[arg(long, default_value = "2ms", value_parser = parse_duration)]
    pub max_delay: std::time::Duration,
    /// Model runs at once per model version (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// What runs the models: tract (built in) or onnxruntime (ONNX
    /// Runtime's shared library, 1.17 or newer, opened at start).
    #[arg(long, value_enum, default_value_t = ModelBackend::Tract)]
    pub backend: ModelBackend,
    /// ONNX Runtime's library for --backend onnxruntime
    /// (default: $EDGE_ONNXRUNTIME_LIB, else libonnxruntime.so in the loader's path).
    #[arg(long, value_name = "PATH")]
    pub onnxruntime_lib: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelBackend {
    Tract,
    Onnxruntime,
}

#[derive(Subcommand, Debug)]
pub enum AllocCommand {
    /// List allocations.
    #[command(visible_alias = "list")]
    Ls {
        /// Only this job's.
        #[arg(long)]
        job: Option<String>,
        /// Only this node's (id prefix).
        #[arg(long)]
        node: Option<String>,
    },
    /// Show one allocation with its task states and events.
    Status { id: String },
    /// Print (or follow) a task's output.
    #[command(
        after_help = "Examples:\n  edge alloc logs 3f2a1b9c\n  edge alloc logs -f --stderr 3f2a1b9c server"
    )]
    Logs {
        id: String,
        /// Task name (needed when the allocation has several).
        task: Option<String>,
        #[arg(short, long)]
        follow: bool,
        #[arg(long)]
        stderr: bool,
        /// Only the last N bytes.
        #[arg(long)]
        tail: Option<u64>,
    },
    /// Run a command inside a running task; exits with the command's exit code.
    #[command(
        after_help = "Examples:\n  edge alloc exec 3f2a1b9c -- cat /etc/os-release\n  edge alloc exec -i -t 3f2a1b9c web -- sh"
    )]
    Exec {
        /// Send this terminal's stdin to the command.
        #[arg(short, long)]
        interactive: bool,
        /// Give the command a terminal (window size changes follow).
        #[arg(short, long)]
        tty: bool,
        id: String,
        /// Task name (needed when the allocation has several).
        task: Option<String>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// List nodes.
    #[command(visible_alias = "list")]
    Ls,
    /// Show one node (id, id prefix or name).
    Status { id: String },
    /// Move allocations off a node and keep new ones away.
    Drain {
        id: String,
        /// End the drain and make the node eligible again.
        #[arg(long)]
        disable: bool,
    },
    /// Remove what no allocation owns on a node now: containers, executors,
    /// cgroups, run state, network namespaces and address leases left by a
    /// lost data dir or an interrupted run. Agents also do this by
    /// themselves (see `edge agent --node-gc-interval`).
    #[command(after_help = "Example:\n  edge node gc lab-1\n  edge node gc -o json 3f2a")]
    Gc { id: String },
    /// Refuse a node from now on (its certificate and any new one); its
    /// allocations are replaced elsewhere.
    #[command(after_help = "Example:\n  edge node revoke lab-2")]
    Revoke { id: String },
    /// Allow or forbid new placements on a node.
    Eligibility {
        id: String,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// The join token agents present to get their first certificate.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The keys that seal secrets at rest in the server's data dir.
    #[command(subcommand)]
    Keyring(KeyringCommand),
}

#[derive(Subcommand, Debug)]
pub enum KeyringCommand {
    /// Make a new key, seal every secret again under it, drop the old keys.
    #[command(after_help = "Example:\n  edge operator keyring rotate")]
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a new join secret; joined nodes keep their certificates.
    #[command(after_help = "Example:\n  edge operator token rotate")]
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum AclCommand {
    /// Get the first management token; works once per cluster.
    #[command(after_help = "Example:\n  edge acl bootstrap")]
    Bootstrap,
    /// Create, list, show and remove policies.
    #[command(subcommand)]
    Policy(AclPolicyCommand),
    /// Create, list and revoke tokens.
    #[command(subcommand)]
    Token(AclTokenCommand),
}

#[derive(Args, Debug)]
pub struct ComposeArgs {
    /// Compose file (repeat to merge several, later ones override); default
    /// compose.yaml, compose.yml, docker-compose.yml or docker-compose.yaml
    /// and its override file.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Project name: the edge namespace and job the project runs as
    /// (default: `name:` in the file, else the directory's name).
    #[arg(short = 'p', long = "project-name", env = "COMPOSE_PROJECT_NAME")]
    pub project_name: Option<String>,
    /// Directory relative paths and `.env` are read from (default: the
    /// first file's).
    #[arg(long)]
    pub project_directory: Option<PathBuf>,
    /// Variables for `${...}` instead of the project directory's `.env`.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Also run the services of this profile (or set COMPOSE_PROFILES).
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
    #[command(subcommand)]
    pub command: ComposeCommand,
}

#[derive(Subcommand, Debug)]
pub enum ComposeCommand {
    /// Create or update the project's job (with its namespace, configs and
    /// secrets) and wait until every service runs and passes its checks.
    Up {
        /// Return once the job is registered.
        #[arg(short = 'd', long)]
        detach: bool,
        /// How long to wait for the services before giving up (waiting only).
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// Stop the project's services.
    Down {
        /// Also remove the project's named volumes and the configs and
        /// secrets `up` made from files.
        #[arg(short = 'v', long)]
        volumes: bool,
    },
    /// List the project's running (or starting) replicas.
    Ps {
        /// Also those that ended: a one-shot service's completed replicas.
        #[arg(short = 'a', long)]
        all: bool,
    },
    /// Print (or follow) the services' output, each line led by its replica.
    Logs {
        /// Only these services.
        services: Vec<String>,
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N bytes of each replica's log.
        #[arg(long)]
        tail: Option<u64>,
    },
    /// Print the resolved Compose file (merged, interpolated, profiles applied).
    Config,
    /// Print the edge job the project becomes, as a job file (`-o json` for JSON).
    Convert,
    /// Replace the services' replicas (all services when none is named),
    /// rolling per `update_config`.
    Restart { services: Vec<String> },
    /// Set how many replicas services run.
    #[command(after_help = "Example:\n  edge compose scale web=3 worker=2")]
    Scale {
        /// SERVICE=N pairs.
        #[arg(required = true, value_parser = parse_scale)]
        services: Vec<(String, u32)>,
    },
}

fn parse_scale(s: &str) -> Result<(String, u32), String> {
    let (name, n) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write SERVICE=N"))?;
    let n: u32 = n
        .parse()
        .map_err(|_| format!("{s:?}: {n:?} is not a number of replicas"))?;
    if n > edge_spec::limits::MAX_COUNT {
        return Err(format!(
            "{s:?}: at most {} replicas",
            edge_spec::limits::MAX_COUNT
        ));
    }
    Ok((name.to_string(), n))
}

#[derive(Subcommand, Debug)]
pub enum NamespaceCommand {
    /// Create a namespace, or set its description (management token).
    #[command(after_help = "Example:
  edge namespace apply prod --description production
  edge job run -namespace prod web.hcl
  dig @127.0.0.1 -p 8600 web.prod.service.edge")]
    Apply {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the namespaces the token may see.
    #[command(visible_alias = "list")]
    Ls,
    /// Show one namespace.
    #[command(after_help = "Example:
  edge namespace status prod")]
    Status { name: String },
    /// Delete an empty namespace (management token).
    #[command(
        visible_alias = "rm",
        after_help = "Example:
  edge namespace delete prod"
    )]
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum AclPolicyCommand {
    /// Create or replace a policy from an HCL file (`-` reads standard input).
    #[command(
        after_help = "Example:\n  edge acl policy apply readonly readonly.hcl\n\nA policy file, in Nomad's shape:\n  namespace \"default\" { policy = \"read\" }\n  node { policy = \"read\" }"
    )]
    Apply {
        name: String,
        file: PathBuf,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List policies.
    #[command(visible_alias = "list")]
    Ls,
    /// Remove a policy; tokens naming it lose what it granted.
    #[command(after_help = "Example:\n  edge acl policy rm readonly")]
    Rm { name: String },
    /// Show a policy and its rules.
    #[command(after_help = "Example:\n  edge acl policy info readonly")]
    Info { name: String },
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum TokenTypeArg {
    Client,
    Management,
}

#[derive(Subcommand, Debug)]
pub enum AclTokenCommand {
    /// Create a token; its secret is shown this once.
    #[command(
        after_help = "Examples:\n  edge acl token create --name ci --policy readonly --ttl 24h\n  edge acl token create --name admin --type management"
    )]
    Create {
        #[arg(long, default_value = "")]
        name: String,
        /// A policy of the token, repeatable (client tokens need one).
        #[arg(long = "policy")]
        policies: Vec<String>,
        #[arg(long = "type", value_enum, default_value_t = TokenTypeArg::Client)]
        token_type: TokenTypeArg,
        /// Refuse the token after this long (`24h`, `30m`).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<std::time::Duration>,
    },
    /// List tokens (never their secrets).
    #[command(visible_alias = "list")]
    Ls,
    /// Revoke a token by accessor id (or a unique prefix).
    #[command(after_help = "Example:\n  edge acl token revoke 1a2b3c4d")]
    Revoke { accessor: String },
    /// Show the token this CLI uses (`--token`/`EDGE_TOKEN`).
    #[command(name = "self")]
    Whoami,
}

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// List services with their instance counts.
    #[command(visible_alias = "list")]
    Ls,
    /// Show a service's instances and their health.
    #[command(after_help = "Example:\n  edge service status web")]
    Status { name: String },
}

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// List the named networks of the jobs (`network "NAME" {}`), with
    /// the groups that join them and the subnet each node gave them.
    #[command(
        visible_alias = "list",
        after_help = "Example:\n  edge network ls -o json"
    )]
    Ls,
    /// Show the allocations on one job's network and their addresses.
    #[command(after_help = "Example:\n  edge network status shop back")]
    Status {
        /// The job that declares the network.
        job: String,
        /// The network's name in that job.
        network: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Write the next version of a config: every key at once.
    #[command(
        after_help = "Examples:\n  edge config put httpd-config httpd.conf=@httpd.conf\n  edge config put app mode=prod workers=4\n\nA task asks for it:\n  config \"httpd-config\" {\n    destination = \"local/httpd.conf\"\n  }"
    )]
    Put {
        name: String,
        /// `KEY=VALUE`, or `KEY=@FILE` to read the value from a file.
        #[arg(required = true, value_parser = parse_object_kv)]
        data: Vec<(String, ObjectValueArg)>,
    },
    /// List the configs of the namespace.
    #[command(
        visible_alias = "list",
        after_help = "Example:\n  edge config ls -o json"
    )]
    Ls,
    /// Show a config's values.
    #[command(after_help = "Example:\n  edge config get httpd-config")]
    Get { name: String },
    /// Delete a config no running job asks for.
    #[command(
        visible_alias = "delete",
        after_help = "Example:\n  edge config rm httpd-config"
    )]
    Rm { name: String },
}

#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Write the next version of a secret: every key at once. Its values
    /// are sealed on the server and are never shown again.
    #[command(
        after_help = "Examples:\n  edge secret put server-certificate cert=@cert.pem key=@key.pem\n  edge secret put db password=@password.txt\n\nA task asks for it:\n  secret \"server-certificate\" {\n    key         = \"cert\"\n    destination = \"secrets/cert.pem\"\n    mode        = \"0400\"\n  }"
    )]
    Put {
        name: String,
        /// `KEY=VALUE`, `KEY=@FILE`, or `KEY=@-` for standard input.
        #[arg(required = true, value_parser = parse_object_kv)]
        data: Vec<(String, ObjectValueArg)>,
    },
    /// List the secrets of the namespace: names, keys and versions.
    #[command(visible_alias = "list", after_help = "Example:\n  edge secret ls")]
    Ls,
    /// Delete a secret no running job asks for.
    #[command(
        visible_alias = "delete",
        after_help = "Example:\n  edge secret rm server-certificate"
    )]
    Rm { name: String },
}

/// A value on the command line: given, or to be read from a file.
#[derive(Debug, Clone)]
pub enum ObjectValueArg {
    Text(String),
    File(std::path::PathBuf),
}

fn parse_object_kv(s: &str) -> Result<(String, ObjectValueArg), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE or KEY=@FILE"))?;
    if let Some(p) = edge_spec::objects::key_problem(k) {
        return Err(p);
    }
    let v = match v.strip_prefix('@') {
        Some(path) => ObjectValueArg::File(path.into()),
        None => ObjectValueArg::Text(v.to_string()),
    };
    Ok((k.to_string(), v))
}

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// List local volumes, with the node that holds each, and the host
    /// volumes nodes offer (`--host-volume`).
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  edge volume ls\n  edge -namespace '*' volume ls -o json"
    )]
    Ls,
    /// Show one local volume: its node and the copy that uses it.
    #[command(after_help = "Example:\n  edge volume status 3f2a")]
    Status {
        /// The volume's id, or a prefix of it.
        id: String,
    },
    /// Remove a local volume and its data on its node. Refused while a
    /// copy of its group runs with it; the copy's next run starts empty.
    #[command(
        visible_alias = "delete",
        after_help = "Example:\n  edge job stop db\n  edge volume rm 3f2a"
    )]
    Rm {
        /// The volume's id, or a prefix of it.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeploymentCommand {
    /// List deployments, newest first.
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  edge deployment ls\n  edge deployment ls --job web -o json"
    )]
    Ls {
        /// Only this job's deployments.
        #[arg(long)]
        job: Option<String>,
    },
    /// Show a deployment (id, id prefix, or `--job JOB` for its newest).
    #[command(
        after_help = "Examples:\n  edge deployment status 1a2b3c4d\n  edge deployment status --job web"
    )]
    Status {
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        job: Option<String>,
    },
    /// Promote healthy canaries: the rest of the new version rolls out.
    #[command(
        after_help = "Examples:\n  edge deployment promote 1a2b3c4d\n  edge deployment promote 1a2b3c4d --group web"
    )]
    Promote {
        id: String,
        /// Promote only this group (repeatable); every group by default.
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Pause a deployment: no new copy replaces an old one.
    #[command(after_help = "Example:\n  edge deployment pause 1a2b3c4d")]
    Pause { id: String },
    /// Resume a paused deployment.
    #[command(after_help = "Example:\n  edge deployment resume 1a2b3c4d")]
    Resume { id: String },
    /// Judge copies by hand, for groups with `health_check = "manual"`.
    #[command(
        after_help = "Example:\n  edge deployment health 1a2b3c4d --healthy 5e6f7a8b --unhealthy 9c0d1e2f"
    )]
    Health {
        id: String,
        /// An allocation (id or prefix) judged healthy; repeatable.
        #[arg(long)]
        healthy: Vec<String>,
        /// An allocation (id or prefix) judged unhealthy; repeatable.
        #[arg(long)]
        unhealthy: Vec<String>,
    },
    /// Mark a deployment failed (with auto_revert, the stable version comes back).
    #[command(after_help = "Example:\n  edge deployment fail 1a2b3c4d")]
    Fail { id: String },
}

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// List evaluations.
    #[command(visible_alias = "list")]
    Ls,
    /// Show one evaluation with its placement failures.
    Status { id: String },
}

/// `NAME=PATH[:ro]` of `--host-volume`.
fn parse_host_volume(s: &str) -> Result<(String, edge_agent::HostVolume), String> {
    let (name, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=PATH or NAME=PATH:ro"))?;
    let (path, read_only) = match rest.strip_suffix(":ro") {
        Some(p) => (p, true),
        None => (rest.strip_suffix(":rw").unwrap_or(rest), false),
    };
    edge_spec::check_name(edge_spec::NameKind::Volume, name).map_err(|e| e.to_string())?;
    let path = std::path::PathBuf::from(path);
    if !path.is_absolute() {
        return Err(format!(
            "host volume {name}: {} is not an absolute path",
            path.display()
        ));
    }
    Ok((name.to_string(), edge_agent::HostVolume { path, read_only }))
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected name=value, got {s:?}")),
    }
}

pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    edge_spec::duration::parse(s)
}

/// Nomad spells its long flags with one dash; `-namespace prod` (or
/// `edge job dispatch -meta k=v`) would
/// otherwise reach clap as short flags. Rewritten up to a `--`, after which
/// the words are a command's own (`edge alloc exec ID -- cmd -namespace`).
pub fn nomad_flags(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut rest = false;
    args.map(|a| {
        if rest {
            return a;
        }
        match a.to_str() {
            Some("--") => {
                rest = true;
                a
            }
            Some(s)
                if ["-namespace", "-meta"]
                    .iter()
                    .any(|f| s == *f || s.strip_prefix(f).is_some_and(|v| v.starts_with('='))) =>
            {
                format!("-{s}").into()
            }
            _ => a,
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The `edge ...` lines after `Example:` or `Examples:` in the help of
    /// `cmd` and of every subcommand below it.
    fn help_examples(cmd: &clap::Command, out: &mut Vec<String>) {
        for help in [cmd.get_after_help(), cmd.get_after_long_help()]
            .into_iter()
            .flatten()
        {
            let text = help.to_string();
            let mut in_examples = false;
            for line in text.lines().map(str::trim) {
                if line == "Example:" || line == "Examples:" {
                    in_examples = true;
                } else if in_examples && line.starts_with("edge ") {
                    out.push(line.to_string());
                }
            }
        }
        for sub in cmd.get_subcommands() {
            help_examples(sub, out);
        }
    }

    /// The `edge ...` lines of the README's `sh` blocks (`./target/debug/edge`
    /// counts as `edge`).
    fn readme_commands() -> Vec<String> {
        let mut in_sh = false;
        let mut out = Vec::new();
        for line in include_str!("../../../README.md").lines() {
            let line = line.trim().replacen("./target/debug/edge ", "edge ", 1);
            match line.as_str() {
                "```sh" => in_sh = true,
                "```" => in_sh = false,
                l if in_sh && l.starts_with("edge ") => out.push(line.clone()),
                _ => {}
            }
        }
        out
    }

    /// The arguments a shell would pass for an example line: a trailing
    /// `# comment` and everything from a redirection, pipe or `&` on are
    /// dropped, and a `$(...)` substitution stays one placeholder word, as do
    /// `<...>` placeholders.
    fn shell_words(line: &str) -> Vec<String> {
        let line = line.split(" #").next().unwrap_or_default();
        let mut words: Vec<String> = Vec::new();
        let mut open = 0usize;
        for w in line.split_whitespace() {
            if open == 0 && matches!(w, "&" | "&&" | "|" | ";" | ">" | ">>" | "2>") {
                break;
            }
            let was_open = open > 0;
            open += w.matches("$(").count();
            open = open.saturating_sub(w.matches(')').count());
            match words.last_mut() {
                Some(last) if was_open => {
                    last.push(' ');
                    last.push_str(w);
                }
                _ => words.push(w.to_string()),
            }
        }
        words
    }

    #[test]
    fn single_dash_namespace_becomes_long_until_double_dash() {
        let args = [
            "edge",
            "job",
            "status",
            "-namespace",
            "prod",
            "-namespace=x",
            "--",
            "-namespace",
        ];
        let out: Vec<String> = nomad_flags(args.iter().map(|s| s.into()))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            out,
            [
                "edge",
                "job",
                "status",
                "--namespace",
                "prod",
                "--namespace=x",
                "--",
                "-namespace"
            ]
        );
    }

    #[test]
    fn shell_words_keeps_placeholders_whole_and_drops_shell_syntax() {
        assert_eq!(
            shell_words("edge agent --join-token $(cat data/token) --name a # why"),
            [
                "edge",
                "agent",
                "--join-token",
                "$(cat data/token)",
                "--name",
                "a"
            ]
        );
        assert_eq!(
            shell_words("edge alloc logs -f <alloc-id>"),
            ["edge", "alloc", "logs", "-f", "<alloc-id>"]
        );
        assert_eq!(shell_words("edge dev &"), ["edge", "dev"]);
        assert_eq!(
            shell_words("edge completions bash > /etc/x"),
            ["edge", "completions", "bash"]
        );
    }

    /// Help or a README that shows a command line edge refuses is worse than
    /// none: every example must parse.
    #[test]
    fn every_help_and_readme_example_parses() {
        let mut examples = Vec::new();
        help_examples(&Cli::command(), &mut examples);
        assert!(examples.len() >= 15, "too few examples found: {examples:?}");
        let readme = readme_commands();
        assert!(readme.len() >= 5, "too few README commands: {readme:?}");
        for line in examples.iter().chain(&readme) {
            if let Err(e) =
                Cli::try_parse_from(nomad_flags(shell_words(line).into_iter().map(Into::into)))
            {
                panic!("example `{line}` does not parse:\n{e}");
            }
        }
    }

    /// A subcommand's own flag with the id of a global one is filled from the
    /// global's environment variable: the node's address once came from
    /// `EDGE_ADDR`, the CLI's API URL. One name per meaning.
    #[test]
    fn no_flag_shares_an_id_with_a_global() {
        fn walk(cmd: &clap::Command, globals: &[clap::Id], path: &str) {
            for a in cmd.get_arguments().filter(|a| !a.is_global_set()) {
                assert!(
                    !globals.contains(a.get_id()),
                    "`{path}` has a flag `{}` shadowing the global one",
                    a.get_id()
                );
            }
            for sub in cmd.get_subcommands() {
                walk(sub, globals, &format!("{path} {}", sub.get_name()));
            }
        }
        let cli = Cli::command();
        let globals: Vec<clap::Id> = cli
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| a.get_id().clone())
            .collect();
        assert!(globals.iter().any(|id| id == "address"));
        for sub in cli.get_subcommands() {
            walk(sub, &globals, &format!("edge {}", sub.get_name()));
        }
    }
}
