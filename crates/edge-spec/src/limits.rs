//! Every bound a job must stay within, in one place with the reason for
//! each. Validation enforces them; the code that runs a job still guards
//! against values past them, since a job stored before a bound existed never
//! went through it.

use std::time::Duration;

/// Job ids appear in allocation names (`job.group[3]`), directories on the
/// agent and log lines; 128 is Nomad's own limit, so Nomad job files keep
/// their ids.
pub const MAX_JOB_ID_LEN: usize = 128;

/// The characters of a job id, as a JSON Schema pattern for
/// `api/openapi.yaml`: what `validate::check_name` accepts.
pub const JOB_ID_PATTERN: &str = "^[A-Za-z0-9_-][A-Za-z0-9_.-]*$";

/// Group and task names become path components on the agent (allocation
/// directories, `<task>.stdout.0` log files) and DNS-style identifiers, so
/// they are DNS labels in length.
pub const MAX_NAME_LEN: usize = 63;

/// The characters of a group or task name, as [`JOB_ID_PATTERN`] is of ids.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9_-]+$";

/// Service names become DNS labels (`NAME.service.edge`): letters, digits
/// and '-', not first or last, at most 63.
pub const SERVICE_NAME_PATTERN: &str = "^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$";

/// Groups of one job: each is scheduled separately on every evaluation.
pub const MAX_GROUPS: usize = 100;

/// Named networks of one job: each is a bridge on every node that runs
/// one of its allocations.
pub const MAX_NETWORKS: usize = 16;

/// Named networks one group joins: each is an interface of every copy.
pub const MAX_GROUP_NETWORKS: usize = 4;

/// Tasks of one group: each is a process, container or module on one node.
pub const MAX_TASKS: usize = 100;

/// Volumes per group, and mounts per task.
pub const MAX_VOLUMES: usize = 32;

/// A volume mount's destination path, in bytes (Linux's PATH_MAX).
pub const MAX_MOUNT_PATH: usize = 4096;

/// Copies of one group: every copy is an allocation row the server keeps and
/// every agent watch may carry, and edge is built for clusters of a few
/// hundred nodes.
pub const MAX_COUNT: u32 = 10_000;

/// Constraints of a job or of one group. Each is checked against every node;
/// real jobs use a handful.
pub const MAX_CONSTRAINTS: usize = 256;

/// CPU of one task in MHz: a thousand 4 GHz cores, far past any node.
pub const MAX_TASK_CPU: u32 = 4_000_000;

/// Memory of one task in MB: 16 TiB, far past any node. With
/// [`MAX_TASKS`] tasks a group's sum still fits in a `u32`.
pub const MAX_TASK_MEMORY: u32 = 16 * 1024 * 1024;

/// Waits that belong to one run of a task: `kill_timeout`, check
/// `interval` and `timeout`, `check_restart.grace`, `shutdown_delay`. A day
/// is already longer than anyone waits for a stop or a probe; past it a
/// value is a typo or an attack on the agent's deadline arithmetic.
pub const MAX_TASK_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// Windows and delays of the restart and reschedule policies, which span
/// many runs: a week.
pub const MAX_POLICY_WAIT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Drivers an agent can run. `model` is what the `model` block expands to.
pub const DRIVERS: &[&str] = &["containerd", "exec", "model", "wasm"];
