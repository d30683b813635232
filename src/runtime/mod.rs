//! The worker process: job threads, dequeue loop, heartbeats, timeouts, shutdown, maintenance and
//! the scheduler role.
