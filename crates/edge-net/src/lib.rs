//! Allocation networking: each bridge-mode allocation gets a network
//! namespace of its own with a veth into the node's bridge (or one into
//! each named network it joins) and an address from the bridge's subnet,
//! made by the standard CNI plugins (`loopback`, `bridge`, `host-local`,
//! `tuning`) that this crate drives (`cni.rs`), and outbound NAT, its
//! ports mapped from the host and the isolation of bridges from each
//! other, by edge's own iptables rules (`rules.rs`: the `firewall` and
//! `portmap` plugins' rule-per-allocation was most of a start). A
//! named network spans nodes: the server gives it a subnet and each node a
//! slice, and a VXLAN device in its bridge joins the nodes' halves into
//! one segment (`overlay.rs`).

mod cni;
mod command;
pub mod error;
mod named;
mod netns;
mod overlay;
mod rules;

pub use edge_spec::Subnet;
pub use error::NetError;

use named::{NetDef, Registry};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const DEFAULT_BRIDGE: &str = "edge0";
pub const DEFAULT_SUBNET: &str = "172.26.64.0/20";
/// Where Debian's `containernetworking-plugins` and the upstream tarball
/// put the plugins.
pub const DEFAULT_PLUGIN_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];
/// Every namespace edge makes is `edge-<allocation id>`.
const NETNS_PREFIX: &str = "edge-";
/// The default bridge's CNI network name: host-local keeps its leases
/// under it (named networks have `edge-<index>`).
const NETWORK_NAME: &str = "edge";
/// Where agents hold a lock per bridge: two agents on one host (a lab)
/// must not hand out addresses from one subnet with two lease stores.
const LOCK_DIR: &str = "/run/edge-net";

/// How the agent's bridge networking is set up (agent flags).
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub bridge: String,
    pub subnet: Subnet,
    /// This node's address on the network between nodes, where the
    /// overlay's VXLAN packets come and go. `None` (or a loopback
    /// address) keeps named networks to this node.
    pub underlay: Option<Ipv4Addr>,
    /// The agent's own directory for IPAM leases (kept with its state, so
    /// a lost `/var/lib/cni` cannot hand an address out twice).
    pub state_dir: PathBuf,
    pub plugin_dirs: Vec<PathBuf>,
    /// The node's DNS server: an allocation's queries to its gateway on
    /// port 53 are sent there, so its resolver is an address its own
    /// namespace reaches. `None` (or a loopback address, which no
    /// namespace reaches) gives allocations no resolver of edge's.
    pub dns: Option<std::net::SocketAddrV4>,
    /// The default bridge's MTU (its veths' too). Large by default
    /// ([`DEFAULT_MTU`]): traffic between the host and its allocations
    /// never crosses a wire, and at 1500 a port mapping on 127.0.0.1
    /// carried 70-80 % of what loopback does. What leaves the node is cut
    /// to the wire's MTU by TCP's MSS and, for the rest, by path MTU
    /// discovery against this host, its first hop.
    pub mtu: u32,
}

/// The default bridge's MTU: the largest a veth takes, as loopback's.
pub const DEFAULT_MTU: u32 = 65520;

/// An allocation's place on the node's networks, kept in the agent's
/// local state so a restarted agent adopts it instead of making another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub netns: PathBuf,
    /// The first interface's: where the ports are mapped to.
    pub address: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub ports: Vec<PortMapping>,
    pub interfaces: Vec<Interface>,
    /// The resolver address (the gateway, port 53) when the node's DNS
    /// answers there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<Ipv4Addr>,
}

/// One interface of an allocation: `eth<N>` on a bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    /// The named network's key; empty for the node's default bridge.
    pub network: String,
    pub ifname: String,
    pub address: Ipv4Addr,
    /// The CNI result, handed back to the plugins on DEL.
    pub result: Value,
}

/// A named network as the server assigned it to this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayDef {
    /// `NAMESPACE/JOB/NAME`.
    pub key: String,
    /// The VXLAN id, unique in the cluster.
    pub vni: u32,
    /// The network's subnet, one segment across nodes.
    pub subnet: Subnet,
    /// This node's slice of it: the gateway and the addresses it hands out.
    pub slice: Subnet,
    /// The other nodes with members, by underlay address.
    pub peers: Vec<Ipv4Addr>,
}

/// A host port forwarded to a port inside the allocation (TCP and UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host: u16,
    pub container: u16,
}

/// Something on the node that no allocation owns: a namespace or an
/// address lease left by a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub alloc_id: String,
    pub description: String,
}

/// What the agent writes for an allocation before its namespace exists:
/// enough to remove everything after a crash (each network's chain needs
/// its DEL; the port mappings are found by their comment).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Marker {
    networks: Vec<String>,
}

/// The node's bridge networks.
#[derive(Debug)]
pub struct BridgeNetwork {
    cfg: BridgeConfig,
    /// The underlay address, when it is one other nodes can reach.
    underlay: Option<Ipv4Addr>,
    /// Named networks' MTU: the underlay's less VXLAN's overhead.
    mtu: Option<u32>,
    default: NetDef,
    named: Mutex<Registry>,
    /// Bridges whose rules this agent has put in (or found) since it
    /// started: later attaches skip the checks.
    ruled: tokio::sync::Mutex<BTreeSet<String>>,
    /// One change of the named networks' devices at a time: allocations
    /// joining a network at once must not both make its bridge.
    devices: tokio::sync::Mutex<()>,
    /// Attaches and detaches share it; a change of which named networks
    /// exist here has it alone, so no allocation's plugins run on a bridge
    /// that is being removed (a project taken down and up again at once).
    lifecycle: tokio::sync::RwLock<()>,
    /// Held for the agent's life; the kernel drops it when the agent dies.
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// Opens (making it if need be) the host-wide lock file `name`.
pub(crate) fn lock_file(name: &str) -> Result<(std::fs::File, PathBuf), NetError> {
    std::fs::create_dir_all(LOCK_DIR).map_err(|e| NetError::io("create", LOCK_DIR, e))?;
    let path = Path::new(LOCK_DIR).join(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| NetError::io("open", &path, e))?;
    Ok((file, path))
}

/// Takes the host-wide lock on `bridge`, or says that another agent has it.
fn lock_bridge(bridge: &str) -> Result<nix::fcntl::Flock<std::fs::File>, NetError> {
    let (file, path) = lock_file(&format!("{bridge}.lock"))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, errno)| match errno {
            nix::errno::Errno::EWOULDBLOCK => NetError::BridgeInUse {
                bridge: bridge.to_string(),
                lock: path.clone(),
            },
            other => NetError::io("lock", &path, other.into()),
        },
    )
}

/// Allocation ids become namespace names and CNI container ids: letters,
/// digits and `-` only.
fn check_id(id: &str) -> Result<(), NetError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(NetError::BadId { id: id.to_string() })
    }
}

/// A Linux interface name: at most 15 bytes, and (for edge) letters,
/// digits, `-`, `_` and `.` only, so it is also a safe file name.
fn check_bridge_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

impl BridgeNetwork {
    /// Checks that this node can do it (root, the plugins, `ip`,
    /// `iptables`); the agent fingerprints bridge networking only then.
    pub fn new(cfg: BridgeConfig) -> Result<BridgeNetwork, NetError> {
        let uid = nix::unistd::geteuid().as_raw();
        if uid != 0 {
            return Err(NetError::NotRoot { uid });
        }
        for (program, package) in [
            ("ip", "iproute2"),
            ("bridge", "iproute2"),
            ("iptables", "iptables"),
            ("iptables-restore", "iptables"),
        ] {
            if !on_path(program) {
                return Err(NetError::MissingProgram { program, package });
            }
        }
        let default = NetDef {
            key: String::new(),
            bridge: cfg.bridge.clone(),
            subnet: cfg.subnet,
            cni_name: NETWORK_NAME.to_string(),
            overlay: None,
        };
        let probe = chain(&cfg, &default, true, None);
        if let Some(plugin) = probe.missing().into_iter().next() {
            return Err(NetError::MissingPlugin {
                plugin,
                dirs: probe
                    .dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
            });
        }
        if !check_bridge_name(&cfg.bridge) {
            return Err(NetError::BadBridge {
                bridge: cfg.bridge.clone(),
            });
        }
        let lock = lock_bridge(&cfg.bridge)?;
        rules::ensure_base()?;
        if cfg.dns.is_some_and(|d| *d.ip() == cfg.subnet.gateway()) {
            default_bridge_now(&cfg)?;
        }
        for dir in ["ipam", "netns"] {
            std::fs::create_dir_all(cfg.state_dir.join(dir))
                .map_err(|e| NetError::io("create", cfg.state_dir.join(dir), e))?;
        }
        let named = Registry::open(&cfg.state_dir, &cfg.bridge, cfg.subnet)?;
        let underlay = cfg
            .underlay
            .filter(|a| !a.is_loopback() && !a.is_unspecified());
        let mtu = match underlay {
            Some(a) => Some(overlay::mtu_for(a)?),
            None => None,
        };
        Ok(BridgeNetwork {
            underlay,
            mtu,
            cfg,
            default,
            named: Mutex::new(named),
            ruled: tokio::sync::Mutex::new(BTreeSet::new()),
            devices: tokio::sync::Mutex::new(()),
            lifecycle: tokio::sync::RwLock::new(()),
            _lock: lock,
        })
    }

    pub fn config(&self) -> &BridgeConfig {
        &self.cfg
    }

    /// The namespace path of an allocation.
    pub fn netns_path(alloc_id: &str) -> PathBuf {
        netns::path(&format!("{NETNS_PREFIX}{alloc_id}"))
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.named.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The networks behind `keys`; none is the default bridge. With
    /// `strict`, a named network the server has not assigned here is an
    /// error; without, it is left out (a DEL of what never was).
    fn defs(&self, keys: &[String], strict: bool) -> Result<Vec<NetDef>, NetError> {
        if keys.is_empty() {
            return Ok(vec![self.default.clone()]);
        }
        let reg = self.registry();
        keys.iter()
            .filter_map(|k| match reg.get(k) {
                Some(d) => Some(Ok(d.clone())),
                None if strict => Some(Err(NetError::UnknownNetwork { key: k.clone() })),
                None => None,
            })
            .collect()
    }

    /// Whether the server's assignment of named network `key` is here.
    pub fn knows(&self, key: &str) -> bool {
        self.registry().get(key).is_some()
    }

    /// The bridge, subnet and slice of a named network assigned here.
    pub fn named_network(&self, key: &str) -> Option<(String, Subnet, Option<Subnet>)> {
        self.registry().get(key).map(|d| {
            (
                d.bridge.clone(),
                d.subnet,
                d.overlay.as_ref().map(|o| o.slice),
            )
        })
    }

    /// Brings the node's named networks to the server's list: new ones
    /// recorded, peers of known ones brought up to date in their VXLAN
    /// devices (a node that left loses its entries), and those the server
    /// no longer lists, which no allocation in `in_use` (keys) is on,
    /// removed with their bridge, device, rules and leases (none without
    /// `in_use`; nor one an allocation here is attached to, or attaching
    /// to, which `in_use` may not have known of yet). Every network is
    /// tried; the first error is returned.
    pub async fn sync(
        &self,
        nets: &[OverlayDef],
        in_use: Option<&BTreeSet<String>>,
    ) -> Result<(), NetError> {
        let _alone = self.lifecycle.write().await;
        let mut first_error = None;
        for o in nets {
            let known = self.registry().get(&o.key).is_some();
            let def = self.registry().set(o);
            let result = match def {
                Ok(def) if !known => self.first_overlay(&def).await,
                Ok(def) => self.ensure_overlay(&def).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        let Some(in_use) = in_use else {
            return first_error.map_or(Ok(()), Err);
        };
        let listed: BTreeSet<&str> = nets.iter().map(|o| o.key.as_str()).collect();
        let attached = self.marked_networks();
        let gone: Vec<NetDef> = self
            .registry()
            .all()
            .filter(|d| {
                !listed.contains(d.key.as_str())
                    && !in_use.contains(&d.key)
                    && !attached.contains(&d.key)
            })
            .cloned()
            .collect();
        for def in gone {
            if let Err(e) = self.remove_network(&def).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The bridge of a named network, with its VXLAN device and peers
    /// when the node has an underlay.
    async fn ensure_overlay(&self, def: &NetDef) -> Result<(), NetError> {
        let Some(o) = &def.overlay else {
            return Ok(());
        };
        let _one = self.devices.lock().await;
        overlay::ensure(&def.bridge, o.vni, self.mtu, self.underlay, &o.peers).await
    }

    /// A network new to this agent: a bridge already of its name is an
    /// earlier agent's leftover (this one's state would name it), with that
    /// network's address, on which the bridge plugin would refuse to put
    /// this one's. It goes first, with the rules naming it (not those of
    /// its old subnet, which another network here may hold now).
    async fn first_overlay(&self, def: &NetDef) -> Result<(), NetError> {
        let vni = def.overlay.as_ref().map_or(0, |o| o.vni);
        if overlay::remove(&def.bridge, vni, &self.devices).await? {
            rules::remove_bridge(&def.bridge, None).await?;
            tracing::warn!(network = %def.key, bridge = %def.bridge, "removed a bridge an earlier agent left behind");
        }
        self.ensure_overlay(def).await
    }

    async fn remove_network(&self, def: &NetDef) -> Result<(), NetError> {
        let vni = def.overlay.as_ref().map_or(0, |o| o.vni);
        overlay::remove(&def.bridge, vni, &self.devices).await?;
        rules::remove_bridge(&def.bridge, Some(def.subnet)).await?;
        self.ruled.lock().await.remove(&def.bridge);
        let leases = self.cfg.state_dir.join("ipam").join(&def.cni_name);
        match std::fs::remove_dir_all(&leases) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(NetError::io("remove", &leases, e));
            }
            _ => {}
        }
        self.registry().remove(&def.key)?;
        tracing::info!(network = %def.key, bridge = %def.bridge, "named network removed from this node");
        Ok(())
    }

    /// Gives the allocation its namespace, addresses and port mappings:
    /// one interface on the default bridge, or one on each named network
    /// in `networks` (keys the agent chooses; the first carries the
    /// default route, NAT and the ports). On failure nothing is left.
    pub async fn attach(
        &self,
        alloc_id: &str,
        ports: &[PortMapping],
        networks: &[String],
    ) -> Result<Attachment, NetError> {
        check_id(alloc_id)?;
        let _shared = self.lifecycle.read().await;
        let name = format!("{NETNS_PREFIX}{alloc_id}");
        // A namespace of this allocation from an interrupted attach: what
        // the plugins made in it goes first, so no lease or rule leaks.
        if Self::netns_path(alloc_id).exists() {
            self.detach_shared(alloc_id, None).await?;
        }
        let defs = self.defs(networks, true)?;
        for def in &defs {
            self.ensure_overlay(def).await?;
        }
        // Marked before it exists: a crash at any later point leaves a
        // namespace this agent can tell is its own and can remove.
        let marker = self.marker(alloc_id);
        let record = Marker {
            networks: networks.to_vec(),
        };
        std::fs::write(&marker, serde_json::to_vec(&record).unwrap_or_default())
            .map_err(|e| NetError::io("write", &marker, e))?;
        let path = netns::add(&name).await?;
        let mut interfaces = Vec::with_capacity(defs.len());
        for (i, def) in defs.iter().enumerate() {
            match self.add_interface(alloc_id, &path, def, i).await {
                Ok(iface) => interfaces.push(iface),
                Err(e) => {
                    let partial = Attachment {
                        netns: path.clone(),
                        address: Ipv4Addr::UNSPECIFIED,
                        gateway: Ipv4Addr::UNSPECIFIED,
                        ports: ports.to_vec(),
                        interfaces,
                        resolver: None,
                    };
                    if let Err(undo) = self.detach_shared(alloc_id, Some(&partial)).await {
                        tracing::warn!(alloc = alloc_id, error = %undo, "cannot undo a failed attach");
                    }
                    return Err(e);
                }
            }
        }
        let gateway = defs[0].gateway();
        let mut att = Attachment {
            netns: path,
            address: interfaces[0].address,
            gateway,
            ports: ports.to_vec(),
            interfaces,
            resolver: None,
        };
        if let Err(e) = self.rules_up(alloc_id, &name, &defs, &mut att).await {
            if let Err(undo) = self.detach_shared(alloc_id, Some(&att)).await {
                tracing::warn!(alloc = alloc_id, error = %undo, "cannot undo a failed attach");
            }
            return Err(e);
        }
        Ok(att)
    }

    /// The rules around the allocation's interfaces: its bridges' (once
    /// per bridge), its port mappings, and its resolver.
    async fn rules_up(
        &self,
        alloc_id: &str,
        name: &str,
        defs: &[NetDef],
        att: &mut Attachment,
    ) -> Result<(), NetError> {
        {
            let mut ruled = self.ruled.lock().await;
            for def in defs {
                if !ruled.contains(&def.bridge) {
                    rules::ensure_bridge(&def.bridge, def.subnet).await?;
                    if def.overlay.is_none() {
                        // A bridge made before (by an older agent, or with
                        // another --bridge-mtu) keeps its own otherwise; the
                        // kernel refuses while a port has a smaller one, and
                        // the bridge then still works at that.
                        let mtu = self.cfg.mtu.to_string();
                        let args = ["link", "set", "dev", &def.bridge, "mtu", &mtu];
                        if let Err(e) = netns::ip(&args).await {
                            tracing::warn!(bridge = %def.bridge, error = %e, "bridge keeps its MTU");
                        }
                    }
                    ruled.insert(def.bridge.clone());
                }
            }
        }
        rules::map_ports(alloc_id, att.address, &att.ports).await?;
        if let Some(dns) = self.cfg.dns.filter(|d| !d.ip().is_loopback()) {
            netns::redirect_dns(name, att.gateway, dns).await?;
            att.resolver = Some(att.gateway);
        }
        Ok(())
    }

    async fn add_interface(
        &self,
        alloc_id: &str,
        netns: &Path,
        def: &NetDef,
        index: usize,
    ) -> Result<Interface, NetError> {
        let primary = index == 0;
        let chain = chain(&self.cfg, def, primary, self.mtu);
        let runtime = Map::new();
        let ifname = format!("eth{index}");
        let call = call(alloc_id, netns, &ifname, &runtime);
        let result = match chain.add(call).await {
            Ok(r) => r,
            Err(e) => {
                let _ = chain.del(call, None).await;
                return Err(e);
            }
        };
        let Some(address) = ipv4(&result) else {
            let _ = chain.del(call, Some(&result)).await;
            return Err(NetError::NoAddress {
                container: alloc_id.to_string(),
            });
        };
        Ok(Interface {
            network: def.key.clone(),
            ifname,
            address,
            result,
        })
    }

    /// Whether a saved attachment is still there (an agent restart keeps
    /// it; a reboot does not).
    pub fn is_live(att: &Attachment) -> bool {
        att.netns.exists()
    }

    /// Removes the allocation's mappings, leases, veths and namespace.
    /// Safe to repeat, and with `att` unknown (after a crash) the marker
    /// says which networks, the plugins find what they made by the
    /// allocation id, and the mappings are found by their comment.
    pub async fn detach(&self, alloc_id: &str, att: Option<&Attachment>) -> Result<(), NetError> {
        check_id(alloc_id)?;
        let _shared = self.lifecycle.read().await;
        self.detach_shared(alloc_id, att).await
    }

    /// `detach` with the lifecycle lock already shared: a second shared
    /// hold could wait behind a queued sync forever.
    async fn detach_shared(
        &self,
        alloc_id: &str,
        att: Option<&Attachment>,
    ) -> Result<(), NetError> {
        let name = format!("{NETNS_PREFIX}{alloc_id}");
        let path = Self::netns_path(alloc_id);
        let marked: Marker = std::fs::read(self.marker(alloc_id))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let keys: Vec<String> = match att {
            Some(a) if !a.interfaces.is_empty() => a
                .interfaces
                .iter()
                .map(|f| f.network.clone())
                .filter(|k| !k.is_empty())
                .collect(),
            _ => marked.networks,
        };
        let defs = self.defs(&keys, false)?;
        let mut first_error = rules::unmap_ports(alloc_id).await.err();
        let runtime = Map::new();
        for (i, def) in defs.iter().enumerate().rev() {
            let primary = i == 0;
            let chain = chain(&self.cfg, def, primary, self.mtu);
            let ifname = format!("eth{i}");
            let cached = att
                .and_then(|a| a.interfaces.iter().find(|f| f.ifname == ifname))
                .map(|f| &f.result);
            if let Err(e) = chain
                .del(call(alloc_id, &path, &ifname, &runtime), cached)
                .await
            {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        netns::delete(&name).await?;
        let marker = self.marker(alloc_id);
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(NetError::io("remove", &marker, e))
            }
            _ => Ok(()),
        }
    }

    fn marker(&self, alloc_id: &str) -> PathBuf {
        self.cfg.state_dir.join("netns").join(alloc_id)
    }

    /// The named networks of every allocation marked here: attached, or
    /// between its marker and the end of its detach.
    fn marked_networks(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.cfg.state_dir.join("netns"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<Marker>(&b).ok())
            .flat_map(|m| m.networks)
            .collect()
    }

    /// Namespaces and leases of this agent's that no allocation in
    /// `owned` holds. Only what the agent's own state dir marks counts:
    /// other agents on the host (the lab runs several) share
    /// `/run/netns`.
    pub fn orphans(&self, owned: &BTreeSet<String>) -> Vec<Orphan> {
        // By allocation: its namespace is named before its lease.
        let mut found: BTreeMap<String, String> = BTreeMap::new();
        let markers = std::fs::read_dir(self.cfg.state_dir.join("netns"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok());
        for id in markers {
            let what = if Self::netns_path(&id).exists() {
                "network namespace"
            } else {
                "network namespace (already gone)"
            };
            found.insert(id, what.to_string());
        }
        let lease_dirs = std::fs::read_dir(self.cfg.state_dir.join("ipam"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path());
        for dir in lease_dirs {
            for (id, ip) in leases(&dir) {
                found
                    .entry(id)
                    .or_insert_with(|| format!("address lease {ip}"));
            }
        }
        found
            .into_iter()
            .filter(|(id, _)| !owned.contains(id) && check_id(id).is_ok())
            .map(|(alloc_id, description)| Orphan {
                alloc_id,
                description,
            })
            .collect()
    }
}

/// Makes the default bridge with its address now, rather than with the
/// first allocation on it: the node's DNS answers there (a loopback node's,
/// `BridgeConfig::dns`), also for allocations on named networks only. The
/// bridge plugin finds it as it would have made it.
fn default_bridge_now(cfg: &BridgeConfig) -> Result<(), NetError> {
    let bridge = cfg.bridge.as_str();
    if command::run_now("ip", &["link", "show", "dev", bridge]).is_err() {
        command::run_now("ip", &["link", "add", "name", bridge, "type", "bridge"])?;
    }
    let address = format!("{}/{}", cfg.subnet.gateway(), cfg.subnet.prefix);
    let have = command::run_now("ip", &["-o", "-4", "addr", "show", "dev", bridge])?;
    if !have.split_whitespace().any(|w| w == address) {
        command::run_now("ip", &["addr", "add", &address, "dev", bridge])?;
    }
    command::run_now("ip", &["link", "set", "dev", bridge, "up"])?;
    Ok(())
}

/// The configuration list of one interface. The first interface has
/// loopback, the bridge with host-local addresses and the default route,
/// and tuning, which lets a task that is not root listen below 1024
/// inside its own namespace, as Docker allows. Further interfaces only
/// join their bridge: no route beyond its subnet. NAT, port mappings and
/// isolation are edge's own rules (`rules.rs`), so no plugin here touches
/// iptables. A named network's addresses come from this node's slice of
/// its subnet, with the MTU its VXLAN device leaves.
fn chain(cfg: &BridgeConfig, def: &NetDef, primary: bool, mtu: Option<u32>) -> cni::Chain {
    let routes = if primary {
        json!([{"dst": "0.0.0.0/0"}])
    } else {
        json!([])
    };
    let mut range = json!({"subnet": def.subnet.to_string(), "gateway": def.gateway().to_string()});
    if let Some((start, end)) = def.range() {
        range["rangeStart"] = json!(start.to_string());
        range["rangeEnd"] = json!(end.to_string());
    }
    let mut bridge = json!({
        "type": "bridge",
        "bridge": def.bridge,
        "isGateway": true,
        "ipMasq": false,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[range]],
            "routes": routes,
            "dataDir": cfg.state_dir.join("ipam"),
        },
    });
    match (&def.overlay, mtu) {
        (Some(_), Some(m)) => bridge["mtu"] = json!(m),
        (Some(_), None) => {}
        (None, _) => bridge["mtu"] = json!(cfg.mtu),
    }
    let plugins = if primary {
        vec![
            json!({"type": "loopback"}),
            bridge,
            json!({"type": "tuning", "sysctl": {"net.ipv4.ip_unprivileged_port_start": "0"}}),
        ]
    } else {
        vec![bridge]
    };
    cni::Chain {
        name: def.cni_name.clone(),
        version: "1.0.0".to_string(),
        plugins,
        dirs: cfg.plugin_dirs.clone(),
    }
}

/// One call for one of the allocation's interfaces.
fn call<'a>(
    alloc_id: &'a str,
    netns: &'a Path,
    ifname: &'a str,
    runtime: &'a Map<String, Value>,
) -> cni::Call<'a> {
    cni::Call {
        container_id: alloc_id,
        netns,
        ifname,
        runtime,
    }
}

/// The first IPv4 address of a CNI result (`"ips": [{"address": "a.b.c.d/n"}]`).
fn ipv4(result: &Value) -> Option<Ipv4Addr> {
    result
        .get("ips")?
        .as_array()?
        .iter()
        .filter_map(|ip| ip.get("address")?.as_str())
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .next()
}

/// host-local's leases: one file per address, holding the container id.
fn leases(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let ip = e.file_name().into_string().ok()?;
            ip.parse::<Ipv4Addr>().ok()?;
            let text = std::fs::read_to_string(e.path()).ok()?;
            let id = text.lines().next()?.trim().to_string();
            Some((id, ip))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain() {
        assert!(check_id("6f1c2d4e-0000-4000-8000-000000000000").is_ok());
        for bad in ["", "../x", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bridge_names_are_interface_names() {
        for good in ["edge0", "br-backend", "edge_1.2"] {
            assert!(check_bridge_name(good), "{good}");
        }
        for bad in ["", ".", "..", "../etc", "a/b", "sixteen-chars-xx", "a b"] {
            assert!(!check_bridge_name(bad), "{bad}");
        }
    }

    #[test]
    fn reads_the_address_of_a_result() {
        let r = json!({"cniVersion": "1.0.0", "ips": [{"address": "172.26.64.7/20", "gateway": "172.26.64.1", "interface": 2}]});
        assert_eq!(ipv4(&r), Some(Ipv4Addr::new(172, 26, 64, 7)));
        assert_eq!(ipv4(&json!({"ips": [{"address": "fd00::2/64"}]})), None);
        assert_eq!(ipv4(&json!({})), None);
    }

    #[test]
    fn a_named_network_hands_out_its_nodes_slice_with_the_overlay_mtu() {
        let cfg = BridgeConfig {
            bridge: DEFAULT_BRIDGE.into(),
            subnet: DEFAULT_SUBNET.parse().unwrap(),
            underlay: None,
            state_dir: "/x".into(),
            plugin_dirs: vec![],
            dns: None,
            mtu: DEFAULT_MTU,
        };
        let def = NetDef {
            key: "default/shop/back".into(),
            bridge: "edge0-0".into(),
            subnet: "172.27.16.0/20".parse().unwrap(),
            cni_name: "edge-0".into(),
            overlay: Some(OverlayDef {
                key: "default/shop/back".into(),
                vni: 2,
                subnet: "172.27.16.0/20".parse().unwrap(),
                slice: "172.27.16.64/26".parse().unwrap(),
                peers: vec![],
            }),
        };
        let c = chain(&cfg, &def, false, Some(1450));
        let bridge = &c.plugins[0];
        assert_eq!(bridge["mtu"], 1450);
        assert_eq!(
            bridge["ipam"]["ranges"][0][0],
            json!({"subnet": "172.27.16.0/20", "gateway": "172.27.16.65",
                   "rangeStart": "172.27.16.66", "rangeEnd": "172.27.16.126"})
        );
        let plain = chain(
            &cfg,
            &NetDef {
                overlay: None,
                ..def
            },
            false,
            Some(1450),
        );
        assert_eq!(
            plain.plugins[0]["mtu"], DEFAULT_MTU,
            "the default bridge has its own"
        );
    }

    #[test]
    fn leases_name_their_allocation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("172.26.64.2"), "alloc-1\r\neth0").unwrap();
        std::fs::write(dir.path().join("last_reserved_ip.0"), "172.26.64.2").unwrap();
        std::fs::write(dir.path().join("lock"), "").unwrap();
        assert_eq!(
            leases(dir.path()),
            vec![("alloc-1".to_string(), "172.26.64.2".to_string())]
        );
    }
}
