//! The coordinator's error type: one variant per Kafka error code it can answer.

/// An error the coordinator answers with. Each variant maps 1:1 to a Kafka protocol error code
/// (see [`GroupError::code`]); "no error" is represented by `None`/`Ok` at the use site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The group is being unloaded or deleted; the client should look the coordinator up again (15).
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    /// This node no longer coordinates the group (answered to parked requests on shutdown) (16).
    #[error("this node is not the coordinator for the group")]
    NotCoordinator,
    /// The generation id in the request is not the group's current generation (22).
    #[error("the generation id is not the group's current generation")]
    IllegalGeneration,
    /// The member's protocol type or protocols are incompatible with the group's (23).
    #[error("the member's protocol type or protocols are incompatible with the group")]
    InconsistentGroupProtocol,
    /// The group id is empty (24).
    #[error("the group id is invalid")]
    InvalidGroupId,
    /// The member id is not a member of the group (25).
    #[error("the member id is not known to the group")]
    UnknownMemberId,
    /// The session timeout is outside the configured bounds (26).
    #[error("the session timeout is outside the coordinator's allowed range")]
    InvalidSessionTimeout,
    /// The group is rebalancing; the member must rejoin (27).
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    /// DeleteGroups on a group that still has members (68).
    #[error("the group is not empty")]
    NonEmptyGroup,
    /// The group does not exist (69).
    #[error("the group does not exist")]
    GroupIdNotFound,
    /// JoinGroup v4+: retry the join with the member id carried in the response (79).
    #[error("a member id is required; rejoin with the member id in the response")]
    MemberIdRequired,
    /// The group already has the configured maximum number of members (81).
    #[error("the group has reached its maximum size")]
    GroupMaxSizeReached,
    /// Another member id now owns this group.instance.id (82).
    #[error("the static member was fenced by a newer member with the same group.instance.id")]
    FencedInstanceId,
}

impl GroupError {
    /// Kafka's numeric error code for this error.
    pub fn code(self) -> i16 {
        match self {
            GroupError::CoordinatorNotAvailable => 15,
            GroupError::NotCoordinator => 16,
            GroupError::IllegalGeneration => 22,
            GroupError::InconsistentGroupProtocol => 23,
            GroupError::InvalidGroupId => 24,
            GroupError::UnknownMemberId => 25,
            GroupError::InvalidSessionTimeout => 26,
            GroupError::RebalanceInProgress => 27,
            GroupError::NonEmptyGroup => 68,
            GroupError::GroupIdNotFound => 69,
            GroupError::MemberIdRequired => 79,
            GroupError::GroupMaxSizeReached => 81,
            GroupError::FencedInstanceId => 82,
        }
    }

    /// The code for an optional error: 0 (NONE) when there is no error.
    pub fn code_of(error: Option<GroupError>) -> i16 {
        error.map_or(0, GroupError::code)
    }
}

#[cfg(test)]
mod tests {
    use super::GroupError::*;
    use super::*;

    #[test]
    fn codes_match_kafka() {
        let table = [
            (CoordinatorNotAvailable, 15),
            (NotCoordinator, 16),
            (IllegalGeneration, 22),
            (InconsistentGroupProtocol, 23),
            (InvalidGroupId, 24),
            (UnknownMemberId, 25),
            (InvalidSessionTimeout, 26),
            (RebalanceInProgress, 27),
            (NonEmptyGroup, 68),
            (GroupIdNotFound, 69),
            (MemberIdRequired, 79),
            (GroupMaxSizeReached, 81),
            (FencedInstanceId, 82),
        ];
        for (error, code) in table {
            assert_eq!(error.code(), code, "{error:?}");
        }
        assert_eq!(GroupError::code_of(None), 0);
        assert_eq!(GroupError::code_of(Some(UnknownMemberId)), 25);
    }
}
