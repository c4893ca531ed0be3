//! The grid as this node sees it, for `/members?t=json` and the page: the
//! node itself (marked), every member with its state, address, capacity
//! and when it was last heard from, and the count in each state. Values
//! from members' records (nicknames, versions) are the members' own words:
//! the page shows them as text, never as markup.

use grapevine_membership::MembershipError;
use serde::Serialize;

use crate::state::{MemberRow, NodeState};

/// One member.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    /// Node id.
    pub id: String,
    /// Short id.
    pub short: String,
    /// Nickname (the member's own word).
    pub nickname: Option<String>,
    /// Address.
    pub address: String,
    /// alive, suspect, dead or left.
    pub state: String,
    /// Storage offered, MiB.
    pub capacity_mib: u32,
    /// Storage free, MiB.
    pub free_mib: u32,
    /// Seconds since last heard from directly.
    pub last_heard_s: f64,
    /// Software version (the member's own word).
    pub version: String,
    /// Serves storage.
    pub storage: bool,
    /// This node.
    #[serde(rename = "self")]
    pub is_self: bool,
}

impl From<MemberRow> for Member {
    fn from(r: MemberRow) -> Self {
        Member {
            id: r.id,
            short: r.short,
            nickname: r.nickname,
            address: r.addr,
            state: r.state,
            capacity_mib: r.capacity_mib,
            free_mib: r.free_mib,
            last_heard_s: r.last_heard_s,
            version: r.version,
            storage: r.storage,
            is_self: false,
        }
    }
}

/// Members in each state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Alive (this node included).
    pub alive: usize,
    /// Suspect.
    pub suspect: usize,
    /// Dead.
    pub dead: usize,
    /// Left.
    pub left: usize,
}

/// The grid at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct GridView {
    /// This node's id.
    pub node: String,
    /// Members in each state.
    pub counts: Counts,
    /// This node first, then the others by state and nickname.
    pub members: Vec<Member>,
}

/// The grid as `state`'s node sees it now.
///
/// # Errors
/// The node's membership has stopped.
pub async fn view(state: &NodeState) -> Result<GridView, MembershipError> {
    let rec = state.record();
    let r = rec.record();
    let me = Member {
        id: state.id().to_string(),
        short: state.id().short(),
        nickname: r.nickname.clone(),
        address: r.addrs.first().map(|a| a.to_string()).unwrap_or_default(),
        state: "alive".into(),
        capacity_mib: r.capacity_mib,
        free_mib: r.free_mib,
        last_heard_s: 0.0,
        version: r.software.clone(),
        storage: r.roles & grapevine_crypto::record::ROLE_STORAGE != 0,
        is_self: true,
    };
    let mut others: Vec<Member> = state
        .member_rows()
        .await?
        .into_iter()
        .filter(|m| m.id != me.id)
        .map(Member::from)
        .collect();
    let rank = |s: &str| match s {
        "alive" => 0,
        "suspect" => 1,
        "dead" => 2,
        _ => 3,
    };
    others.sort_by(|a, b| {
        rank(&a.state)
            .cmp(&rank(&b.state))
            .then(a.nickname.cmp(&b.nickname))
            .then(a.id.cmp(&b.id))
    });
    let mut members = vec![me];
    members.extend(others);
    let mut counts = Counts::default();
    for m in &members {
        match m.state.as_str() {
            "alive" => counts.alive += 1,
            "suspect" => counts.suspect += 1,
            "dead" => counts.dead += 1,
            _ => counts.left += 1,
        }
    }
    Ok(GridView {
        node: members[0].id.clone(),
        counts,
        members,
    })
}
