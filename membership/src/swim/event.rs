//! What the core reports of changes in its view ([`Event`]), drained by
//! the driver and handed to whoever listens (the node, the harnesses).

use grapevine_crypto::NodeId;

use super::members::MemberState;

/// Something that changed in this node's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A node became known (its record arrived).
    Joined(NodeId),
    /// A member's state changed.
    StateChanged {
        /// The member.
        id: NodeId,
        /// Previous state.
        from: MemberState,
        /// New state.
        to: MemberState,
        /// The member's incarnation the new state is about (a verdict that
        /// arrives late can be about a life that ended before the member
        /// came back with a higher one).
        incarnation: u64,
    },
    /// A member published a newer record.
    RecordUpdated(NodeId),
}
