//! Waterline's consumer-group coordinator as a pure state machine: requests and clock ticks in, responses and timers out.
