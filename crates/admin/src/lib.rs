//! Waterline operator tools: a small async Kafka admin client and the groups/offsets/lag commands.
