//! Periodic and parameterized jobs (Nomad's `periodic` and `parameterized`
//! blocks, a task's `dispatch_payload`): their checks, the next launch of a
//! cron schedule in its time zone, and the ids of the child jobs the server
//! launches from them. Pure: the time is always an argument, and time zones
//! come from the tz database compiled in, never from the host's files.

use crate::job::{Job, JobType};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bytes a dispatch's payload may hold, as in Nomad.
pub const MAX_PAYLOAD: usize = 16 * 1024;

/// Cron expressions of one `periodic` block.
const MAX_CRONS: usize = 16;

/// `periodic { crons = [...] prohibit_overlap time_zone enabled }`: the job
/// is never placed itself; the server launches a batch child job of it
/// each time one of the expressions comes due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Periodic {
    /// Cron expressions (5 fields, minute first; 6 fields add a year, as
    /// Nomad reads them; 7 fields add seconds in front), or `@hourly`,
    /// `@daily`, `@weekly`, `@monthly`, `@yearly`: the job launches at the
    /// earliest time any of them matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_CRONS))]
    pub crons: Vec<String>,
    /// Nomad's older single expression: give this or `crons`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// No launch while a child launched before still runs.
    #[serde(default)]
    pub prohibit_overlap: bool,
    /// The IANA time zone the expressions are read in.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// `false` keeps the job registered without launching it (a forced
    /// launch still works).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn utc() -> String {
    "UTC".to_string()
}

fn yes() -> bool {
    true
}

impl Periodic {
    /// Every expression, in the order given.
    pub fn expressions(&self) -> impl Iterator<Item = &String> {
        self.cron.iter().chain(self.crons.iter())
    }

    /// The first launch strictly after `after_ms` (Unix milliseconds) that
    /// any expression matches, in Unix milliseconds; `None` when no
    /// expression ever matches again (or the block does not validate).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let tz = time_zone(&self.time_zone).ok()?;
        let start = jiff::Timestamp::from_millisecond(after_ms)
            .ok()?
            .to_zoned(tz);
        self.expressions()
            .filter_map(|e| parse_cron(e).ok())
            .filter_map(|c| c.find_next_occurrence(&start, false).ok())
            .map(|z| z.timestamp().as_millisecond())
            .min()
    }

    /// What is wrong with the block, as `(field under periodic, message)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match (&self.cron, self.crons.is_empty()) {
            (None, true) => out.push((
                "crons".to_string(),
                "a periodic block needs `crons` (a list of cron expressions)".to_string(),
            )),
            (Some(_), false) => out.push((
                "cron".to_string(),
                "give `crons` or the older `cron`, not both".to_string(),
            )),
            _ => {}
        }
        if self.crons.len() > MAX_CRONS {
            out.push((
                "crons".to_string(),
                format!(
                    "{} cron expressions; the limit is {MAX_CRONS}",
                    self.crons.len()
                ),
            ));
        }
        let named = self.cron.iter().map(|c| ("cron".to_string(), c)).chain(
            self.crons
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("crons[{i}]"), c)),
        );
        for (field, expr) in named {
            if let Err(why) = parse_cron(expr) {
                out.push((field, why));
            }
        }
        if let Err(why) = time_zone(&self.time_zone) {
            out.push(("time_zone".to_string(), why));
        }
        out
    }
}

/// Nomad's reading of a cron expression (its `cronexpr`): 5 fields are
/// minute to weekday, 6 add a year at the end, 7 add seconds in front.
/// croner reads 6 fields as seconds first, so a 6-field expression gets its
/// second 0 put in front.
fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    use croner::parser::{CronParser, Seconds, Year};
    let fields = expr.split_whitespace().count();
    let text = match fields {
        5 | 7 => expr.to_string(),
        6 => format!("0 {expr}"),
        1 if expr.trim_start().starts_with('@') => expr.to_string(),
        n => {
            return Err(format!(
                "cron expression {expr:?} has {n} fields: give 5 (minute hour day-of-month month day-of-week), 6 (and a year) or 7 (seconds first), or @hourly, @daily, @weekly, @monthly, @yearly"
            ));
        }
    };
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Optional)
        .build()
        .parse(&text)
        .map_err(|e| format!("cron expression {expr:?} does not parse: {e}"))
}

/// An IANA time zone from the compiled-in database (`UTC`, `Europe/Berlin`).
fn time_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZoneDatabase::bundled()
        .get(name)
        .map_err(|_| {
            format!(
                "unknown time zone {name:?}: give an IANA name such as \"UTC\" or \"Europe/Berlin\""
            )
        })
}

/// Whether a dispatch must, may or must not carry a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayloadRule {
    #[default]
    Optional,
    Required,
    Forbidden,
}

/// `parameterized { payload meta_required meta_optional }`: the job is
/// never placed itself; each `edge job dispatch` makes a child of it with
/// the dispatch's meta and payload.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameterized {
    #[serde(default)]
    pub payload: PayloadRule,
    /// Meta keys every dispatch must give.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meta_required: Vec<String>,
    /// Meta keys a dispatch may give; any other key is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meta_optional: Vec<String>,
}

impl Parameterized {
    /// Whether a dispatch with `meta` and a payload of `payload_len` bytes
    /// fits the block; the error says what to change.
    pub fn check_dispatch(
        &self,
        meta: &BTreeMap<String, String>,
        payload_len: usize,
    ) -> Result<(), String> {
        if payload_len > MAX_PAYLOAD {
            return Err(format!(
                "the payload is {payload_len} bytes; the limit is {MAX_PAYLOAD}"
            ));
        }
        match (self.payload, payload_len) {
            (PayloadRule::Required, 0) => {
                return Err(
                    "the job requires a payload (parameterized { payload = \"required\" })"
                        .to_string(),
                );
            }
            (PayloadRule::Forbidden, n) if n > 0 => {
                return Err(
                    "the job takes no payload (parameterized { payload = \"forbidden\" })"
                        .to_string(),
                );
            }
            _ => {}
        }
        let missing: Vec<&str> = self
            .meta_required
            .iter()
            .filter(|k| !meta.contains_key(*k))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "missing required meta key(s): {}",
                missing.join(", ")
            ));
        }
        let unknown: Vec<&str> = meta
            .keys()
            .filter(|k| !self.meta_required.contains(k) && !self.meta_optional.contains(k))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "meta key(s) {} are neither in meta_required nor in meta_optional",
                unknown.join(", ")
            ));
        }
        Ok(())
    }
}

/// `dispatch_payload { file = "input.txt" }`: the agent writes a dispatched
/// child's payload to `local/<file>` in the task's directory before the
/// task starts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DispatchPayload {
    /// A path under the task's `local/` directory.
    pub file: String,
}

/// What is wrong with a `dispatch_payload` file: relative to `local/`,
/// never climbing out of it, and naming a file.
pub fn payload_file_problem(file: &str) -> Option<String> {
    if file.starts_with('/') {
        return Some(format!(
            "file {file:?} is relative to the task's local/ directory: drop the leading /"
        ));
    }
    if file.len() > crate::limits::MAX_MOUNT_PATH || file.contains('\0') {
        return Some("file is too long or holds a NUL byte".to_string());
    }
    if file.split('/').any(|c| c == "..") {
        return Some(format!(
            "file {file:?} must not contain `..`: it stays under local/"
        ));
    }
    if file.ends_with('/') || file.split('/').all(|c| c.is_empty() || c == ".") {
        return Some(format!("file {file:?} must name a file"));
    }
    None
}

/// The id of the child a periodic job launches at `launch_ms`: Nomad's
/// `JOB/periodic-<unix seconds>`.
pub fn periodic_child_id(parent: &str, launch_ms: i64) -> String {
    format!("{parent}/periodic-{}", launch_ms.div_euclid(1000))
}

/// The id of a dispatched child: Nomad's `JOB/dispatch-<unix seconds>-<8 hex>`.
pub fn dispatch_child_id(parent: &str, now_ms: i64, suffix: &str) -> String {
    format!("{parent}/dispatch-{}-{suffix}", now_ms.div_euclid(1000))
}

/// When the child `id` of `parent` was launched, in Unix milliseconds,
/// if it is a periodic child of it.
pub fn periodic_launch_of(parent: &str, id: &str) -> Option<i64> {
    let secs: i64 = id
        .strip_prefix(parent)?
        .strip_prefix("/periodic-")?
        .parse()
        .ok()?;
    secs.checked_mul(1000)
}

/// What is wrong with a job's `periodic`, `parameterized` and tasks'
/// `dispatch_payload` blocks, as `(field, message)` under `base`.
pub(crate) fn problems(job: &Job, base: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(p) = &job.periodic {
        let at = format!("{base}.periodic");
        if job.job_type != JobType::Batch {
            out.push((
                at.clone(),
                format!(
                    "a periodic job must be a batch job (type = \"batch\"), not {}",
                    job.job_type.as_str()
                ),
            ));
        }
        if job.parameterized.is_some() {
            out.push((
                at.clone(),
                "a job is periodic or parameterized, not both".to_string(),
            ));
        }
        for (field, message) in p.problems() {
            out.push((format!("{at}.{field}"), message));
        }
    }
    if let Some(p) = &job.parameterized {
        let at = format!("{base}.parameterized");
        if job.job_type != JobType::Batch {
            out.push((
                at.clone(),
                format!(
                    "a parameterized job must be a batch job (type = \"batch\"), not {}",
                    job.job_type.as_str()
                ),
            ));
        }
        for k in p
            .meta_required
            .iter()
            .filter(|k| p.meta_optional.contains(k))
        {
            out.push((
                format!("{at}.meta_optional"),
                format!("meta key {k:?} is both required and optional"),
            ));
        }
        let keys = [
            ("meta_required", &p.meta_required),
            ("meta_optional", &p.meta_optional),
        ];
        for (field, list) in keys {
            let bad = list.iter().find(|k| {
                k.is_empty()
                    || k.len() > crate::limits::MAX_NAME_LEN
                    || !k
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            });
            if let Some(k) = bad {
                out.push((
                    format!("{at}.{field}"),
                    format!(
                        "meta key {k:?} must be 1 to {} ASCII letters, digits, '_', '-' or '.': tasks see it as EDGE_META_<key>",
                        crate::limits::MAX_NAME_LEN
                    ),
                ));
            }
        }
    }
    if !job.parent_id.is_empty() || job.launches() {
        let launching = [
            (!job.networks.is_empty(), "network", "named networks"),
            (
                job.groups
                    .iter()
                    .flat_map(|g| &g.volumes)
                    .any(|v| v.kind == crate::job::VolumeType::Local),
                "group",
                "local volumes",
            ),
        ];
        for (_, block, what) in launching.into_iter().filter(|(on, _, _)| *on) {
            out.push((
                format!("{base}.{block}"),
                format!(
                    "{what} are not built for periodic and parameterized jobs: each child would make its own"
                ),
            ));
        }
    }
    for (gi, g) in job.groups.iter().enumerate() {
        let group = crate::validate::named(base, "group", gi, &g.name);
        for (ti, t) in g.tasks.iter().enumerate() {
            let Some(d) = &t.dispatch_payload else {
                continue;
            };
            let at = format!(
                "{}.dispatch_payload",
                crate::validate::named(&group, "task", ti, &t.name)
            );
            if job.parameterized.is_none() && job.parent_id.is_empty() {
                out.push((
                    at.clone(),
                    "dispatch_payload needs a parameterized job: only a dispatch carries a payload"
                        .to_string(),
                ));
            }
            if let Some(why) = payload_file_problem(&d.file) {
                out.push((format!("{at}.file"), why));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(exprs: &[&str], tz: &str) -> Periodic {
        Periodic {
            crons: exprs.iter().map(|s| s.to_string()).collect(),
            cron: None,
            prohibit_overlap: false,
            time_zone: tz.to_string(),
            enabled: true,
        }
    }

    /// 2023-11-14 22:13:20 UTC.
    const T: i64 = 1_700_000_000_000;

    #[test]
    fn next_launch_follows_the_expressions_and_zone() {
        assert_eq!(
            every(&["* * * * *"], "UTC").next_after(T),
            Some(1_700_000_040_000)
        );
        // The earliest of two.
        assert_eq!(
            every(&["0 0 * * *", "*/15 * * * *"], "UTC").next_after(T),
            Some(1_700_000_100_000)
        );
        // Midnight in Berlin (UTC+1 in November) is 23:00 UTC.
        assert_eq!(
            every(&["@daily"], "Europe/Berlin").next_after(T),
            Some(1_700_002_800_000)
        );
        // Six fields end with a year, as in Nomad: every 15 minutes.
        assert_eq!(
            every(&["*/15 * * * * *"], "UTC").next_after(T),
            Some(1_700_000_100_000)
        );
        // Seven fields start with seconds.
        assert_eq!(
            every(&["*/10 * * * * * *"], "UTC").next_after(T),
            Some(1_700_000_010_000)
        );
        // Strictly after: a launch time is not due again.
        assert_eq!(
            every(&["* * * * *"], "UTC").next_after(1_700_000_040_000),
            Some(1_700_000_100_000)
        );
        assert_eq!(every(&["0 0 30 2 *"], "UTC").next_after(T), None);
    }

    #[test]
    fn bad_blocks_name_the_field_and_cause() {
        let p = every(&["* * * * *", "61 * * * *", "* *"], "Mars/Olympus");
        let fields: Vec<String> = p.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["crons[1]", "crons[2]", "time_zone"]);
        let none = Periodic {
            crons: vec![],
            ..every(&[], "UTC")
        };
        assert_eq!(none.problems()[0].0, "crons");
        let both = Periodic {
            cron: Some("@hourly".into()),
            ..every(&["@daily"], "UTC")
        };
        assert_eq!(both.problems()[0].0, "cron");
        let old = Periodic {
            cron: Some("@hourly".into()),
            ..every(&[], "UTC")
        };
        assert!(old.problems().is_empty());
        assert_eq!(old.next_after(T), Some(1_700_002_800_000));
    }

    #[test]
    fn dispatches_are_checked_against_the_block() {
        let p = Parameterized {
            payload: PayloadRule::Required,
            meta_required: vec!["who".into()],
            meta_optional: vec!["why".into()],
        };
        let meta = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(p.check_dispatch(&meta(&[("who", "me")]), 3).is_ok());
        assert!(
            p.check_dispatch(&meta(&[("who", "me"), ("why", "x")]), 3)
                .is_ok()
        );
        let err = |m: &[(&str, &str)], n| p.check_dispatch(&meta(m), n).unwrap_err();
        assert!(err(&[("who", "me")], 0).contains("requires a payload"));
        assert!(err(&[], 3).contains("who"));
        assert!(err(&[("who", "me"), ("what", "x")], 3).contains("what"));
        assert!(err(&[("who", "me")], MAX_PAYLOAD + 1).contains("limit"));
        let forbidden = Parameterized {
            payload: PayloadRule::Forbidden,
            ..Parameterized::default()
        };
        assert!(forbidden.check_dispatch(&meta(&[]), 1).is_err());
        assert!(forbidden.check_dispatch(&meta(&[]), 0).is_ok());
    }

    #[test]
    fn payload_files_stay_under_local() {
        assert_eq!(payload_file_problem("input.txt"), None);
        assert_eq!(payload_file_problem("in/put.json"), None);
        for bad in [
            "../../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "dir/",
            ".",
            "",
        ] {
            assert!(payload_file_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn child_ids_carry_the_launch_time() {
        let id = periodic_child_id("backup", 1_700_000_040_123);
        assert_eq!(id, "backup/periodic-1700000040");
        assert_eq!(periodic_launch_of("backup", &id), Some(1_700_000_040_000));
        assert_eq!(periodic_launch_of("back", &id), None);
        assert_eq!(periodic_launch_of("backup", "backup/dispatch-1-ab"), None);
        assert_eq!(
            dispatch_child_id("j", 1_700_000_040_999, "0a1b2c3d"),
            "j/dispatch-1700000040-0a1b2c3d"
        );
    }

    proptest::proptest! {
        /// Any text as a cron expression or zone is an answer, never a panic,
        /// and a launch is always after the time asked about.
        #[test]
        fn any_expression_is_safe(expr in "[0-9*/,@a-zA-Z -]{0,40}", tz in "[A-Za-z/_]{0,20}", at in 0i64..4_000_000_000_000) {
            let p = every(&[expr.as_str()], &tz);
            let _ = p.problems();
            if let Some(next) = p.next_after(at) {
                proptest::prop_assert!(next > at);
            }
        }
    }
}
