//! Test support: a Socket.IO client, cluster nodes, Redis.
